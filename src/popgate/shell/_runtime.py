"""Running parsed commands: cmdlet metadata, parameter binding, pipelines, output.

Binding follows PowerShell: parameter names are case-insensitive and may be shortened to
any unambiguous prefix; a switch takes no value unless written ``-Switch:$false``; values
left over bind to positional parameters in order; each value is converted to the
parameter's type, with PowerShell's messages when it cannot be.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from popgate.host._client import HostControlError, HostNotRunningError
from popgate.shell._errors import CmdletError, Position, render_error, render_parse_error
from popgate.shell._language import (
    ArrayLiteral,
    Command,
    EvaluationError,
    Expression,
    HashLiteral,
    Parameter,
    ParseError,
    Pipeline,
    ScriptBlock,
    SubExpression,
    evaluate,
    parse,
    source_lines,
)
from popgate.shell._objects import PSObject, SecureString, get_property, out_default

if TYPE_CHECKING:
    from popgate.host._client import HostClient

__all__ = [
    "Cmdlet",
    "Invocation",
    "Kind",
    "Param",
    "Shell",
    "ShellIO",
]


class Kind(enum.Enum):
    """A parameter's type, as the binder converts to it."""

    STRING = "System.String"
    STRINGS = "System.String[]"
    INT = "System.Int32"
    BOOL = "System.Boolean"
    SWITCH = "System.Management.Automation.SwitchParameter"
    OBJECT = "System.Object"
    OBJECTS = "System.Object[]"
    SECURE = "System.Security.SecureString"
    ENUM = "Enum"
    SCRIPT = "System.Management.Automation.ScriptBlock"
    DATETIME = "System.DateTime"


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a cmdlet."""

    name: str
    kind: Kind = Kind.STRING
    position: int | None = None
    mandatory: bool = False
    aliases: tuple[str, ...] = ()
    #: Valid names for an ENUM (canonical spelling), also offered by tab completion.
    choices: tuple[str, ...] = ()
    #: Whether pipeline input binds here (ValueFromPipeline).
    from_pipeline: bool = False
    #: Takes every positional value left over (ValueFromRemainingArguments).
    remaining: bool = False
    help: str = ""
    #: The .NET type name PowerShell would print in errors about this parameter.
    type_name: str = ""

    @property
    def shown_type(self) -> str:
        """The type in error messages and help."""
        return self.type_name or self.kind.value


@dataclass(frozen=True, slots=True)
class Cmdlet:
    """A command of the shell: its name, synopsis, parameters and implementation."""

    name: str
    synopsis: str
    params: tuple[Param, ...]
    run: Callable[[Invocation], Iterable[object]]
    aliases: tuple[str, ...] = ()
    #: The class PowerShell names in FullyQualifiedErrorId (e.g. ...StartServiceCommand).
    error_class: str = ""

    def error_id(self, code: str) -> str:
        """``Code,Class`` as in FullyQualifiedErrorId."""
        return f"{code},{self.error_class or self.name}"


@dataclass
class ShellIO:
    """Where the shell writes and how it asks questions."""

    write: Callable[[str], None]
    read_secret: Callable[[str], str] | None = None
    confirm: Callable[[str, str], bool] | None = None


@dataclass
class Invocation:
    """One command being run: its bound arguments and its pipeline input."""

    shell: Shell
    cmdlet: Cmdlet
    args: dict[str, object]
    input: list[object]
    position: Position
    failed: bool = False

    def given(self, name: str) -> bool:
        """Whether the parameter was bound."""
        return name in self.args

    def string(self, name: str, default: str | None = None) -> str | None:
        """A bound STRING parameter."""
        value = self.args.get(name, default)
        return None if value is None else str(value)

    def strings(self, name: str) -> list[str]:
        """A bound STRINGS parameter (empty when not given)."""
        value = self.args.get(name)
        return [str(item) for item in value] if isinstance(value, list) else []

    def switch(self, name: str) -> bool:
        """A bound SWITCH (False when not given)."""
        return bool(self.args.get(name, False))

    def error(self, error: CmdletError) -> None:
        """Write a non-terminating error and go on with the next input."""
        self.failed = True
        self.shell.write_error(self.cmdlet.name, error, self.position)

    def warn(self, text: str) -> None:
        """``WARNING: text``."""
        self.shell.io.write(f"WARNING: {text}\n")

    @property
    def client(self) -> HostClient:
        """The host this shell is connected to."""
        return self.shell.client()


class ParameterBindingError(CmdletError):
    """The command line cannot be bound to the cmdlet's parameters."""


def _binding_error(cmdlet: Cmdlet, message: str, code: str, target: str = "") -> CmdletError:
    return ParameterBindingError(
        message=message,
        category="InvalidArgument",
        target=f"{target}:" if target else ":",
        exception="ParameterBindingException",
        error_id=cmdlet.error_id(code),
        terminating=True,
    )


def _find_param(cmdlet: Cmdlet, typed: str) -> Param:
    """Exact name or alias first, then a unique prefix (PowerShell allows both)."""
    wanted = typed.casefold()
    for param in cmdlet.params:
        if wanted in (param.name.casefold(), *(alias.casefold() for alias in param.aliases)):
            return param
    matches = [p for p in cmdlet.params if p.name.casefold().startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = " ".join(f"-{p.name}" for p in matches)
        raise _binding_error(
            cmdlet,
            f"Parameter cannot be processed because the parameter name '{typed}' is ambiguous. "
            f"Possible matches include: {names}.",
            "AmbiguousParameter",
        )
    raise _binding_error(
        cmdlet,
        f"A parameter cannot be found that matches parameter name '{typed}'.",
        "NamedParameterNotFound",
    )


def _describe(value: object) -> str:
    if isinstance(value, list):
        return "System.Object[]"
    return str(value)


def convert(cmdlet: Cmdlet, param: Param, value: object) -> object:
    """Convert ``value`` to ``param``'s type, with PowerShell's message when impossible."""
    kind = param.kind

    def cannot(reason: str, code: str = "ParameterArgumentTransformationError") -> CmdletError:
        return _binding_error(
            cmdlet,
            f"Cannot process argument transformation on parameter '{param.name}'. {reason}",
            code,
        )

    if kind in (Kind.OBJECT, Kind.SCRIPT):
        if kind is Kind.SCRIPT and not isinstance(value, ScriptBlock):
            raise cannot(f'Cannot convert the "{_describe(value)}" value to type "ScriptBlock".')
        return value
    if kind is Kind.OBJECTS:
        return value if isinstance(value, list) else [value]
    if kind in (Kind.SWITCH, Kind.BOOL):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise cannot(
            f'Cannot convert value "{_describe(value)}" to type "System.Boolean". Boolean '
            "parameters accept only Boolean values and numbers, such as $True, $False, 1 or 0."
        )
    if kind is Kind.SECURE:
        if isinstance(value, SecureString):
            return value
        raise cannot(
            f'Cannot convert the "{_describe(value)}" value of type "System.String" to type '
            '"System.Security.SecureString".'
        )
    if kind is Kind.STRINGS:
        items = value if isinstance(value, list) else [value]
        return [_text(item) for item in items]
    if isinstance(value, list):
        raise cannot(
            f'Cannot convert the "System.Object[]" value of type "System.Object[]" to type '
            f'"{param.shown_type}".'
        )
    if kind is Kind.INT:
        try:
            return int(str(value)) if not isinstance(value, int) else value
        except ValueError:
            raise cannot(
                f'Cannot convert value "{value}" to type "System.Int32". Error: "Input string '
                'was not in a correct format."'
            ) from None
    if kind is Kind.ENUM:
        text = _text(value)
        for choice in param.choices:
            if choice.casefold() == text.casefold():
                return choice
        raise cannot(
            f'Cannot convert value "{text}" to type "{param.shown_type}". Error: "Unable to '
            f"match the identifier name {text} to a valid enumerator name. Specify one of the "
            f'following enumerator names and try again:\n{", ".join(param.choices)}"'
        )
    return _text(value)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, PSObject):
        name = value.get("Name")
        return str(name) if name is not None else value.type_name
    return "" if value is None else str(value)


@dataclass
class Shell:
    """Runs command text against a host's control API, writing what PowerShell would."""

    io: ShellIO
    connect: Callable[[], HostClient]
    cmdlets: dict[str, Cmdlet] = field(default_factory=dict)
    interactive: bool = False
    #: Seconds between WARNING lines while a service is pending (PowerShell's 2 s slices).
    wait_slice: float = 2.0
    _client: HostClient | None = None
    _source_lines: list[str] = field(default_factory=list)

    def register(self, cmdlets: Iterable[Cmdlet]) -> None:
        """Add cmdlets (and their aliases) to the shell."""
        for cmdlet in cmdlets:
            for name in (cmdlet.name, *cmdlet.aliases):
                self.cmdlets[name.casefold()] = cmdlet

    def client(self) -> HostClient:
        """The connection to the host, opened on first use."""
        if self._client is None:
            self._client = self.connect()
        return self._client

    def use_client(self, client: HostClient) -> None:
        """Connect-PopgateServer: talk to another host from now on."""
        if self._client is not None:
            self._client.close()
        self._client = client

    def close(self) -> None:
        """Close the connection to the host."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- running text --------------------------------------------------------------------

    def run(self, text: str) -> bool:
        """Run every statement of ``text``; True when none of them wrote an error."""
        self._source_lines = source_lines(text)
        try:
            script = parse(text)
        except ParseError as error:
            rest = error.source_line[error.column - 1 :].rstrip()
            position = Position(error.line, error.column, rest, error.source_line)
            self.io.write(render_parse_error(error.message, error.error_id, position))
            return False
        ok = True
        for statement in script.statements:
            ok = self.run_pipeline(statement) and ok
        return ok

    def run_pipeline(self, pipeline: Pipeline, *, show: bool = True) -> bool:
        """Run one pipeline and show its output; False when it wrote an error."""
        ok, output = self._pipeline(pipeline)
        if show:
            text = out_default(output)
            if text:
                self.io.write(text)
        return ok

    def _pipeline(self, pipeline: Pipeline) -> tuple[bool, list[object]]:
        objects: list[object] = []
        ok = True
        for command in pipeline.commands:
            position = Position(command.line, command.column, command.text, self._line(command))
            cmdlet = self.cmdlets.get(command.name.casefold())
            if cmdlet is None:
                self.write_error(command.name, _not_recognized(command.name), position)
                return False, []
            try:
                arguments = self._bind(cmdlet, command)
            except _AlreadyReported:
                return False, []
            except CmdletError as error:
                self.write_error(cmdlet.name, error, position)
                return False, []
            invocation = Invocation(self, cmdlet, arguments, objects, position)
            try:
                objects = list(cmdlet.run(invocation))
            except CmdletError as error:
                self.write_error(cmdlet.name, error, position)
                return False, []
            except HostNotRunningError:
                self.write_error(cmdlet.name, _host_not_running(cmdlet), position)
                return False, []
            except EvaluationError as error:
                self.write_error(cmdlet.name, _evaluation_failed(cmdlet, error), position)
                return False, []
            except HostControlError as error:
                self.write_error(cmdlet.name, _host_refused(cmdlet, error), position)
                return False, []
            ok = ok and not invocation.failed
        return ok, objects

    def _line(self, command: Command) -> str:
        if 0 < command.line <= len(self._source_lines):
            return self._source_lines[command.line - 1]
        return command.text

    def write_error(self, command_name: str, error: CmdletError, position: Position) -> None:
        """Render an error record the way PowerShell does."""
        self.io.write(render_error(command_name, error, position))

    # --- binding -------------------------------------------------------------------------

    def value_of(self, expression: Expression, variables: Mapping[str, object]) -> object:
        """The value of an argument expression (sub-pipelines run here)."""
        if isinstance(expression, SubExpression):
            ok, output = self._pipeline(expression.pipeline)
            if not ok:
                raise _AlreadyReported
            return output[0] if len(output) == 1 else (output or None)
        if isinstance(expression, ArrayLiteral):
            return [self.value_of(item, variables) for item in expression.items]
        if isinstance(expression, HashLiteral):
            return {key: self.value_of(value, variables) for key, value in expression.entries}
        if isinstance(expression, ScriptBlock):
            return expression
        return evaluate(expression, variables, get_property, self.sub_pipeline)

    def sub_pipeline(self, pipeline: Pipeline) -> object:
        """``(Get-Service X)`` inside an expression: the pipeline's output."""
        ok, output = self._pipeline(pipeline)
        if not ok:
            raise _AlreadyReported
        return output[0] if len(output) == 1 else (output or None)

    def _bind(self, cmdlet: Cmdlet, command: Command) -> dict[str, object]:
        bound: dict[str, object] = {}
        positional: list[object] = []
        elements = list(command.elements)
        index = 0
        while index < len(elements):
            element = elements[index]
            index += 1
            if not isinstance(element, Parameter):
                positional.append(self.value_of(element, {}))
                continue
            param = _find_param(cmdlet, element.name)
            if element.value is not None:
                value = self.value_of(element.value, {})
            elif param.kind is Kind.SWITCH:
                value = True
            elif index < len(elements) and not isinstance(elements[index], Parameter):
                value = self.value_of(elements[index], {})  # type: ignore[arg-type]
                index += 1
            else:
                raise _binding_error(
                    cmdlet,
                    f"Missing an argument for parameter '{param.name}'. Specify a parameter of "
                    f"type '{param.shown_type}' and try again.",
                    "MissingArgument",
                )
            if param.name in bound:
                raise _binding_error(
                    cmdlet,
                    f"Cannot bind parameter because parameter '{param.name}' is specified more "
                    "than once. To provide multiple values to parameters that can accept "
                    'multiple values, use the array syntax. For example, "-parameter '
                    'value1,value2,value3".',
                    "ParameterAlreadyBound",
                )
            bound[param.name] = convert(cmdlet, param, value)
        self._bind_positional(cmdlet, bound, positional)
        missing = [
            p.name
            for p in cmdlet.params
            if p.mandatory and p.name not in bound and not p.from_pipeline
        ]
        if missing:
            raise _binding_error(
                cmdlet,
                "Cannot process command because of one or more missing mandatory parameters: "
                f"{' '.join(missing)}.",
                "MissingMandatoryParameter",
            )
        return bound

    @staticmethod
    def _bind_positional(
        cmdlet: Cmdlet, bound: dict[str, object], positional: list[object]
    ) -> None:
        """Leftover values go to positional parameters in order, the rest to the one that
        takes remaining arguments (if any), else they are an error."""
        slots = sorted(
            (p for p in cmdlet.params if p.position is not None and p.name not in bound),
            key=lambda p: p.position or 0,
        )
        rest = next((p for p in cmdlet.params if p.remaining and p.name not in bound), None)
        leftovers: list[str] = []
        for value in positional:
            param = slots.pop(0) if slots else rest
            if param is None:
                raise _binding_error(
                    cmdlet,
                    "A positional parameter cannot be found that accepts argument "
                    f"'{_text(value)}'.",
                    "PositionalParameterNotFound",
                    _text(value),
                )
            if param is rest:
                leftovers += [str(item) for item in _as_list(convert(cmdlet, param, value))]
                continue
            bound[param.name] = convert(cmdlet, param, value)
        if rest is not None and leftovers:
            bound[rest.name] = leftovers


def _not_recognized(name: str) -> CmdletError:
    return CmdletError(
        message=f"The term '{name}' is not recognized as the name of a cmdlet, function, "
        "script file, or operable program. Check the spelling of the name, or if a path was "
        "included, verify that the path is correct and try again.",
        category="ObjectNotFound",
        target=f"{name}:String",
        exception="CommandNotFoundException",
        error_id="CommandNotFoundException",
        terminating=True,
    )


def _evaluation_failed(cmdlet: Cmdlet, error: EvaluationError) -> CmdletError:
    return CmdletError(
        message=str(error),
        category="InvalidOperation",
        target=":",
        exception="RuntimeException",
        error_id=error.error_id,
        terminating=True,
    )


def _host_not_running(cmdlet: Cmdlet) -> CmdletError:
    return CmdletError(
        message="The popgate service host is not running on this computer; start it with "
        "'popgate up' (or 'popgate host').",
        category="ConnectionError",
        target=":",
        exception="HostNotRunningException",
        error_id=cmdlet.error_id("HostNotRunning"),
        terminating=True,
    )


def _host_refused(cmdlet: Cmdlet, error: HostControlError) -> CmdletError:
    if error.access_denied:
        # What PowerShell says when the service control manager cannot be opened.
        return CmdletError(
            message="Cannot open Service Control Manager on computer '.'. This operation "
            "might require other privileges.",
            category="NotSpecified",
            target=":",
            exception="InvalidOperationException",
            error_id=cmdlet.error_id("System.InvalidOperationException"),
            terminating=True,
        )
    return CmdletError(
        message=str(error),
        category="NotSpecified",
        target=":",
        exception="HostControlException",
        error_id=cmdlet.error_id(f"HostError{error.code}"),
        terminating=True,
    )


class _AlreadyReported(Exception):  # noqa: N818 - a signal, not an error to show
    """A sub-pipeline failed and wrote its error; the enclosing command stops quietly."""


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else [value]


def objects_of(items: Sequence[object]) -> list[PSObject]:
    """The PSObjects among pipeline items."""
    return [item for item in items if isinstance(item, PSObject)]
