"""The shell's own cmdlets: Where-Object, Format-*, Get-Help, Get-Command, and friends."""

from __future__ import annotations

from collections.abc import Iterable

from popgate.host._client import HostClient, HostControlError, HostNotRunningError
from popgate.shell._errors import CmdletError
from popgate.shell._language import ScriptBlock, evaluate, is_true, wildcard_match
from popgate.shell._objects import (
    PSObject,
    SecureString,
    format_list,
    format_table,
    get_property,
    rendered,
)
from popgate.shell._runtime import Cmdlet, Invocation, Kind, Param

__all__ = ["CORE_CMDLETS", "syntax_of"]

COMMANDS = "Microsoft.PowerShell.Commands"


def where_object(invocation: Invocation) -> Iterable[object]:
    """Keep the input objects for which the script block is true."""
    block = invocation.args["FilterScript"]
    assert isinstance(block, ScriptBlock)
    return [
        item
        for item in invocation.input
        if is_true(evaluate(block.body, {"_": item, "PSItem": item}, get_property))
    ]


def _properties(invocation: Invocation) -> list[str] | None:
    names = invocation.args.get("Property")
    if names is None:
        return None
    listed = [str(name) for name in (names if isinstance(names, list) else [names])]
    return None if listed == ["*"] else listed


def format_table_cmdlet(invocation: Invocation) -> Iterable[object]:
    """Format-Table [-Property] NAME,NAME [-AutoSize]."""
    objects = [item for item in invocation.input if isinstance(item, PSObject)]
    others = [item for item in invocation.input if not isinstance(item, PSObject)]
    columns = _properties(invocation)
    # Explicit columns or -AutoSize size to the content, not to the view's fixed widths.
    widths: dict[str, int] | None = {} if invocation.switch("AutoSize") or columns else None
    return [rendered(format_table(objects, columns, widths)), *others] if objects else others


def format_list_cmdlet(invocation: Invocation) -> Iterable[object]:
    """Format-List [-Property] NAME,NAME (every property by default, or with *)."""
    objects = [item for item in invocation.input if isinstance(item, PSObject)]
    others = [item for item in invocation.input if not isinstance(item, PSObject)]
    return [rendered(format_list(objects, _properties(invocation))), *others] if objects else others


def select_object(invocation: Invocation) -> Iterable[object]:
    """Select-Object [-Property] NAME,NAME [-First N]."""
    names = _properties(invocation)
    items = invocation.input
    first = invocation.args.get("First")
    if isinstance(first, int):
        items = items[:first]
    if names is None:
        return items
    return [
        PSObject(
            item.type_name if isinstance(item, PSObject) else "Selected",
            {name: get_property(item, name) for name in names},
        )
        for item in items
    ]


def convert_to_secure_string(invocation: Invocation) -> Iterable[object]:
    """ConvertTo-SecureString -String TEXT -AsPlainText -Force."""
    text = invocation.string("String") or ""
    if not invocation.switch("AsPlainText"):
        raise CmdletError(
            message="Input string was not in a correct format.",
            category="InvalidArgument",
            target=":",
            exception="FormatException",
            error_id=invocation.cmdlet.error_id("ImportSecureString"),
            terminating=True,
        )
    if not invocation.switch("Force"):
        raise CmdletError(
            message="The system cannot protect plain text input. To suppress this warning and "
            "convert the plain text to a SecureString, reissue the command specifying the "
            "Force parameter. For more information ,type: get-help "
            "ConvertTo-SecureString.",
            category="InvalidArgument",
            target=":",
            exception="ArgumentException",
            error_id=invocation.cmdlet.error_id("ImportSecureString"),
            terminating=True,
        )
    return [SecureString(text)]


def syntax_of(cmdlet: Cmdlet) -> str:
    """``Name [-Param] <Type> [-Switch]``, as Get-Help's SYNTAX shows it."""
    parts = [cmdlet.name]
    for param in cmdlet.params:
        type_name = param.shown_type.rsplit(".", 1)[-1]
        name = f"[-{param.name}]" if param.position is not None else f"-{param.name}"
        text = name if param.kind is Kind.SWITCH else f"{name} <{type_name}>"
        parts.append(text if param.mandatory else f"[{text}]")
    return " ".join(parts)


def get_help(invocation: Invocation) -> Iterable[object]:
    """Get-Help NAME: synopsis, syntax and parameters."""
    name = invocation.string("Name") or "Get-Help"
    cmdlet = invocation.shell.cmdlets.get(name.casefold())
    if cmdlet is None:
        raise CmdletError(
            message=f"Get-Help could not find {name} in a help file in this session. Use "
            "Get-Command to list the commands that exist.",
            category="ResourceUnavailable",
            target=f"{name}:String",
            exception="HelpNotFoundException",
            error_id=invocation.cmdlet.error_id("HelpNotFound"),
            terminating=True,
        )
    lines = ["", "NAME", f"    {cmdlet.name}", "", "SYNOPSIS", f"    {cmdlet.synopsis}", ""]
    lines += ["SYNTAX", f"    {syntax_of(cmdlet)}", ""]
    if cmdlet.params:
        lines.append("PARAMETERS")
        for param in cmdlet.params:
            type_name = param.shown_type.rsplit(".", 1)[-1]
            head = f"    -{param.name}" + ("" if param.kind is Kind.SWITCH else f" <{type_name}>")
            lines.append(head)
            if param.help:
                lines.append(f"        {param.help}")
            if param.choices:
                lines.append(f"        Valid values: {', '.join(param.choices)}")
            lines.append("")
    if cmdlet.aliases:
        lines += ["ALIASES", *(f"    {alias}" for alias in cmdlet.aliases), ""]
    return [rendered("\n".join(lines) + "\n")]


def get_command(invocation: Invocation) -> Iterable[object]:
    """Get-Command [NAME-PATTERN]: the cmdlets of this shell."""
    pattern = invocation.string("Name") or "*"
    unique = {cmdlet.name: cmdlet for cmdlet in invocation.shell.cmdlets.values()}
    return [
        PSObject(
            "System.Management.Automation.CmdletInfo",
            {"CommandType": "Cmdlet", "Name": name, "Synopsis": unique[name].synopsis},
            table=("CommandType", "Name", "Synopsis"),
        )
        for name in sorted(unique, key=str.casefold)
        if wildcard_match(pattern, name)
    ]


def connect_popgate_server(invocation: Invocation) -> Iterable[object]:
    """Connect-PopgateServer -Server HOST: manage another computer's host over HTTPS."""
    server = invocation.string("Server") or "localhost"
    port = invocation.args.get("Port", 8443)
    user = invocation.string("UserName") or "Administrator"
    secret = invocation.args.get("Password")
    if isinstance(secret, SecureString):
        password = secret.value
    elif invocation.shell.io.read_secret is not None:
        password = invocation.shell.io.read_secret(f"Password for {user}@{server}: ")
    else:
        raise CmdletError(
            message="Give -Password (ConvertTo-SecureString -String '...' -AsPlainText -Force) "
            "when the shell is not interactive.",
            category="InvalidArgument",
            target=":",
            exception="ArgumentException",
            error_id=invocation.cmdlet.error_id("PasswordRequired"),
            terminating=True,
        )
    url = f"https://{server}:{port}/"
    client = HostClient.remote(
        url, user=user, password=password, verify=not invocation.switch("TrustAnySSLCertificate")
    )
    try:
        who = client.whoami()
    except (HostNotRunningError, HostControlError) as error:
        client.close()
        reason = str(error) if isinstance(error, HostControlError) else "nothing answers there"
        raise CmdletError(
            message=f"Cannot connect to the popgate host at {url}: {reason}.",
            category="ConnectionError",
            target=f"{server}:String",
            exception="HostConnectionException",
            error_id=invocation.cmdlet.error_id("ConnectFailed"),
            terminating=True,
        ) from None
    invocation.shell.use_client(client)
    return [
        PSObject(
            "Popgate.Connection",
            {
                "Server": server,
                "Url": url,
                "User": who["name"],
                "RoleGroups": who["role_groups"],
            },
            table=("Server", "User", "RoleGroups"),
        )
    ]


CORE_CMDLETS: tuple[Cmdlet, ...] = (
    Cmdlet(
        "Where-Object",
        "Selects objects from a collection based on a script block.",
        (
            Param(
                "FilterScript",
                Kind.SCRIPT,
                position=0,
                mandatory=True,
                help="e.g. { $_.Status -eq 'Running' }",
            ),
        ),
        where_object,
        aliases=("where", "?"),
        error_class=f"{COMMANDS}.WhereObjectCommand",
    ),
    Cmdlet(
        "Format-Table",
        "Formats the output as a table.",
        (
            Param("Property", Kind.OBJECTS, position=0, help="Columns to show."),
            Param("AutoSize", Kind.SWITCH, help="Size columns to their contents."),
        ),
        format_table_cmdlet,
        aliases=("ft",),
        error_class=f"{COMMANDS}.FormatTableCommand",
    ),
    Cmdlet(
        "Format-List",
        "Formats the output as a list of properties.",
        (Param("Property", Kind.OBJECTS, position=0, help="Properties to show (* for all)."),),
        format_list_cmdlet,
        aliases=("fl",),
        error_class=f"{COMMANDS}.FormatListCommand",
    ),
    Cmdlet(
        "Select-Object",
        "Selects properties of objects, or the first N objects.",
        (
            Param("Property", Kind.OBJECTS, position=0, help="Properties to keep."),
            Param("First", Kind.INT, help="How many objects to keep."),
        ),
        select_object,
        aliases=("select",),
        error_class=f"{COMMANDS}.SelectObjectCommand",
    ),
    Cmdlet(
        "ConvertTo-SecureString",
        "Converts plain text to a secure string (for -Password).",
        (
            Param("String", Kind.STRING, position=0, mandatory=True, help="The text."),
            Param("AsPlainText", Kind.SWITCH, help="The text is plain text."),
            Param("Force", Kind.SWITCH, help="Confirms that plain text is intended."),
        ),
        convert_to_secure_string,
        error_class=f"{COMMANDS}.ConvertToSecureStringCommand",
    ),
    Cmdlet(
        "Get-Help",
        "Displays information about a cmdlet.",
        (Param("Name", Kind.STRING, position=0, help="The cmdlet."),),
        get_help,
        aliases=("help",),
        error_class=f"{COMMANDS}.GetHelpCommand",
    ),
    Cmdlet(
        "Get-Command",
        "Lists the cmdlets of this shell.",
        (Param("Name", Kind.STRING, position=0, help="A name or wildcard pattern."),),
        get_command,
        aliases=("gcm",),
        error_class=f"{COMMANDS}.GetCommandCommand",
    ),
    Cmdlet(
        "Connect-PopgateServer",
        "Manages another computer's services through its host API over HTTPS.",
        (
            Param("Server", Kind.STRING, position=0, mandatory=True, help="Host name or address."),
            Param("Port", Kind.INT, help="HTTPS port of the host API (default 8443)."),
            Param("UserName", Kind.STRING, help="Directory account (default Administrator)."),
            Param("Password", Kind.SECURE, help="Prompted for when left out."),
            Param("TrustAnySSLCertificate", Kind.SWITCH, help="Accept a self-signed certificate."),
        ),
        connect_popgate_server,
    ),
)
