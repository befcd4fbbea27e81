"""The shell's command language: the part of PowerShell an Exchange administrator types.

Pure and stdlib-only: text in, syntax tree or :class:`ParseError` out, and an evaluator for the
expressions inside ``{ }`` and ``( )``. It follows Windows PowerShell 5.1 where the two overlap:

* Command mode: ``Get-Service -Name MSExchangePOP3,MSExchangePOP3BE | Format-List``. Barewords
  are strings unless the whole word is a number (``10MB``, ``0x10``, ``-1``); ``-Name`` is a
  parameter (``-Name:value`` carries its value); ``'...'``, ``"..."``, ``$var.Prop``, ``a,b``,
  ``@{...}``, ``@(...)``, ``$(...)``, ``(...)`` and ``{...}`` are values.
* Expression mode, inside ``{ }`` and ``( )``: comparison operators (``-eq``, ``-like``,
  ``-match`` ... with ``c``/``i`` variants), ``-and``/``-or``/``-xor``, ``-not``/``!``, commas.
* Errors carry PowerShell's message and FullyQualifiedErrorId, at the column PowerShell
  reports. Valid PowerShell that this shell does not run (assignments, arithmetic,
  redirection, expression statements ...) fails with the error id ``UnsupportedSyntax``.
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import functools
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, NoReturn, TypeAlias, assert_never

__all__ = [
    "ArrayLiteral",
    "BinaryOp",
    "Command",
    "EvaluationError",
    "Expression",
    "HashLiteral",
    "Literal",
    "Parameter",
    "ParseError",
    "Pipeline",
    "Script",
    "ScriptBlock",
    "SubExpression",
    "UnaryOp",
    "Variable",
    "compare",
    "evaluate",
    "has_wildcards",
    "is_true",
    "needs_more_input",
    "parse",
    "source_lines",
    "wildcard_match",
]


# --- errors --------------------------------------------------------------------------------


class ParseError(Exception):
    """A syntax error, worded and identified as PowerShell reports it."""

    def __init__(
        self,
        message: str,
        line: int,
        column: int,
        error_id: str,
        source_line: str,
        *,
        incomplete: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        #: 1-based line and column of the problem.
        self.line = line
        self.column = column
        #: PowerShell's FullyQualifiedErrorId, e.g. ``MissingEndCurlyBrace``.
        self.error_id = error_id
        #: The text of that line, for the caret display.
        self.source_line = source_line
        #: The input ended where more was needed: an interactive shell should read on.
        self.incomplete = incomplete

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        arguments = (self.message, self.line, self.column, self.error_id, self.source_line)
        return (_rebuild_parse_error, (*arguments, self.incomplete))


def _rebuild_parse_error(
    message: str, line: int, column: int, error_id: str, source_line: str, incomplete: bool
) -> ParseError:
    return ParseError(message, line, column, error_id, source_line, incomplete=incomplete)


class EvaluationError(Exception):
    """An expression failed while running, e.g. ``10 -gt 'abc'`` or a bad ``-match`` pattern."""

    def __init__(self, message: str, error_id: str) -> None:
        super().__init__(message)
        self.message = message
        #: PowerShell's FullyQualifiedErrorId, e.g. ``ComparisonFailure``.
        self.error_id = error_id

    def __str__(self) -> str:
        return self.message


# --- syntax tree ---------------------------------------------------------------------------
# Positions (1-based line/column of the node's first character) are left out of equality so
# that trees compare by structure.


@dataclass(frozen=True, slots=True)
class Literal:
    """A bareword or quoted string (str), a number, or ``$true``/``$false``/``$null``."""

    value: str | int | float | bool | None
    quoted: bool = False
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ArrayLiteral:
    """``a,b,c``: comma-separated values; also ``@( ... )``."""

    items: tuple[Expression, ...]
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class HashLiteral:
    """``@{Add='a','b'; Remove='c'}``: keys in source order, as typed."""

    entries: tuple[tuple[str, Expression], ...]
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Variable:
    """``$name`` with an optional property path: ``$_.Status`` is ``Variable('_', ('Status',))``."""

    name: str
    path: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class SubExpression:
    """A nested pipeline: ``(Get-Credential)``, ``$(...)``, or a command in ``{ }``."""

    pipeline: Pipeline
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ScriptBlock:
    """``{ $_.Status -eq 'Running' }``: one expression, and the source between the braces."""

    body: Expression
    text: str
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class BinaryOp:
    """``left -operator right``; the operator lower-cased without its dash (``eq``, ``ceq``)."""

    operator: str
    left: Expression
    right: Expression
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class UnaryOp:
    """``-not operand`` or ``!operand`` (both have the operator ``not``)."""

    operator: str
    operand: Expression
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


Expression: TypeAlias = (
    Literal
    | ArrayLiteral
    | HashLiteral
    | Variable
    | SubExpression
    | ScriptBlock
    | BinaryOp
    | UnaryOp
)


@dataclass(frozen=True, slots=True)
class Parameter:
    """``-Name`` (the name without its dash, as typed); ``-Name:value`` carries its value."""

    name: str
    value: Expression | None = None
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Command:
    """A command name and its parameters and values; ``text`` is its source, for errors."""

    name: str
    elements: tuple[Parameter | Expression, ...] = ()
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)
    text: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Commands joined by ``|``."""

    commands: tuple[Command, ...]
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Script:
    """The statements of the input, in order."""

    statements: tuple[Pipeline, ...]


# --- characters ----------------------------------------------------------------------------

# PowerShell accepts the typographic quotes and dashes that word processors and web pages
# substitute, so text pasted from documentation works.
_SINGLE_QUOTES: Final = "'\u2018\u2019\u201a\u201b"
_DOUBLE_QUOTES: Final = '"\u201c\u201d\u201e'
_QUOTES: Final = _SINGLE_QUOTES + _DOUBLE_QUOTES
_DASHES: Final = "-\u2013\u2014\u2015"
_DIGITS: Final = "0123456789"
#: Characters that end a bareword and start a token of their own.
_WORD_ENDS: Final = frozenset(";,|&(){}<>")
_ESCAPES: Final = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}
_NEWLINE: Final = re.compile(r"\r\n|\r|\n")
_LINE_END: Final = re.compile(r"[\r\n]")
_NUMBER: Final = re.compile(
    r"""
    (?P<sign>[-+\u2013\u2014\u2015]?)
    (?:
        0x(?P<hex>[0-9a-f]+)l?
      | (?P<decimal>(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:e[-+]?[0-9]+)?)(?P<suffix>[ld])?
    )
    (?P<multiplier>kb|mb|gb|tb|pb)?
    """,
    re.IGNORECASE | re.VERBOSE,
)
_MULTIPLIERS: Final = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4, "pb": 1024**5}

_COMPARISON_BASES: Final = frozenset(
    {
        "eq",
        "ne",
        "gt",
        "ge",
        "lt",
        "le",
        "like",
        "notlike",
        "match",
        "notmatch",
        "contains",
        "notcontains",
        "in",
        "notin",
    }
)
_COMPARISON_OPERATORS: Final = _COMPARISON_BASES | {
    prefix + base for prefix in "ci" for base in _COMPARISON_BASES
}
_LOGICAL_OPERATORS: Final = frozenset({"and", "or", "xor"})
_UNSUPPORTED_OPERATORS: Final = frozenset(
    {
        "replace",
        "creplace",
        "ireplace",
        "split",
        "csplit",
        "isplit",
        "join",
        "f",
        "is",
        "isnot",
        "as",
        "band",
        "bor",
        "bxor",
        "bnot",
        "shl",
        "shr",
    }
)
_ARITHMETIC: Final = frozenset({"+", "-", "--", "*", "/", "%"})
#: Groups may nest this deep, and syntax trees this deep (``!!!...$a`` or a long ``-and``
#: chain nest too): the parser and evaluate() recurse, and Python's stack is not PowerShell's.
_MAX_GROUP_DEPTH: Final = 64
_MAX_TREE_DEPTH: Final = 128


def _parse_number(text: str) -> int | float | None:
    """A PowerShell numeric literal (``10``, ``-1``, ``1.5``, ``0x1F``, ``10MB``), else None."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    value: int | float
    if match["hex"] is not None:
        value = int(match["hex"], 16)
    else:
        digits = match["decimal"]
        if "." in digits or "e" in digits.lower() or (match["suffix"] or "").lower() == "d":
            value = float(digits)
        else:
            try:
                value = int(digits)
            except ValueError:  # beyond int's digit limit: PowerShell makes it a double too
                value = float(digits)
    if match["multiplier"]:
        value *= _MULTIPLIERS[match["multiplier"].lower()]
    return -value if match["sign"] not in ("", "+") else value


# --- source and tokens ---------------------------------------------------------------------


class _Source:
    """The input text, with 1-based line/column lookups (lines end at CR LF, LF or CR)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.line_starts = [0, *(match.end() for match in _NEWLINE.finditer(text))]

    def locate(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self.line_starts, offset) - 1
        return index + 1, offset - self.line_starts[index] + 1

    def line_text(self, line: int) -> str:
        start = self.line_starts[line - 1]
        if line < len(self.line_starts):
            return _NEWLINE.sub("", self.text[start : self.line_starts[line]], count=1)
        return self.text[start:]

    def error(
        self, offset: int, message: str, error_id: str, *, incomplete: bool = False
    ) -> ParseError:
        line, column = self.locate(offset)
        return ParseError(
            message, line, column, error_id, self.line_text(line), incomplete=incomplete
        )


class _Kind(enum.Enum):
    EOF = enum.auto()
    NEWLINE = enum.auto()
    SEMI = enum.auto()
    PIPE = enum.auto()
    COMMA = enum.auto()
    AMPERSAND = enum.auto()
    EQUALS = enum.auto()
    LPAREN = enum.auto()
    RPAREN = enum.auto()
    LCURLY = enum.auto()
    RCURLY = enum.auto()
    DOLLAR_PAREN = enum.auto()
    AT_PAREN = enum.auto()
    AT_CURLY = enum.auto()
    WORD = enum.auto()
    NUMBER = enum.auto()
    STRING = enum.auto()
    VARIABLE = enum.auto()
    PARAMETER = enum.auto()
    OPERATOR = enum.auto()
    #: A character this language has no use for here, e.g. ``+`` or ``[`` in an expression.
    OTHER = enum.auto()


class _Mode(enum.Enum):
    """PowerShell tokenizes differently in argument position and inside expressions."""

    ARGUMENT = enum.auto()
    EXPRESSION = enum.auto()
    #: A key in ``@{ }``: a bareword up to ``=``.
    KEY = enum.auto()


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    start: int
    end: int
    #: The source text of the token.
    text: str
    #: WORD and STRING: the value; PARAMETER, OPERATOR, VARIABLE: the name.
    string: str = ""
    number: int | float = 0
    #: VARIABLE: the property path after the name.
    path: tuple[str, ...] = ()
    #: PARAMETER: written ``-Name:``.
    colon: bool = False


_PUNCTUATION: Final = {
    ";": _Kind.SEMI,
    ",": _Kind.COMMA,
    "(": _Kind.LPAREN,
    ")": _Kind.RPAREN,
    "{": _Kind.LCURLY,
    "}": _Kind.RCURLY,
}


def _is_one_of(char: str, chars: str) -> bool:
    """``char in chars`` for a possibly empty slice (``"" in chars`` is always true)."""
    return char != "" and char in chars


def _is_digit(char: str) -> bool:
    return _is_one_of(char, _DIGITS)


def _is_name_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _ends_word(char: str) -> bool:
    return char.isspace() or char in _WORD_ENDS


class _Lexer:
    """Scans one token at a time; tokens depend only on (offset, mode), so scans are cached."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.text = source.text
        self._cache: dict[tuple[int, _Mode], _Token] = {}

    def scan(self, offset: int, mode: _Mode) -> _Token:
        token = self._cache.get((offset, mode))
        if token is None:
            token = self._scan(offset, mode)
            self._cache[offset, mode] = token
        return token

    def _unsupported(self, offset: int, message: str) -> ParseError:
        return self.source.error(offset, message, "UnsupportedSyntax")

    def _skip_trivia(self, offset: int) -> int:
        """Skip blanks, comments and line continuations (a backtick before a newline)."""
        text = self.text
        while offset < len(text):
            char = text[offset]
            if char in "\r\n":
                return offset
            if char.isspace():
                offset += 1
            elif char == "`":
                if offset + 1 == len(text):
                    raise self.source.error(
                        offset + 1, "Incomplete string token.", "IncompleteString", incomplete=True
                    )
                following = text[offset + 1]
                if following in "\r\n":
                    offset += 3 if text.startswith("\r\n", offset + 1) else 2
                elif following.isspace():
                    offset += 2
                else:
                    return offset
            elif char == "#":
                line_end = _LINE_END.search(text, offset)
                offset = len(text) if line_end is None else line_end.start()
            elif text.startswith("<#", offset):
                close = text.find("#>", offset + 2)
                if close < 0:
                    raise self.source.error(
                        offset,
                        "The terminator '#>' is missing from the multiline comment.",
                        "MissingTerminatorMultiLineComment",
                        incomplete=True,
                    )
                offset = close + 2
            else:
                return offset
        return offset

    def _scan(self, offset: int, mode: _Mode) -> _Token:
        text = self.text
        start = self._skip_trivia(offset)
        if start == len(text):
            return _Token(_Kind.EOF, start, start, "")
        char = text[start]
        following = text[start + 1 : start + 2]

        def token(kind: _Kind, length: int = 1) -> _Token:
            return _Token(kind, start, start + length, text[start : start + length])

        if char in "\r\n":
            return token(_Kind.NEWLINE, 2 if text.startswith("\r\n", start) else 1)
        if char in _PUNCTUATION:
            return token(_PUNCTUATION[char])
        if char in "|&":
            if following == char:
                raise self.source.error(
                    start,
                    f"The token '{char * 2}' is not a valid statement separator in this version.",
                    "InvalidEndOfLine",
                )
            return token(_Kind.PIPE if char == "|" else _Kind.AMPERSAND)
        if char == "@":
            return self._at(start)
        if char == "$":
            return self._dollar(start, mode)
        if char in _QUOTES:
            value, end = self._quoted(start)
            return _Token(_Kind.STRING, start, end, text[start:end], string=value)
        if char == "<":
            raise self.source.error(
                start, "The '<' operator is reserved for future use.", "RedirectionNotSupported"
            )
        if char == ">" or (char in "123456*" and following == ">"):
            raise self._unsupported(
                start,
                "Redirection ('>') is not supported in this shell; "
                "to compare values use -gt or -ge.",
            )
        if mode is _Mode.KEY:
            return self._key(start)
        starts_number = _is_digit(following) or (
            following == "." and _is_digit(text[start + 2 : start + 3])
        )
        if char in _DASHES and (following.isalpha() or following in ("_", "?")):
            if mode is _Mode.ARGUMENT:
                return self._parameter(start)
            end = start + 1
            while end < len(text) and text[end].isalpha():
                end += 1
            name = text[start + 1 : end].lower()
            return _Token(_Kind.OPERATOR, start, end, text[start:end], string=name)
        if mode is _Mode.EXPRESSION:
            if char == "!":
                return _Token(_Kind.OPERATOR, start, start + 1, "!", string="not")
            if char == "=":
                return token(_Kind.EQUALS)
            if char in _DASHES and not starts_number:
                return token(_Kind.OTHER, 2 if _is_one_of(following, _DASHES) else 1)
            if char in "+*/%[].:" and not (char in "+." and starts_number):
                return token(_Kind.OTHER)
        return self._word(start)

    def _at(self, start: int) -> _Token:
        following = self.text[start + 1 : start + 2]
        if following == "(":
            return _Token(_Kind.AT_PAREN, start, start + 2, "@(")
        if following == "{":
            return _Token(_Kind.AT_CURLY, start, start + 2, "@{")
        if _is_one_of(following, _QUOTES):
            raise self._unsupported(
                start, "Here-strings (@'...'@) are not supported in this shell."
            )
        if _is_name_char(following):
            raise self._unsupported(start, "Splatting (@name) is not supported in this shell.")
        raise self.source.error(start, "Unrecognized token in source text.", "UnrecognizedToken")

    def _dollar(self, start: int, mode: _Mode) -> _Token:
        text = self.text
        begin = start + 1
        following = text[begin : begin + 1]
        if following == "(":
            return _Token(_Kind.DOLLAR_PAREN, start, begin + 1, "$(")
        if following == "{":
            name, end = self._braced_name(start)
        elif _is_name_char(following):
            end = begin
            while end < len(text) and _is_name_char(text[end]):
                end += 1
            # Scope and drive qualifiers: $env:USERNAME, $script:count.
            if text[end : end + 1] == ":" and _is_name_char(text[end + 1 : end + 2] or " "):
                end += 1
                while end < len(text) and _is_name_char(text[end]):
                    end += 1
            name = text[begin:end]
        elif _is_one_of(following, "?$^"):
            name, end = following, begin + 1
        elif mode is _Mode.ARGUMENT:
            return self._word(start)  # a lone '$' is just text in an argument
        else:
            raise self.source.error(
                start,
                "Variable reference is not valid. '$' was not followed by a valid variable name "
                "character. Consider using ${} to delimit the name.",
                "InvalidVariableReference",
            )
        path: list[str] = []
        while text[end : end + 1] == "." and end + 1 < len(text):
            first = text[end + 1]
            if first.isalpha() or first == "_":
                member_end = end + 1
                while member_end < len(text) and _is_name_char(text[member_end]):
                    member_end += 1
                path.append(text[end + 1 : member_end])
            elif first in _QUOTES:
                member, member_end = self._quoted(end + 1)
                path.append(member)
            else:
                break
            end = member_end
        following = text[end : end + 1]
        if following == "[":
            raise self._unsupported(end, "Indexing with '[' is not supported in this shell.")
        if following == "(" and path:
            raise self._unsupported(end, "Method calls are not supported in this shell.")
        return _Token(_Kind.VARIABLE, start, end, text[start:end], string=name, path=tuple(path))

    def _braced_name(self, start: int) -> tuple[str, int]:
        """``${any name}``, with backtick escapes; returns the name and the end offset."""
        text = self.text
        parts: list[str] = []
        index = start + 2
        while index < len(text):
            char = text[index]
            if char == "}":
                if not parts:
                    raise self.source.error(
                        start,
                        "An empty ${} variable reference was found. A name is required inside "
                        "the braces.",
                        "EmptyVariableReference",
                    )
                return "".join(parts), index + 1
            if char == "`" and index + 1 < len(text):
                parts.append(text[index + 1])
                index += 2
                continue
            parts.append(char)
            index += 1
        raise self.source.error(
            start,
            "Missing } at end of variable name.",
            "EndBraceExpectedAtEndOfVariableName",
            incomplete=True,
        )

    def _quoted(self, start: int) -> tuple[str, int]:
        """The string starting with the quote at ``start``: its value and end offset."""
        if self.text[start] in _SINGLE_QUOTES:
            return self._single_quoted(start)
        return self._double_quoted(start)

    def _single_quoted(self, start: int) -> tuple[str, int]:
        """A verbatim string: two quote characters in a row stand for one."""
        text = self.text
        parts: list[str] = []
        index = start + 1
        while index < len(text):
            char = text[index]
            if char in _SINGLE_QUOTES:
                if _is_one_of(text[index + 1 : index + 2], _SINGLE_QUOTES):
                    parts.append(char)
                    index += 2
                    continue
                return "".join(parts), index + 1
            parts.append(char)
            index += 1
        raise self.source.error(
            start,
            "The string is missing the terminator: '.",
            "TerminatorExpectedAtEndOfString",
            incomplete=True,
        )

    def _double_quoted(self, start: int) -> tuple[str, int]:
        """An expandable string: backtick escapes and ``""``; ``$`` is kept as written."""
        text = self.text
        parts: list[str] = []
        index = start + 1
        while index < len(text):
            char = text[index]
            if char == "`" and index + 1 < len(text):
                escaped = text[index + 1]
                parts.append(_ESCAPES.get(escaped, escaped))
                index += 2
                continue
            if char in _DOUBLE_QUOTES:
                if _is_one_of(text[index + 1 : index + 2], _DOUBLE_QUOTES):
                    parts.append(char)
                    index += 2
                    continue
                return "".join(parts), index + 1
            parts.append(char)
            index += 1
        raise self.source.error(
            start,
            'The string is missing the terminator: ".',
            "TerminatorExpectedAtEndOfString",
            incomplete=True,
        )

    def _parameter(self, start: int) -> _Token:
        text = self.text
        end = start + 1
        while end < len(text):
            char = text[end]
            if _ends_word(char) or char in _QUOTES or char in ":`":
                break
            end += 1
        colon = text[end : end + 1] == ":"
        token_end = end + 1 if colon else end
        return _Token(
            _Kind.PARAMETER,
            start,
            token_end,
            text[start:token_end],
            string=text[start + 1 : end],
            colon=colon,
        )

    def _word(self, start: int) -> _Token:
        """A bareword; embedded quotes and backtick escapes join into its value."""
        text = self.text
        parts: list[str] = []
        verbatim = True
        index = start
        while index < len(text):
            char = text[index]
            if _ends_word(char) and index > start:
                break
            if char == "`":
                if index + 1 == len(text):
                    raise self.source.error(
                        index + 1, "Incomplete string token.", "IncompleteString", incomplete=True
                    )
                escaped = text[index + 1]
                if escaped in "\r\n":
                    break
                parts.append(_ESCAPES.get(escaped, escaped))
                index += 2
                verbatim = False
            elif char in _QUOTES:
                value, index = self._quoted(index)
                parts.append(value)
                verbatim = False
            else:
                parts.append(char)
                index += 1
        raw = text[start:index]
        number = _parse_number(raw) if verbatim else None
        if number is not None:
            return _Token(_Kind.NUMBER, start, index, raw, number=number)
        return _Token(_Kind.WORD, start, index, raw, string="".join(parts))

    def _key(self, start: int) -> _Token:
        """A hash literal key: a bareword up to ``=``, or a quoted string."""
        text = self.text
        if text[start] == "=":
            return _Token(_Kind.EQUALS, start, start + 1, "=")
        end = start
        while end < len(text):
            char = text[end]
            if char.isspace() or char in "=;{}()|,`$@" or char in _QUOTES:
                break
            end += 1
        if end == start:
            return self._scan(start, _Mode.EXPRESSION)
        return _Token(_Kind.WORD, start, end, text[start:end], string=text[start:end])


# --- parser --------------------------------------------------------------------------------


class _GroupKind(enum.Enum):
    PAREN = enum.auto()
    SUBEXPRESSION = enum.auto()
    BLOCK = enum.auto()
    HASH = enum.auto()


@dataclass(frozen=True, slots=True)
class _Group:
    kind: _GroupKind
    opening: _Token


_ARGUMENT: Final = _Mode.ARGUMENT
_EXPRESSION: Final = _Mode.EXPRESSION
_GROUP_OPENERS: Final = frozenset(
    {_Kind.LPAREN, _Kind.DOLLAR_PAREN, _Kind.AT_PAREN, _Kind.AT_CURLY, _Kind.LCURLY}
)
_VALUE_STARTS: Final = _GROUP_OPENERS | {_Kind.NUMBER, _Kind.STRING, _Kind.VARIABLE}
_COMMAND_ENDS: Final = frozenset(
    {_Kind.NEWLINE, _Kind.SEMI, _Kind.PIPE, _Kind.EOF, _Kind.RPAREN, _Kind.RCURLY}
)


class _Parser:
    """Recursive descent over the lexer, switching modes the way PowerShell does."""

    def __init__(self, text: str) -> None:
        self.source = _Source(text)
        self.lexer = _Lexer(self.source)
        self.offset = 0
        #: End of the last token taken: "after" positions in errors point here.
        self.last_end = 0
        self.groups: list[_Group] = []

    # -- plumbing --

    def peek(self, mode: _Mode) -> _Token:
        return self.lexer.scan(self.offset, mode)

    def take(self, token: _Token) -> _Token:
        self.offset = self.last_end = token.end
        return token

    def where(self, token: _Token) -> tuple[int, int]:
        return self.source.locate(token.start)

    def error(self, offset: int, message: str, error_id: str) -> ParseError:
        return self.source.error(offset, message, error_id)

    def unsupported(self, offset: int, message: str) -> ParseError:
        return self.source.error(offset, message, "UnsupportedSyntax")

    def unexpected(self, token: _Token) -> ParseError:
        return self.error(
            token.start,
            f"Unexpected token '{token.text}' in expression or statement.",
            "UnexpectedToken",
        )

    def incomplete(self, offset: int, message: str, error_id: str) -> NoReturn:
        """The input ended where more was needed.

        Inside an unclosed group the group reports it (``{ $_.Status -eq`` is a missing
        ``}``): that is what a reader of the prompt needs to finish.
        """
        if self.groups:
            self.unclosed_group()
        raise self.source.error(offset, message, error_id, incomplete=True)

    def unclosed_group(self) -> NoReturn:
        group = self.groups[-1]
        if group.kind is _GroupKind.BLOCK:
            offset, message, error_id = (
                group.opening.start,
                "Missing closing '}' in statement block or type definition.",
                "MissingEndCurlyBrace",
            )
        elif group.kind is _GroupKind.HASH:
            offset, message, error_id = (
                self.last_end,
                "The hash literal was incomplete.",
                "IncompleteHashLiteral",
            )
        elif group.kind is _GroupKind.PAREN:
            offset, message, error_id = (
                self.last_end,
                "Missing closing ')' in expression.",
                "MissingEndParenthesisInExpression",
            )
        else:
            offset, message, error_id = (
                self.last_end,
                "Missing closing ')' in subexpression.",
                "MissingEndParenthesisInSubexpression",
            )
        raise self.source.error(offset, message, error_id, incomplete=True)

    @contextlib.contextmanager
    def inside(self, kind: _GroupKind, opening: _Token) -> Iterator[None]:
        if len(self.groups) >= _MAX_GROUP_DEPTH:
            raise self.error(
                opening.start,
                "Processing was stopped because the script is too complex.",
                "ScriptTooComplicated",
            )
        self.groups.append(_Group(kind, opening))
        try:
            yield
        finally:
            self.groups.pop()

    def skip_newlines(self, mode: _Mode) -> _Token:
        token = self.peek(mode)
        while token.kind is _Kind.NEWLINE:
            self.take(token)
            token = self.peek(mode)
        return token

    def skip_separators(self) -> _Token:
        token = self.peek(_ARGUMENT)
        while token.kind in (_Kind.NEWLINE, _Kind.SEMI):
            self.take(token)
            token = self.peek(_ARGUMENT)
        return token

    @staticmethod
    def starts_expression(token: _Token) -> bool:
        """Whether a statement starting with ``token`` (scanned as an argument) is an
        expression rather than a command, as PowerShell decides it."""
        if token.kind in _VALUE_STARTS or token.kind is _Kind.PARAMETER:
            return True
        return token.kind is _Kind.WORD and token.text[:1] in ("!", "[")

    def starts_command(self, token: _Token) -> bool:
        if token.kind is _Kind.AMPERSAND:
            return True
        return token.kind is _Kind.WORD and not self.starts_expression(token)

    # -- statements --

    def script(self) -> Script:
        statements: list[Pipeline] = []
        while True:
            token = self.skip_separators()
            if token.kind is _Kind.EOF:
                return Script(tuple(statements))
            statement = self.statement()
            if not isinstance(statement, Pipeline):
                raise self.unsupported(
                    token.start,
                    "An expression as a statement is not supported in this shell; a statement "
                    "must start with a command name.",
                )
            statements.append(statement)
            token = self.peek(_ARGUMENT)
            if token.kind not in (_Kind.NEWLINE, _Kind.SEMI, _Kind.EOF):
                raise self.unexpected(token)

    def statement(self) -> Pipeline | Expression:
        """A pipeline, or an expression where PowerShell would take one."""
        token = self.peek(_ARGUMENT)
        if not self.starts_expression(token):
            return self.pipeline()
        expression = self.expression()
        if self.peek(_EXPRESSION).kind is _Kind.PIPE:
            raise self.unsupported(
                token.start,
                "A pipeline that starts with an expression is not supported in this shell; "
                "pass the values as arguments instead.",
            )
        return expression

    def pipeline(self) -> Pipeline:
        commands: list[Command] = []
        pipe: _Token | None = None
        while True:
            token = self.peek(_ARGUMENT)
            if self.starts_command(token):
                commands.append(self.command())
            elif pipe is not None and self.starts_expression(token):
                self.expression()  # its own syntax errors come first
                raise self.error(
                    token.start,
                    "Expressions are only allowed as the first element of a pipeline.",
                    "ExpressionsMustBeFirstInPipeline",
                )
            elif pipe is not None or token.kind is _Kind.PIPE:
                message = "An empty pipe element is not allowed."
                if pipe is None:
                    raise self.error(token.start, message, "EmptyPipeElement")
                if token.kind is _Kind.EOF:
                    self.incomplete(pipe.end, message, "EmptyPipeElement")
                raise self.error(pipe.end, message, "EmptyPipeElement")
            else:
                raise self.unexpected(token)
            token = self.peek(_ARGUMENT)
            if token.kind is not _Kind.PIPE:
                first = commands[0]
                return Pipeline(tuple(commands), first.line, first.column)
            pipe = self.take(token)
            self.skip_newlines(_ARGUMENT)

    def command(self) -> Command:
        first = self.take(self.peek(_ARGUMENT))
        name_token = first
        if first.kind is _Kind.AMPERSAND:
            name_token = self.peek(_ARGUMENT)
            if name_token.kind in (_Kind.VARIABLE, *_GROUP_OPENERS):
                raise self.unsupported(
                    name_token.start,
                    "Invoking anything but a command name with '&' is not supported in this shell.",
                )
            if name_token.kind not in (_Kind.WORD, _Kind.STRING):
                raise self.error(
                    first.end,
                    "Missing expression after '&' in pipeline element.",
                    "MissingExpression",
                )
            self.take(name_token)
        elements: list[Parameter | Expression] = []
        while True:
            token = self.peek(_ARGUMENT)
            if token.kind in _COMMAND_ENDS:
                break
            if token.kind is _Kind.PARAMETER:
                elements.append(self.parameter(token))
            elif token.kind in _VALUE_STARTS or token.kind is _Kind.WORD:
                elements.append(self.argument())
            elif token.kind is _Kind.AMPERSAND:
                raise self.error(
                    token.start,
                    "The ampersand (&) character is not allowed. The & operator is reserved for "
                    'future use; wrap an ampersand in double quotation marks ("&") to pass it '
                    "as part of a string.",
                    "AmpersandNotAllowed",
                )
            else:
                raise self.unexpected(token)
        line, column = self.where(first)
        text = self.source.text[first.start : self.last_end]
        return Command(name_token.string, tuple(elements), line, column, text)

    def parameter(self, token: _Token) -> Parameter:
        self.take(token)
        value: Expression | None = None
        if token.colon:
            following = self.peek(_ARGUMENT)
            if following.kind not in _VALUE_STARTS and following.kind is not _Kind.WORD:
                raise self.error(
                    token.end,
                    f"Parameter {token.text} requires an argument.",
                    "ParameterRequiresArgument",
                )
            value = self.argument()
        line, column = self.where(token)
        return Parameter(token.string, value, line, column)

    # -- command arguments --

    def argument(self) -> Expression:
        """One argument: a value, or values joined by commas into an array."""
        items = [self.single_argument()]
        while (comma := self.peek(_ARGUMENT)).kind is _Kind.COMMA:
            self.take(comma)
            following = self.skip_newlines(_ARGUMENT)
            if following.kind not in _VALUE_STARTS and following.kind is not _Kind.WORD:
                message = "Missing expression after ',' in pipeline element."
                if following.kind is _Kind.EOF:
                    self.incomplete(comma.end, message, "MissingExpression")
                raise self.error(comma.end, message, "MissingExpression")
            items.append(self.single_argument())
        if len(items) == 1:
            return items[0]
        return ArrayLiteral(tuple(items), items[0].line, items[0].column)

    def single_argument(self) -> Expression:
        token = self.peek(_ARGUMENT)
        line, column = self.where(token)
        if token.kind is _Kind.WORD:
            self.take(token)
            return Literal(token.string, False, line, column)
        if token.kind is _Kind.VARIABLE:
            # PowerShell would expand "$a-text" into one string; this shell does not.
            following = self.source.text[token.end : token.end + 1]
            if following and not _ends_word(following):
                raise self.unsupported(
                    token.end,
                    "An argument that joins a variable to other text is not supported in this "
                    "shell; separate them with a space.",
                )
        return self.value(token)

    def value(self, token: _Token) -> Expression:
        """A value token of either mode: a literal, a variable or a group."""
        line, column = self.where(token)
        kind = token.kind
        if kind is _Kind.NUMBER:
            self.take(token)
            return Literal(token.number, False, line, column)
        if kind is _Kind.STRING:
            self.take(token)
            return Literal(token.string, True, line, column)
        if kind is _Kind.VARIABLE:
            self.take(token)
            name = token.string.casefold()
            if not token.path and name in _CONSTANTS:
                return Literal(_CONSTANTS[name], False, line, column)
            return Variable(token.string, token.path, line, column)
        if kind is _Kind.LPAREN:
            return self.paren(token)
        if kind in (_Kind.DOLLAR_PAREN, _Kind.AT_PAREN):
            return self.subexpression(token)
        if kind is _Kind.AT_CURLY:
            return self.hash_literal(token)
        if kind is _Kind.LCURLY:
            return self.script_block(token)
        if kind is _Kind.OTHER and token.text == "[":
            raise self.unsupported(
                token.start, "Type literals ([type]) are not supported in this shell."
            )
        if kind is _Kind.OPERATOR and token.string in _UNSUPPORTED_OPERATORS:
            raise self.unsupported(
                token.start, f"The '{token.text}' operator is not supported in this shell."
            )
        raise self.unexpected(token)

    # -- groups --

    def reject_member_access(self, offset: int) -> None:
        text = self.source.text
        following = text[offset : offset + 1]
        after = text[offset + 1 : offset + 2]
        if following == "." and (after.isalpha() or after == "_"):
            raise self.unsupported(
                offset, "Member access on a ( ) expression is not supported in this shell."
            )
        if following == "[":
            raise self.unsupported(offset, "Indexing with '[' is not supported in this shell.")

    def paren(self, opening: _Token) -> Expression:
        """``( ... )``: a nested pipeline when it starts with a command, else an expression."""
        self.take(opening)
        with self.inside(_GroupKind.PAREN, opening):
            token = self.skip_newlines(_ARGUMENT)
            if token.kind is _Kind.RPAREN:
                raise self.error(
                    opening.end, "An expression was expected after '('.", "ExpectedExpression"
                )
            if token.kind is _Kind.EOF:
                self.unclosed_group()
            content = self.statement()
            close = self.skip_newlines(_ARGUMENT)
            if close.kind is _Kind.EOF:
                self.unclosed_group()
            if close.kind is not _Kind.RPAREN:
                raise self.error(
                    self.last_end,
                    "Missing closing ')' in expression.",
                    "MissingEndParenthesisInExpression",
                )
            self.take(close)
        self.reject_member_access(close.end)
        if isinstance(content, Pipeline):
            line, column = self.where(opening)
            return SubExpression(content, line, column)
        return content

    def subexpression(self, opening: _Token) -> Expression:
        """``$( ... )`` and ``@( ... )``: statements separated by ``;`` or newlines."""
        self.take(opening)
        line, column = self.where(opening)
        values: list[Expression] = []
        with self.inside(_GroupKind.SUBEXPRESSION, opening):
            while True:
                token = self.skip_separators()
                if token.kind is _Kind.RPAREN:
                    break
                if token.kind is _Kind.EOF:
                    self.unclosed_group()
                content = self.statement()
                if isinstance(content, Pipeline):
                    values.append(SubExpression(content, content.line, content.column))
                else:
                    values.append(content)
                token = self.peek(_ARGUMENT)
                if token.kind in (_Kind.NEWLINE, _Kind.SEMI, _Kind.RPAREN):
                    continue
                if token.kind is _Kind.EOF:
                    self.unclosed_group()
                raise self.error(
                    token.start,
                    "Missing closing ')' in subexpression.",
                    "MissingEndParenthesisInSubexpression",
                )
            close = self.take(token)
        self.reject_member_access(close.end)
        if opening.kind is _Kind.DOLLAR_PAREN:
            if not values:
                return Literal(None, False, line, column)
            if len(values) == 1:
                only = values[0]
                if isinstance(only, SubExpression):
                    return SubExpression(only.pipeline, line, column)
                return only
            return ArrayLiteral(tuple(values), line, column)
        if len(values) == 1 and isinstance(values[0], SubExpression):
            return SubExpression(values[0].pipeline, line, column)
        items: list[Expression] = []
        for value in values:
            items.extend(value.items if isinstance(value, ArrayLiteral) else (value,))
        return ArrayLiteral(tuple(items), line, column)

    def script_block(self, opening: _Token) -> ScriptBlock:
        self.take(opening)
        line, column = self.where(opening)
        with self.inside(_GroupKind.BLOCK, opening):
            token = self.skip_separators()
            if token.kind is _Kind.EOF:
                self.unclosed_group()
            body: Expression
            if token.kind is _Kind.RCURLY:
                body = Literal(None, False, line, column)
            else:
                content = self.statement()
                if isinstance(content, Pipeline):
                    body = SubExpression(content, content.line, content.column)
                else:
                    body = content
                before = self.offset
                token = self.skip_separators()
                if token.kind is _Kind.EOF:
                    self.unclosed_group()
                if token.kind is not _Kind.RCURLY:
                    if self.offset != before and (
                        self.starts_expression(token) or self.starts_command(token)
                    ):
                        raise self.unsupported(
                            token.start,
                            "A script block with more than one statement is not supported in "
                            "this shell.",
                        )
                    raise self.unexpected(token)
            close = self.take(token)
        return ScriptBlock(body, self.source.text[opening.end : close.start], line, column)

    def hash_literal(self, opening: _Token) -> HashLiteral:
        self.take(opening)
        entries: list[tuple[str, Expression]] = []
        seen: set[str] = set()
        with self.inside(_GroupKind.HASH, opening):
            while True:
                token = self.skip_separators()
                if token.kind is _Kind.RCURLY:
                    break
                if token.kind is _Kind.EOF:
                    self.unclosed_group()
                key = self.lexer.scan(self.offset, _Mode.KEY)
                if key.kind is _Kind.EQUALS:
                    raise self.error(
                        key.start,
                        "Missing key before '=' in hash literal.",
                        "MissingKeyInHashLiteral",
                    )
                if key.kind in (_Kind.VARIABLE, _Kind.LPAREN, _Kind.DOLLAR_PAREN):
                    raise self.unsupported(
                        key.start,
                        "Hash literal keys other than names and quoted strings are not "
                        "supported in this shell.",
                    )
                if key.kind not in (_Kind.WORD, _Kind.STRING):
                    raise self.unexpected(key)
                self.take(key)
                equals = self.peek(_EXPRESSION)
                if equals.kind is _Kind.EOF:
                    self.unclosed_group()
                if equals.kind is not _Kind.EQUALS:
                    raise self.error(
                        key.end,
                        "Missing '=' operator after key in hash literal.",
                        "MissingEqualsInHashLiteral",
                    )
                self.take(equals)
                token = self.skip_newlines(_ARGUMENT)
                if token.kind is _Kind.EOF:
                    self.unclosed_group()
                if not (self.starts_expression(token) or self.starts_command(token)):
                    raise self.error(
                        equals.end,
                        "Missing statement after '=' in hash literal.",
                        "MissingStatementInHashLiteral",
                    )
                if key.string.casefold() in seen:
                    raise self.error(
                        key.start,
                        f"Duplicate keys '{key.string}' are not allowed in hash literals.",
                        "DuplicateKeyInHashLiteral",
                    )
                seen.add(key.string.casefold())
                content = self.statement()
                if isinstance(content, Pipeline):
                    entries.append(
                        (key.string, SubExpression(content, content.line, content.column))
                    )
                else:
                    entries.append((key.string, content))
                token = self.peek(_ARGUMENT)
                if token.kind in (_Kind.NEWLINE, _Kind.SEMI, _Kind.RCURLY):
                    continue
                if token.kind is _Kind.EOF:
                    self.unclosed_group()
                raise self.unexpected(token)
            self.take(token)
        line, column = self.where(opening)
        return HashLiteral(tuple(entries), line, column)

    # -- expressions --

    @staticmethod
    def starts_operand(token: _Token) -> bool:
        if token.kind in _VALUE_STARTS:
            return True
        return token.kind is _Kind.OPERATOR and token.string == "not"

    def require_operand(self, operator: _Token) -> None:
        token = self.skip_newlines(_EXPRESSION)
        if self.starts_operand(token):
            return
        message = f"You must provide a value expression following the '{operator.text}' operator."
        if token.kind is _Kind.EOF:
            self.incomplete(operator.end, message, "ExpectedValueExpression")
        raise self.error(operator.end, message, "ExpectedValueExpression")

    def expression(self) -> Expression:
        """``-and``, ``-or`` and ``-xor``: one precedence level, left to right (as PowerShell)."""
        left = self.comparison()
        while True:
            token = self.peek(_EXPRESSION)
            if token.kind is not _Kind.OPERATOR or token.string not in _LOGICAL_OPERATORS:
                return left
            self.take(token)
            self.require_operand(token)
            left = BinaryOp(token.string, left, self.comparison(), left.line, left.column)

    def comparison(self) -> Expression:
        left = self.unary()
        while True:
            token = self.peek(_EXPRESSION)
            if token.kind is not _Kind.OPERATOR or token.string not in _COMPARISON_OPERATORS:
                self.reject_unsupported_operator(token)
                return left
            self.take(token)
            self.require_operand(token)
            left = BinaryOp(token.string, left, self.unary(), left.line, left.column)

    def reject_unsupported_operator(self, token: _Token) -> None:
        """Valid PowerShell operators this shell does not evaluate get a clear message."""
        if token.kind is _Kind.EQUALS:
            raise self.unsupported(token.start, "Assignment is not supported in this shell.")
        if (token.kind is _Kind.OPERATOR and token.string in _UNSUPPORTED_OPERATORS) or (
            token.kind is _Kind.OTHER and token.text in _ARITHMETIC | {"[", "."}
        ):
            raise self.unsupported(
                token.start, f"The '{token.text}' operator is not supported in this shell."
            )

    def unary(self) -> Expression:
        operators: list[_Token] = []
        while (token := self.peek(_EXPRESSION)).kind is _Kind.OPERATOR and token.string == "not":
            self.take(token)
            following = self.skip_newlines(_EXPRESSION)
            if not self.starts_operand(following):
                message = f"Missing expression after unary operator '{token.text}'."
                if following.kind is _Kind.EOF:
                    self.incomplete(token.end, message, "MissingExpressionAfterOperator")
                raise self.error(token.end, message, "MissingExpressionAfterOperator")
            operators.append(token)
        operand = self.array()
        for token in reversed(operators):
            line, column = self.where(token)
            operand = UnaryOp("not", operand, line, column)
        return operand

    def array(self) -> Expression:
        items = [self.value(self.peek(_EXPRESSION))]
        while (comma := self.peek(_EXPRESSION)).kind is _Kind.COMMA:
            self.take(comma)
            following = self.skip_newlines(_EXPRESSION)
            if following.kind not in _VALUE_STARTS:
                message = "Missing expression after ','."
                if following.kind is _Kind.EOF:
                    self.incomplete(comma.end, message, "MissingExpressionAfterToken")
                raise self.error(comma.end, message, "MissingExpressionAfterToken")
            items.append(self.value(following))
        if len(items) == 1:
            return items[0]
        return ArrayLiteral(tuple(items), items[0].line, items[0].column)


_Node: TypeAlias = Pipeline | Command | Parameter | Expression


def _children(node: _Node) -> tuple[_Node, ...]:
    if isinstance(node, Pipeline):
        return node.commands
    if isinstance(node, Command):
        return node.elements
    if isinstance(node, ArrayLiteral):
        return node.items
    if isinstance(node, Parameter):
        return () if node.value is None else (node.value,)
    if isinstance(node, BinaryOp):
        return node.left, node.right
    if isinstance(node, UnaryOp):
        return (node.operand,)
    if isinstance(node, HashLiteral):
        return tuple(value for _, value in node.entries)
    if isinstance(node, SubExpression):
        return (node.pipeline,)
    if isinstance(node, ScriptBlock):
        return (node.body,)
    return ()


def _check_depth(source: _Source, script: Script) -> None:
    """Reject trees too deep to evaluate recursively (checked without recursing)."""
    pending: list[tuple[_Node, int]] = [(statement, 1) for statement in script.statements]
    while pending:
        node, depth = pending.pop()
        if depth > _MAX_TREE_DEPTH:
            offset = source.line_starts[node.line - 1] + node.column - 1
            raise source.error(
                offset,
                "Processing was stopped because the script is too complex.",
                "ScriptTooComplicated",
            )
        pending.extend((child, depth + 1) for child in _children(node))


def parse(text: str) -> Script:
    """Parse shell input into statements; raises :class:`ParseError`."""
    parser = _Parser(text)
    script = parser.script()
    _check_depth(parser.source, script)
    return script


def source_lines(text: str) -> list[str]:
    """The lines of ``text`` as parse positions number them: only CR LF, LF and CR end a line
    (``str.splitlines`` also splits at form feeds, ``\\x1e``, ``\\u2028`` and others)."""
    return _NEWLINE.split(text)


def needs_more_input(text: str) -> bool:
    """Whether ``text`` is incomplete (open quote or group, trailing ``|`` or backtick ...)
    such that an interactive shell should read another line before running it."""
    try:
        parse(text)
    except ParseError as error:
        return error.incomplete
    return False


# --- wildcards -----------------------------------------------------------------------------


def _wildcard_class(pattern: str, start: int) -> tuple[str, int] | None:
    """``[abc]`` / ``[a-z]`` at ``start`` as a regex class and its end, None when unclosed."""
    members: list[str] = []
    index = start + 1
    while index < len(pattern):
        char = pattern[index]
        if char == "]" and members:
            break
        if char == "`" and index + 1 < len(pattern):
            char = pattern[index + 1]
            index += 1
        members.append(char)
        index += 1
    else:
        return None
    parts: list[str] = []
    position = 0
    while position < len(members):
        low = members[position]
        if position + 2 < len(members) and members[position + 1] == "-":
            high = members[position + 2]
            if low <= high:
                parts.append(f"{re.escape(low)}-{re.escape(high)}")
                position += 3
                continue
        parts.append(re.escape(low))
        position += 1
    return "[" + "".join(parts) + "]", index + 1


@functools.lru_cache(maxsize=256)
def _wildcard_regex(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "`" and index + 1 < len(pattern):
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        if char == "[" and (found := _wildcard_class(pattern, index)) is not None:
            part, index = found
            parts.append(part)
            continue
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
        index += 1
    flags = re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE
    return re.compile("".join(parts), flags)


def wildcard_match(pattern: str, text: str, *, case_sensitive: bool = False) -> bool:
    """PowerShell ``-like``: ``*``, ``?``, ``[abc]``/``[a-z]``, backtick escapes; the whole
    text must match, ignoring case unless asked. An unclosed ``[`` matches itself."""
    return _wildcard_regex(pattern, case_sensitive).fullmatch(text) is not None


def has_wildcards(text: str) -> bool:
    """Whether ``text`` has an unescaped ``*``, ``?``, ``[`` or ``]``."""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "`":
            index += 2
            continue
        if char in "*?[]":
            return True
        index += 1
    return False


# --- evaluation ----------------------------------------------------------------------------

_CONSTANTS: Final[dict[str, bool | None]] = {"true": True, "false": False, "null": None}


def is_true(value: object) -> bool:
    """PowerShell truthiness: $null, $false, 0, '' and empty arrays are false; a one-item
    array is as true as its item; other objects are true."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value != ""
    if isinstance(value, list | tuple):
        return len(value) > 1 or (len(value) == 1 and is_true(value[0]))
    if isinstance(value, enum.Enum) and isinstance(value.value, int | float):
        return value.value != 0
    return True


def evaluate(
    expression: Expression,
    variables: Mapping[str, object],
    get_property: Callable[[object, str], object],
    run_pipeline: Callable[[Pipeline], object] | None = None,
) -> object:
    """The value of ``expression``.

    Variables come from ``variables`` (names case-insensitive; unknown ones are $null),
    properties from ``get_property``. A nested pipeline needs ``run_pipeline``; without it
    :class:`EvaluationError` is raised, as it is for failed comparisons.
    """

    def value_of(node: Expression) -> object:
        return evaluate(node, variables, get_property, run_pipeline)

    if isinstance(expression, Literal):
        return expression.value
    if isinstance(expression, Variable):
        return _variable_value(expression, variables, get_property)
    if isinstance(expression, BinaryOp):
        operator = expression.operator
        if operator in _LOGICAL_OPERATORS:
            left = is_true(value_of(expression.left))
            if operator == "and":
                return left and is_true(value_of(expression.right))
            if operator == "or":
                return left or is_true(value_of(expression.right))
            return left != is_true(value_of(expression.right))
        return compare(operator, value_of(expression.left), value_of(expression.right))
    if isinstance(expression, UnaryOp):
        return not is_true(value_of(expression.operand))
    if isinstance(expression, ArrayLiteral):
        return [value_of(item) for item in expression.items]
    if isinstance(expression, HashLiteral):
        return {key: value_of(value) for key, value in expression.entries}
    if isinstance(expression, ScriptBlock):
        return expression
    if isinstance(expression, SubExpression):
        if run_pipeline is None:
            raise EvaluationError(
                "A command cannot be run inside this expression.", "CommandNotAllowed"
            )
        return run_pipeline(expression.pipeline)
    assert_never(expression)


def _variable_value(
    variable: Variable,
    variables: Mapping[str, object],
    get_property: Callable[[object, str], object],
) -> object:
    wanted = variable.name.casefold()
    value: object
    if wanted in _CONSTANTS:
        value = _CONSTANTS[wanted]
    elif variable.name in variables:
        value = variables[variable.name]
    else:
        value = next((v for k, v in variables.items() if k.casefold() == wanted), None)
    for name in variable.path:
        value = _member(value, name, get_property)
    return value


def _member(value: object, name: str, get_property: Callable[[object, str], object]) -> object:
    """``value.name``, enumerating arrays' members as PowerShell 3+ does."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if name.casefold() in ("count", "length"):
            return len(value)
        found = [
            member for item in value if (member := _member(item, name, get_property)) is not None
        ]
        if not found:
            return None
        return found[0] if len(found) == 1 else found
    return get_property(value, name)


def _split_operator(operator: str) -> tuple[str, bool]:
    """``ceq`` -> (``eq``, case-sensitive); ``ieq`` and ``eq`` -> (``eq``, insensitive)."""
    if operator in _COMPARISON_BASES:
        return operator, False
    if operator[:1] in ("c", "i") and operator[1:] in _COMPARISON_BASES:
        return operator[1:], operator[0] == "c"
    raise ValueError(f"not a comparison operator: {operator!r}")


def compare(operator: str, left: object, right: object) -> object:
    """``left -operator right`` with PowerShell's conversions (operator as in :class:`BinaryOp`).

    The left operand decides: a number converts the right side to a number, a bool to its
    truth, a string compares as text (case-insensitively unless ``c``-prefixed). With an array
    on the left, the operators other than -contains filter it and return the matching items.
    """
    base, case_sensitive = _split_operator(operator)
    if base in ("contains", "notcontains"):
        items = left if isinstance(left, list | tuple) else [left]
        found = any(_equal(item, right, case_sensitive) for item in items)
        return found if base == "contains" else not found
    if base in ("in", "notin"):
        items = right if isinstance(right, list | tuple) else [right]
        found = any(_equal(item, left, case_sensitive) for item in items)
        return found if base == "in" else not found
    if isinstance(left, list | tuple):
        return [item for item in left if _compare_one(base, item, right, case_sensitive)]
    return _compare_one(base, left, right, case_sensitive)


def _compare_one(base: str, left: object, right: object, case_sensitive: bool) -> bool:
    if base in ("like", "notlike"):
        matched = wildcard_match(_to_string(right), _to_string(left), case_sensitive=case_sensitive)
        return matched if base == "like" else not matched
    if base in ("match", "notmatch"):
        found = _match_regex(_to_string(right), case_sensitive).search(_to_string(left))
        return (found is not None) if base == "match" else found is None
    if base == "eq":
        return _equal(left, right, case_sensitive)
    if base == "ne":
        return not _equal(left, right, case_sensitive)
    order = _order(left, right, case_sensitive)
    if base == "gt":
        return order > 0
    if base == "ge":
        return order >= 0
    if base == "lt":
        return order < 0
    return order <= 0


@functools.lru_cache(maxsize=256)
def _match_regex(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    # .NET names groups (?<name>...); Python spells it (?P<name>...).
    translated = re.sub(r"\(\?<(?![=!])", "(?P<", pattern)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "possible nested set" and friends
            return re.compile(translated, 0 if case_sensitive else re.IGNORECASE)
    except (re.error, OverflowError, RecursionError) as error:
        raise EvaluationError(
            f"The regular expression pattern {pattern} is not valid.",
            "InvalidRegularExpression",
        ) from error


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _plain_enum(value: object) -> enum.Enum | None:
    """An Enum member that is not also a str or number (those compare as what they are)."""
    if isinstance(value, enum.Enum) and not isinstance(value, str | int | float):
        return value
    return None


def _equal(left: object, right: object, case_sensitive: bool) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool):
        return left == is_true(right)
    if _is_number(left):
        return left == _to_number(right)
    if isinstance(left, datetime):
        other = _to_datetime(right)
        return other is not None and _align(left, other) == _align(other, left)
    member = _plain_enum(left)
    if member is not None and _is_number(right) and _is_number(member.value):
        return bool(member.value == right)
    left_text, right_text = _to_string(left), _to_string(right)
    if case_sensitive:
        return left_text == right_text
    return left_text.casefold() == right_text.casefold()


def _order(left: object, right: object, case_sensitive: bool) -> int:
    """-1, 0 or 1; $null sorts before everything, as PowerShell's comparisons do."""
    if left is None:
        return 0 if right is None else -1
    if isinstance(left, bool):
        left_bool, right_bool = int(left), int(is_true(right))
        return (left_bool > right_bool) - (left_bool < right_bool)
    if isinstance(left, int | float):
        number = _to_number(right)
        if number is None:
            raise _comparison_failure(left, right)
        return (left > number) - (left < number)
    if isinstance(left, datetime):
        if right is None:
            return 1
        other = _to_datetime(right)
        if other is None:
            raise _comparison_failure(left, right)
        mine, theirs = _align(left, other), _align(other, left)
        return (mine > theirs) - (mine < theirs)
    member = _plain_enum(left)
    if member is not None and _is_number(right) and isinstance(member.value, int | float):
        right_number = _to_number(right)
        assert right_number is not None
        return (member.value > right_number) - (member.value < right_number)
    left_key = _sort_key(_to_string(left), case_sensitive)
    right_key = _sort_key(_to_string(right), case_sensitive)
    return (left_key > right_key) - (left_key < right_key)


def _sort_key(text: str, case_sensitive: bool) -> tuple[str, ...]:
    # Culture order: letters first regardless of case; with -c, lower case before upper.
    return (text.casefold(), text.swapcase()) if case_sensitive else (text.casefold(),)


def _comparison_failure(left: object, right: object) -> EvaluationError:
    if isinstance(left, datetime):
        type_name, reason = "System.DateTime", "String was not recognized as a valid DateTime."
    else:
        reason = "Input string was not in a correct format."
        if isinstance(left, float):
            type_name = "System.Double"
        elif isinstance(left, int) and -(2**31) <= left < 2**31:
            type_name = "System.Int32"
        else:
            type_name = "System.Int64"
    shown_left, shown_right = _to_string(left), _to_string(right)
    return EvaluationError(
        f'Could not compare "{shown_left}" to "{shown_right}". Error: "Cannot convert value '
        f'"{shown_right}" to type "{type_name}". Error: "{reason}""',
        "ComparisonFailure",
    )


def _to_number(value: object) -> int | float | None:
    """PowerShell's conversion to a number (strings as numeric literals: ``'10MB'``, ``'0x1F'``);
    None when there is none."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    member = _plain_enum(value)
    if member is not None and isinstance(member.value, int | float):
        return member.value
    text = _to_string(value).strip()
    return 0 if not text else _parse_number(text)


_DATE_FORMATS: Final = (
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
)


def _to_datetime(value: object) -> datetime | None:
    """A datetime, or a string in ISO 8601 or en-US form (as PowerShell's invariant culture)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text)
    for date_format in _DATE_FORMATS:
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, date_format)  # naive: local time, as typed
    return None


def _align(value: datetime, other: datetime) -> datetime:
    """Make ``value`` comparable with ``other``: a naive time is local time."""
    if value.tzinfo is None and other.tzinfo is not None:
        return value.astimezone()
    return value


def _to_string(value: object) -> str:
    """A value as PowerShell converts it to a string (invariant culture)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return str.__str__(value)  # the text itself, also for str-based enums
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, list | tuple):
        return " ".join(_to_string(item) for item in value)
    return str(value)


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value).upper()
