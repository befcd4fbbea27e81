"""STYLE.md convention 1: popgate.protocol imports only the stdlib, and never I/O modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import popgate.protocol

PACKAGE = Path(popgate.protocol.__file__).parent
#: Modules that would let the core block, do I/O or depend on an event loop.
BANNED = frozenset({"asyncio", "ssl", "socket", "selectors", "select", "subprocess", "threading"})


def _imports(path: Path) -> list[tuple[str, int]]:
    """(top-level module, relative level) for every import in ``path``."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name.split(".")[0], 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append(((node.module or "").split(".")[0], node.level))
    return found


def test_protocol_imports_only_the_stdlib_and_no_io() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        for module, level in _imports(path):
            if level:
                continue  # relative: inside popgate.protocol
            assert module == "__future__" or module in sys.stdlib_module_names, (path, module)
            assert module not in BANNED, (path, module)


def test_every_module_has_a_docstring_and_future_annotations() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), path
        assert any(
            isinstance(node, ast.ImportFrom) and node.module == "__future__" for node in tree.body
        ), path


def test_public_names_are_exported_explicitly() -> None:
    exported = set(popgate.protocol.__all__)
    for name in (
        "to_crlf",
        "crlf_size",
        "top_of_message",
        "dot_stuff",
        "dot_unstuff",
        "ScramCredentials",
        "derive_scram_credentials",
        "ServerConnection",
        "ClientConnection",
        "capabilities",
    ):
        assert name in exported
    assert all(hasattr(popgate.protocol, name) for name in exported)
    assert len(exported) == len(popgate.protocol.__all__)
