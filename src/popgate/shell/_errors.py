"""Errors the way Windows PowerShell 5.1 prints them (exchange-pop3.md section 8.3)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CmdletError", "Position", "render_error", "render_parse_error"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a command or token is: line and column (1-based), its text and its line."""

    line: int
    column: int
    text: str
    source_line: str


@dataclass
class CmdletError(Exception):
    """A non-terminating error record (``terminating`` stops the pipeline)."""

    message: str
    category: str
    target: str
    exception: str
    error_id: str
    terminating: bool = False

    def __str__(self) -> str:
        return self.message


def _position_lines(position: Position | None) -> str:
    if position is None:
        return ""
    underline = "~" * max(1, len(position.text))
    caret = " " * (position.column - 1) + underline
    return f"At line:{position.line} char:{position.column}\n+ {position.source_line}\n+ {caret}\n"


def render_error(command_name: str, error: CmdletError, position: Position | None) -> str:
    """``Cmd : message``, where it happened, then CategoryInfo and FullyQualifiedErrorId."""
    return (
        f"{command_name} : {error.message}\n"
        f"{_position_lines(position)}"
        f"    + CategoryInfo          : {error.category}: ({error.target}) "
        f"[{command_name}], {error.exception}\n"
        f"    + FullyQualifiedErrorId : {error.error_id}\n"
        "\n"
    )


def render_parse_error(message: str, error_id: str, position: Position) -> str:
    """A parser error: the caret under the column first, then the message."""
    return (
        f"{_position_lines(position)}"
        f"{message}\n"
        "    + CategoryInfo          : ParserError: (:) [], ParentContainsErrorRecordException\n"
        f"    + FullyQualifiedErrorId : {error_id}\n"
        "\n"
    )
