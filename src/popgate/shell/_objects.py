"""Objects in the shell's pipeline and how PowerShell's Out-Default shows them."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "PSObject",
    "SecureString",
    "format_list",
    "format_table",
    "format_value",
    "get_property",
    "out_default",
]


class PSObject:
    """An object with ordered, case-insensitively named properties and a default view.

    ``table`` names the columns Out-Default shows (with optional fixed widths, as PowerShell's
    format files give Get-Service); without it the object is shown as a list.
    """

    def __init__(
        self,
        type_name: str,
        properties: Mapping[str, object],
        *,
        table: Sequence[str] | None = None,
        widths: Mapping[str, int] | None = None,
    ) -> None:
        self.type_name = type_name
        self.properties = dict(properties)
        self.table = tuple(table) if table else None
        self.widths = dict(widths or {})
        self._keys = {name.casefold(): name for name in self.properties}

    def get(self, name: str) -> object:
        """The property ``name`` in any case; None when it does not exist (as $null)."""
        key = self._keys.get(name.casefold())
        return None if key is None else self.properties[key]

    def has(self, name: str) -> bool:
        """Whether the object has a property ``name`` (any case)."""
        return name.casefold() in self._keys

    def __repr__(self) -> str:
        return f"PSObject({self.type_name!r}, {self.properties!r})"


@dataclass(frozen=True, slots=True)
class SecureString:
    """What ConvertTo-SecureString returns: a password that is never displayed."""

    value: str

    def __str__(self) -> str:
        return "System.Security.SecureString"


def get_property(target: object, name: str) -> object:
    """``$_.Name``: a PSObject's property, a mapping's key, else None."""
    if isinstance(target, PSObject):
        return target.get(name)
    if isinstance(target, Mapping):
        for key, value in target.items():
            if str(key).casefold() == name.casefold():
                return value
        return None
    if isinstance(target, str) and name.casefold() == "length":
        return len(target)
    return None


def format_value(value: object) -> str:
    """A value as PowerShell (en-US) prints it in a table or list cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, datetime.datetime):
        local = value.astimezone() if value.tzinfo else value
        hour = local.hour % 12 or 12
        suffix = "AM" if local.hour < 12 else "PM"
        return (
            f"{local.month}/{local.day}/{local.year} {hour}:{local.minute:02d}:"
            f"{local.second:02d} {suffix}"
        )
    if isinstance(value, list | tuple | set | frozenset):
        return "{" + ", ".join(format_value(item) for item in value) + "}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_table(
    objects: Sequence[PSObject],
    columns: Sequence[str] | None = None,
    widths: Mapping[str, int] | None = None,
) -> str:
    """Format-Table: a header, dashes under each header, one row per object.

    Columns are as wide as their widest cell (or the fixed width a view gives), one space
    apart; the last column is not padded. A blank line before and after, as PowerShell.
    """
    if not objects:
        return ""
    names = list(columns or objects[0].table or objects[0].properties)
    fixed = dict(widths or objects[0].widths)
    rows = [[format_value(obj.get(name)) for name in names] for obj in objects]
    headers = [_header(objects[0], name) for name in names]
    sizes = [
        fixed.get(name, max([len(header), *(len(row[i]) for row in rows)]))
        for i, (name, header) in enumerate(zip(names, headers, strict=True))
    ]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(size) for cell, size in zip(cells[:-1], sizes[:-1], strict=True)]
        return " ".join([*padded, cells[-1]]).rstrip()

    out = [line(headers), line(["-" * len(header) for header in headers])]
    out += [line(row) for row in rows]
    return "\n" + "\n".join(out) + "\n\n"


def _header(obj: PSObject, name: str) -> str:
    return next((key for key in obj.properties if key.casefold() == name.casefold()), name)


def format_list(objects: Sequence[PSObject], properties: Sequence[str] | None = None) -> str:
    """Format-List: ``Name : value`` lines per object, objects separated by a blank line."""
    blocks = []
    for obj in objects:
        names = [_header(obj, name) for name in (properties or list(obj.properties))]
        if not names:
            continue
        width = max(len(name) for name in names)
        blocks.append(
            "\n".join(f"{name.ljust(width)} : {format_value(obj.get(name))}" for name in names)
        )
    return "".join(f"\n{block}\n" for block in blocks) + ("\n" if blocks else "")


def out_default(items: Iterable[object]) -> str:
    """What the console shows for a pipeline's output: tables, lists or plain text."""
    parts: list[str] = []
    batch: list[PSObject] = []

    def flush() -> None:
        if not batch:
            return
        if batch[0].table:
            parts.append(format_table(batch))
        else:
            parts.append(format_list(batch))
        batch.clear()

    for item in items:
        if isinstance(item, PSObject):
            if batch and (batch[0].type_name != item.type_name):
                flush()
            batch.append(item)
            continue
        flush()
        if isinstance(item, _Rendered):
            parts.append(item.text)
        else:
            parts.append(format_value(item) + "\n")
    flush()
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class _Rendered:
    """Text already formatted by Format-Table or Format-List."""

    text: str


def rendered(text: str) -> _Rendered:
    """Wrap formatted text so Out-Default prints it as it is."""
    return _Rendered(text)
