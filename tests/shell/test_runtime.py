"""Binding, pipelines and output of the shell runtime, with cmdlets defined here."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from popgate.host._client import HostClient
from popgate.shell import Shell, ShellIO
from popgate.shell._core_cmdlets import CORE_CMDLETS
from popgate.shell._objects import PSObject, format_list, format_table
from popgate.shell._runtime import Cmdlet, Invocation, Kind, Param


def no_host() -> HostClient:
    """These tests never reach a host."""
    raise AssertionError("the runtime tests must not connect to a host")


def echo(invocation: Invocation) -> Iterable[object]:
    """Return the bound arguments as one object, so tests can see the binding."""
    return [PSObject("Echo", dict(sorted(invocation.args.items())))]


def items(invocation: Invocation) -> Iterable[object]:
    """Three objects to filter and format."""
    return [
        PSObject("Item", {"Name": name, "Status": status, "Size": size}, table=("Name", "Status"))
        for name, status, size in (
            ("alpha", "Running", 3),
            ("beta", "Stopped", 10),
            ("gamma", "Running", 7),
        )
    ]


ECHO = Cmdlet(
    "Test-Echo",
    "Echoes its parameters.",
    (
        Param("Name", Kind.STRINGS, position=0),
        Param("Count", Kind.INT, position=1),
        Param("Force", Kind.SWITCH),
        Param("Enabled", Kind.BOOL),
        Param("StartupType", Kind.ENUM, choices=("Automatic", "Manual", "Disabled")),
        Param("Server", Kind.STRING),
        Param("SSLBindings", Kind.OBJECT),
    ),
    echo,
)
REST = Cmdlet(
    "Test-Rest",
    "Takes every word.",
    (Param("Words", Kind.STRINGS, position=0, remaining=True),),
    echo,
)
ITEMS = Cmdlet("Get-Item", "Three items.", (), items)


def run(text: str) -> tuple[bool, str]:
    """Run ``text`` in a shell with the test cmdlets; success and everything written."""
    written: list[str] = []
    shell = Shell(io=ShellIO(write=written.append), connect=no_host)
    shell.register((ECHO, REST, ITEMS, *CORE_CMDLETS))
    ok = shell.run(text)
    return ok, "".join(written)


def test_named_positional_prefix_and_switch_binding() -> None:
    ok, output = run("Test-Echo a,b 3 -f -en:$false -Start manual -Ser x")
    assert ok, output
    assert "Name        : {a, b}\n" in output
    assert "Count       : 3\n" in output
    assert "Force       : True\n" in output
    assert "Enabled     : False\n" in output
    assert "StartupType : Manual\n" in output  # canonical spelling of the enum
    assert "Server      : x\n" in output


def test_remaining_arguments() -> None:
    ok, output = run("Test-Rest Start MSExchangePOP3 /y")
    assert ok
    assert "Words : {Start, MSExchangePOP3, /y}" in output


def test_hash_literal_reaches_the_cmdlet_as_a_mapping() -> None:
    ok, output = run("Test-Echo -SSLBindings @{Add='0.0.0.0:995';Remove='[::]:995'}")
    assert ok, output
    assert "SSLBindings : {'Add': '0.0.0.0:995', 'Remove': '[::]:995'}" in output


@pytest.mark.parametrize(
    ("text", "message", "error_id"),
    [
        ("Test-Echo -S x", "the parameter name 'S' is ambiguous. Possible matches include: "
         "-StartupType -Server -SSLBindings.", "AmbiguousParameter,Test-Echo"),
        ("Test-Echo -Nope", "A parameter cannot be found that matches parameter name 'Nope'.",
         "NamedParameterNotFound,Test-Echo"),
        ("Test-Echo -Count", "Missing an argument for parameter 'Count'. Specify a parameter "
         "of type 'System.Int32' and try again.", "MissingArgument,Test-Echo"),
        ("Test-Echo -Count many", 'Cannot convert value "many" to type "System.Int32".',
         "ParameterArgumentTransformationError,Test-Echo"),
        ("Test-Echo -Enabled yes", "Boolean parameters accept only Boolean values and numbers",
         "ParameterArgumentTransformationError,Test-Echo"),
        ("Test-Echo -StartupType Sometimes", "Unable to match the identifier name Sometimes to "
         "a valid enumerator name.", "ParameterArgumentTransformationError,Test-Echo"),
        ("Test-Echo a 1 extra", "A positional parameter cannot be found that accepts argument "
         "'extra'.", "PositionalParameterNotFound,Test-Echo"),
        ("Test-Echo -Server a -Server b", "parameter 'Server' is specified more than once.",
         "ParameterAlreadyBound,Test-Echo"),
        ("Get-Nothing", "The term 'Get-Nothing' is not recognized as the name of a cmdlet",
         "CommandNotFoundException"),
    ],
)  # fmt: skip
def test_binding_errors_are_powershells(text: str, message: str, error_id: str) -> None:
    ok, output = run(text)
    assert not ok
    assert message in output
    assert f"    + FullyQualifiedErrorId : {error_id}\n" in output
    assert f"+ {text}\n" in output  # the command line, with the caret line under it


def test_where_object_filters_and_format_table_picks_columns() -> None:
    ok, output = run("Get-Item | ? { $_.Status -eq 'running' -and $_.Size -gt 5 } | ft Name,Size")
    assert ok, output
    assert output == "\nName  Size\n----  ----\ngamma 7\n\n"


def test_statements_run_on_after_an_error_and_the_result_says_so() -> None:
    ok, output = run("Test-Echo -Nope; Get-Item | Select-Object -First 1 | fl Name")
    assert not ok
    assert output.endswith("\nName : alpha\n\n")


def test_secure_strings_are_never_shown() -> None:
    ok, output = run("ConvertTo-SecureString 'hunter2' -AsPlainText -Force")
    assert ok
    assert output == "System.Security.SecureString\n"
    ok, output = run("ConvertTo-SecureString 'hunter2' -AsPlainText")
    assert not ok
    assert "reissue the command specifying the Force parameter" in output
    assert "hunter2" in output  # only in the echoed command line


def test_default_views() -> None:
    objects = [
        PSObject("S", {"Status": "Running", "Name": "A", "DisplayName": "The A"},
                 table=("Status", "Name", "DisplayName"), widths={"Status": 8, "Name": 18}),
    ]  # fmt: skip
    assert format_table(objects) == (
        "\nStatus   Name               DisplayName\n"
        "------   ----               -----------\n"
        "Running  A                  The A\n\n"
    )
    assert (
        format_list(objects) == "\nStatus      : Running\nName        : A\nDisplayName : The A\n\n"
    )
