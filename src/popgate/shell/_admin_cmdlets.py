"""Exchange's POP3, mailbox, permission and server cmdlets over the host's control API."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from popgate.host._client import HostControlError
from popgate.host._common import ERROR_ACCESS_DENIED
from popgate.shell._errors import CmdletError
from popgate.shell._language import has_wildcards, wildcard_match
from popgate.shell._objects import PSObject, SecureString
from popgate.shell._runtime import Cmdlet, Invocation, Kind, Param

__all__ = ["ADMIN_CMDLETS", "POP_SETTING_NAMES"]

TASKS = "Microsoft.Exchange.Management"
SITE = "Default-First-Site-Name"

#: Every Set-PopSettings parameter (exchange-pop3.md section 2), popgate's own after them.
POP_SETTING_NAMES = (
    "AuthenticatedConnectionTimeout", "Banner", "CalendarItemRetrievalOption",
    "EnableExactRFC822Size", "EnableGSSAPIAndNTLMAuth", "EnforceCertificateErrors",
    "ExtendedProtectionPolicy", "ExternalConnectionSettings", "InternalConnectionSettings",
    "LogFileLocation", "LogFileRollOverSettings", "LoginType", "LogPerFileSizeQuota",
    "MaxCommandSize", "MaxConnectionFromSingleIP", "MaxConnections", "MaxConnectionsPerUser",
    "MessageRetrievalMimeFormat", "MessageRetrievalSortOrder", "OwaServerUrl",
    "PreAuthenticatedConnectionTimeout", "ProtocolLogEnabled", "ProxyTargetPort",
    "SSLBindings", "SuppressReadReceipt", "UnencryptedOrTLSBindings", "X509CertificateName",
    "AllowDirectBackendLogin", "GracefulStopTimeout", "WorkerProcesses", "LoginFailureDelay",
    "LoginFailureMaxDelay", "LoginFailureLockout",
)  # fmt: skip
#: Valid names of the enumerated settings, offered by tab completion.
POP_SETTING_CHOICES: Mapping[str, tuple[str, ...]] = {
    "LoginType": ("PlainTextLogin", "PlainTextAuthentication", "SecureLogin"),
    "CalendarItemRetrievalOption": ("iCalendar", "IntranetUrl", "InternetUrl", "Custom"),
    "ExtendedProtectionPolicy": ("None", "Allow", "Require"),
    "MessageRetrievalMimeFormat": (
        "TextOnly", "HtmlOnly", "HtmlAndTextAlternative", "TextEnrichedOnly",
        "TextEnrichedAndTextAlternative", "BestBodyFormat", "Tnef",
    ),
    "MessageRetrievalSortOrder": ("Ascending", "Descending"),
    "LogFileRollOverSettings": ("Hourly", "Daily", "Weekly", "Monthly"),
}  # fmt: skip
CAS_SETTINGS: Mapping[str, Kind] = {
    "PopEnabled": Kind.BOOL,
    "PopUseProtocolDefaults": Kind.BOOL,
    "PopMessagesRetrievalMimeFormat": Kind.STRING,
    "PopEnableExactRFC822Size": Kind.BOOL,
    "PopForceICalForCalendarRetrievalOption": Kind.BOOL,
    "PopSuppressReadReceipt": Kind.BOOL,
}


def _failure(invocation: Invocation, error: HostControlError, target: str = "") -> CmdletError:
    """A refusal from the host as an Exchange cmdlet error."""
    if error.code == ERROR_ACCESS_DENIED:
        return CmdletError(
            message=f"Access is denied. The role groups you belong to do not allow "
            f"{invocation.cmdlet.name}.",
            category="PermissionDenied",
            target=f"{target}:" if target else ":",
            exception="UnauthorizedAccessException",
            error_id=invocation.cmdlet.error_id("AccessDenied"),
        )
    category = "ObjectNotFound" if error.status == 404 else "InvalidData"
    exception = (
        "ManagementObjectNotFoundException" if error.status == 404 else "DataValidationException"
    )
    return CmdletError(
        message=str(error),
        category=category,
        target=f"{target}:" if target else ":",
        exception=exception,
        error_id=invocation.cmdlet.error_id(f"0x{error.code:X}"),
    )


def _call(invocation: Invocation, target: str, action: Callable[..., Any], *args: object) -> Any:  # noqa: ANN401 - the API's JSON
    """``action(*args)``; a refusal from the host becomes a non-terminating error (None)."""
    try:
        return action(*args)
    except HostControlError as error:
        invocation.error(_failure(invocation, error, target))
        return None


def _api_value(value: object) -> object:
    """A shell value as the API takes it: lists, @{Add=...;Remove=...}, scalars."""
    if isinstance(value, SecureString):
        return value.value
    if isinstance(value, list):
        return [str(_api_value(item)) for item in value]
    if isinstance(value, dict):
        edits: dict[str, list[str]] = {}
        for key, items in value.items():
            verb = str(key).capitalize()
            listed = items if isinstance(items, list) else [items]
            edits[verb] = [str(item) for item in listed]
        return edits
    return value


# --- POP3 settings -----------------------------------------------------------------------


def _settings_object(server: str, values: Mapping[str, str], pending: list[str]) -> PSObject:
    properties: dict[str, object] = {"Server": server}
    properties.update(values)
    properties["PendingRestart"] = pending
    return PSObject(
        "Microsoft.Exchange.Data.Directory.SystemConfiguration.Pop3AdConfiguration",
        properties,
        table=("UnencryptedOrTLSBindings", "SSLBindings", "LoginType", "X509CertificateName"),
    )


def _differences(answer: Mapping[str, Any]) -> list[str]:
    configured, effective = answer["configured"], answer["effective"]
    return [name for name in configured if configured[name] != effective.get(name)]


def get_pop_settings(invocation: Invocation) -> Iterable[object]:
    """Get-PopSettings [-Server NAME] [-Effective]."""
    server = invocation.string("Server")
    answer = _call(invocation, server or "", invocation.client.get_pop_settings, server)
    if answer is None:
        return []
    pending = _differences(answer)
    copy = answer["effective"] if invocation.switch("Effective") else answer["configured"]
    if pending and not invocation.switch("Effective"):
        invocation.warn(
            f"The POP3 services on server {answer['server']} still use other values for: "
            f"{', '.join(pending)}. Restart them to apply the configured values "
            "(Get-Service *POP* | Restart-Service); Get-PopSettings -Effective shows what they "
            "use now."
        )
    return [_settings_object(answer["server"], copy, pending)]


def set_pop_settings(invocation: Invocation) -> Iterable[object]:
    """Set-PopSettings: validated by the host; applies when the services restart."""
    server = invocation.string("Server")
    changes = {
        name: _api_value(value)
        for name, value in invocation.args.items()
        if name in POP_SETTING_NAMES
    }
    if not changes:
        return []
    if invocation.switch("WhatIf"):
        invocation.shell.io.write(
            f'What if: Configuring POP3 settings "{", ".join(changes)}" on server '
            f'"{server or "this server"}".\n'
        )
        return []
    answer = _call(invocation, server or "", invocation.client.set_pop_settings, changes, server)
    if answer is not None:
        invocation.warn(
            "Changes to POP3 settings will only take effect after all Microsoft Exchange POP3 "
            f"services are restarted on server {answer['server']}."
        )
        if idle := answer.get("without_effect"):
            invocation.warn(_without_effect(answer["server"], idle))
    return []


def _without_effect(server: str, names: list[str]) -> str:
    return (
        f"Server {server} does not use {', '.join(names)}: with the roles on separate "
        "servers, each setting takes effect on the role that owns it (Client Access or "
        "Mailbox). Set them on the servers of that role with -Server."
    )


# --- mailboxes ---------------------------------------------------------------------------


def _mailbox_object(view: Mapping[str, Any]) -> PSObject:
    return PSObject(
        "Microsoft.Exchange.Data.Directory.Management.Mailbox",
        {
            "Name": view["name"],
            "Alias": view["name"],
            "ServerName": view.get("server") or "",
            "PrimarySmtpAddress": view["address"],
            "ExchangeGuid": view["guid"],
            "WhenCreated": _when(view.get("created")),
            "IsAdministrator": view.get("is_administrator", False),
            "ProhibitSendReceiveQuota": view.get("prohibit_send_receive_quota", "unlimited"),
        },
        table=("Name", "Alias", "ServerName", "PrimarySmtpAddress"),
    )


def _when(text: object) -> object:
    if isinstance(text, str):
        try:
            return datetime.datetime.fromisoformat(text)
        except ValueError:
            return text
    return text


def _password(invocation: Invocation, name: str) -> str | None:
    secret = invocation.args.get("Password")
    if isinstance(secret, SecureString):
        return secret.value
    read = invocation.shell.io.read_secret
    if read is None:
        invocation.error(
            CmdletError(
                message="Give -Password (ConvertTo-SecureString -String '...' -AsPlainText "
                "-Force) when the shell is not interactive.",
                category="InvalidArgument",
                target=f"{name}:",
                exception="ParameterBindingException",
                error_id=invocation.cmdlet.error_id("MissingMandatoryParameter"),
            )
        )
        return None
    return read("Password: ")


def _identities(invocation: Invocation) -> list[str]:
    """-Identity, or names of the mailboxes piped in."""
    identity = invocation.string("Identity")
    if identity is not None:
        return [identity]
    names = []
    for item in invocation.input:
        name = item.get("Name") if isinstance(item, PSObject) else item
        if name is not None:
            names.append(str(name))
    return names


def _mailboxes(invocation: Invocation) -> list[Mapping[str, Any]]:
    identity = invocation.string("Identity")
    if identity is not None and not has_wildcards(identity):
        view = _call(invocation, identity, invocation.client.mailbox, identity)
        return [] if view is None else [view]
    listed = _call(invocation, "", invocation.client.mailboxes, identity)
    return list(listed or [])


def new_mailbox(invocation: Invocation) -> Iterable[object]:
    """New-Mailbox -Name NAME -Password (ConvertTo-SecureString ...) [-PrimarySmtpAddress]."""
    name = invocation.string("Name") or ""
    password = _password(invocation, name)
    if password is None:
        return []
    address = invocation.string("PrimarySmtpAddress") or invocation.string("UserPrincipalName")
    server = invocation.string("Server")
    view = _call(invocation, name, invocation.client.new_mailbox, name, password, address, server)
    return [] if view is None else [_mailbox_object(view)]


def get_mailbox(invocation: Invocation) -> Iterable[object]:
    """Get-Mailbox [[-Identity] NAME-OR-PATTERN]."""
    return [_mailbox_object(view) for view in _mailboxes(invocation)]


def _confirmed(invocation: Invocation, action: str, target: str) -> bool:
    if invocation.args.get("Confirm") is False:
        return True
    confirm = invocation.shell.io.confirm
    if confirm is None:
        invocation.error(
            CmdletError(
                message=f"{invocation.cmdlet.name} asks for confirmation; add -Confirm:$false "
                "to run it without a prompt.",
                category="InvalidOperation",
                target=f"{target}:",
                exception="PSInvalidOperationException",
                error_id=invocation.cmdlet.error_id("ConfirmationRequired"),
            )
        )
        return False
    return confirm(action, target)


def remove_mailbox(invocation: Invocation) -> Iterable[object]:
    """Remove-Mailbox -Identity NAME [-Confirm:$false]: removes the mailbox and its mail."""
    for identity in _identities(invocation):
        if _confirmed(
            invocation,
            f'Removing mailbox "{identity}" will remove the mailbox and all the mail in it.',
            identity,
        ):
            _call(invocation, identity, invocation.client.remove_mailbox, identity)
    return []


def set_mailbox(invocation: Invocation) -> Iterable[object]:
    """Set-Mailbox -Identity NAME [-Password (ConvertTo-SecureString ...)]
    [-ProhibitSendReceiveQuota SIZE|Unlimited]."""
    for identity in _identities(invocation):
        if invocation.given("Password"):
            password = _password(invocation, identity)
            if password is not None:
                _call(
                    invocation,
                    identity,
                    invocation.client.set_mailbox_password,
                    identity,
                    password,
                )
        if invocation.given("ProhibitSendReceiveQuota"):
            quota = str(invocation.args["ProhibitSendReceiveQuota"])
            _call(invocation, identity, invocation.client.set_mailbox_quota, identity, quota)
    return []


def _cas_object(view: Mapping[str, Any]) -> PSObject:
    properties: dict[str, object] = {"Name": view.get("Name") or view.get("name")}
    for name in CAS_SETTINGS:
        properties[name] = _lookup(view, name)
    return PSObject(
        "Microsoft.Exchange.Data.Directory.Management.CASMailbox",
        properties,
        table=("Name", "PopEnabled", "PopUseProtocolDefaults"),
    )


def _lookup(view: Mapping[str, Any], name: str) -> object:
    for key, value in view.items():
        if key.replace("_", "").casefold() == name.casefold():
            return value
    return None


def get_cas_mailbox(invocation: Invocation) -> Iterable[object]:
    """Get-CASMailbox [[-Identity] NAME]: the mailbox's POP3 switches."""
    results = []
    for view in _mailboxes(invocation):
        cas = _call(invocation, view["name"], invocation.client.cas_mailbox, view["name"])
        if cas is not None:
            results.append(_cas_object({"Name": view["name"], **cas}))
    return results


def set_cas_mailbox(invocation: Invocation) -> Iterable[object]:
    """Set-CASMailbox -Identity NAME -PopEnabled $false (and the other Pop* settings)."""
    changes = {name: value for name, value in invocation.args.items() if name in CAS_SETTINGS}
    for identity in _identities(invocation):
        if changes:
            _call(
                invocation,
                identity,
                invocation.client.set_cas_mailbox,
                identity,
                changes,
            )
    return []


# --- permissions, servers, audit ----------------------------------------------------------


def get_role_group_member(invocation: Invocation) -> Iterable[object]:
    """Get-RoleGroupMember -Identity "Organization Management"."""
    group = invocation.string("Identity") or ""
    members = _call(invocation, group, invocation.client.role_group_members, group)
    return [
        PSObject(
            "Microsoft.Exchange.Data.Directory.Management.ReducedRecipient",
            {"Name": member, "RecipientType": "UserMailbox"},
            table=("Name", "RecipientType"),
        )
        for member in members or []
    ]


def add_role_group_member(invocation: Invocation) -> Iterable[object]:
    """Add-RoleGroupMember -Identity GROUP -Member NAME."""
    group, member = invocation.string("Identity") or "", invocation.string("Member") or ""
    _call(invocation, group, invocation.client.add_role_group_member, group, member)
    return []


def remove_role_group_member(invocation: Invocation) -> Iterable[object]:
    """Remove-RoleGroupMember -Identity GROUP -Member NAME [-Confirm:$false]."""
    group, member = invocation.string("Identity") or "", invocation.string("Member") or ""
    if _confirmed(invocation, f'Removing "{member}" from role group "{group}".', group):
        _call(invocation, group, invocation.client.remove_role_group_member, group, member)
    return []


def get_exchange_server(invocation: Invocation) -> Iterable[object]:
    """Get-ExchangeServer [[-Identity] NAME]: the organization's computers and roles."""
    pattern = invocation.string("Identity") or "*"
    servers = _call(invocation, pattern, invocation.client.servers) or []
    found = [server for server in servers if wildcard_match(pattern, server["name"])]
    if not found and not has_wildcards(pattern):
        invocation.error(
            CmdletError(
                message=f"The operation couldn't be performed because object '{pattern}' "
                "couldn't be found.",
                category="NotSpecified",
                target=":",
                exception="ManagementObjectNotFoundException",
                error_id=invocation.cmdlet.error_id("ServerNotFound"),
            )
        )
    return [
        PSObject(
            "Microsoft.Exchange.Data.Directory.Management.ExchangeServer",
            {
                "Name": server["name"],
                "Site": SITE,
                "ServerRole": ", ".join(server["roles"]),
                "Edition": "popgate",
                "AdminDisplayVersion": "Version 15.0 (popgate)",
                "Fqdn": server["fqdn"],
            },
            table=("Name", "Site", "ServerRole", "Edition", "AdminDisplayVersion"),
        )
        for server in found
    ]


def _move_object(view: Mapping[str, Any]) -> PSObject:
    return PSObject(
        "Microsoft.Exchange.Management.RecipientTasks.MoveRequestStatistics",
        {
            "DisplayName": view["identity"],
            "Name": view["identity"],
            "Status": view["status"],
            "SourceServer": view["source_server"],
            "TargetServer": view["target_server"],
            "StatusDetail": view["detail"],
            "MailboxGuid": view["mailbox_guid"],
            "RequestedBy": view["requested_by"],
        },
        table=("DisplayName", "Status", "SourceServer", "TargetServer"),
    )


def new_move_request(invocation: Invocation) -> Iterable[object]:
    """New-MoveRequest -Identity NAME -TargetServer SERVER: copy, switch, clean up."""
    target = invocation.string("TargetServer") or ""
    moved = []
    for identity in _identities(invocation):
        view = _call(invocation, identity, invocation.client.new_move_request, identity, target)
        if view is not None:
            moved.append(_move_object(view))
    return moved


def get_move_request(invocation: Invocation) -> Iterable[object]:
    """Get-MoveRequest [[-Identity] NAME]: where each move stands."""
    identity = invocation.string("Identity")
    if identity is not None:
        view = _call(invocation, identity, invocation.client.move_request, identity)
        return [] if view is None else [_move_object(view)]
    views = _call(invocation, "", invocation.client.move_requests) or []
    return [_move_object(view) for view in views]


def resume_move_request(invocation: Invocation) -> Iterable[object]:
    """Resume-MoveRequest -Identity NAME: take a failed or interrupted move up again."""
    for identity in _identities(invocation):
        _call(invocation, identity, invocation.client.resume_move_request, identity)
    return []


def remove_move_request(invocation: Invocation) -> Iterable[object]:
    """Remove-MoveRequest -Identity NAME: forget a finished move, or cancel one in progress."""
    for identity in _identities(invocation):
        if _confirmed(invocation, f'Removing the move request of "{identity}".', identity):
            _call(invocation, identity, invocation.client.remove_move_request, identity)
    return []


def search_admin_audit_log(invocation: Invocation) -> Iterable[object]:
    """Search-AdminAuditLog [-Cmdlets] [-UserIds] [-StartDate] [-EndDate] [-ResultSize]."""
    result_size = invocation.args.get("ResultSize", 1000)
    entries = _call(
        invocation,
        "",
        invocation.client.search_audit,
        invocation.strings("Cmdlets") or None,
        invocation.strings("UserIds") or None,
        invocation.string("StartDate"),
        invocation.string("EndDate"),
        int(result_size) if isinstance(result_size, int) else 1000,
    )
    return [
        PSObject(
            "Microsoft.Exchange.Management.SystemConfigurationTasks.AdminAuditLogEvent",
            {
                "CmdletName": entry["action"],
                "ObjectModified": entry["target"],
                "Caller": entry["actor"],
                "Origin": entry["origin"],
                "Succeeded": entry["result"] == "Success",
                "Result": entry["result"],
                "Detail": entry["detail"],
                "RunDate": _when(entry["at"]),
            },
        )
        for entry in entries or []
    ]


def test_pop_connectivity(invocation: Invocation) -> Iterable[object]:
    """Test-PopConnectivity: a real logon through the front end, and a test message."""
    credential = invocation.args.get("MailboxCredential")
    user = password = None
    if credential is not None:
        if not isinstance(credential, PSObject) or not credential.has("UserName"):
            raise CmdletError(
                message="-MailboxCredential takes a credential: (Get-Credential NAME).",
                category="InvalidArgument",
                target=":",
                exception="ParameterBindingException",
                error_id=invocation.cmdlet.error_id("ParameterArgumentTransformationError"),
                terminating=True,
            )
        user = str(credential.get("UserName"))
        secret = credential.get("Password")
        password = secret.value if isinstance(secret, SecureString) else ""
    answer = _call(
        invocation,
        invocation.string("ClientAccessServer") or "",
        lambda: invocation.client.test_pop_connectivity(
            client_access_server=invocation.string("ClientAccessServer"),
            mailbox_user=user,
            mailbox_password=password,
            connection_type=invocation.string("ConnectionType"),
            port=invocation.args.get("PortClientAccessServer"),
            light_mode=invocation.switch("LightMode"),
            per_connection_timeout=invocation.args.get("PerConnectionTimeout"),
            timeout=invocation.args.get("Timeout"),
            trust_any_ssl_certificate=invocation.switch("TrustAnySSLCertificate"),
            reset_test_account_credentials=invocation.switch("ResetTestAccountCredentials"),
        ),
    )
    if answer is None:
        return []
    return [
        PSObject(
            "Microsoft.Exchange.Monitoring.CasTransactionOutcome",
            answer,
            table=("CasServer", "LocalSite", "Scenario", "Result", "Latency(MS)", "Error"),
        )
    ]


def get_credential(invocation: Invocation) -> Iterable[object]:
    """Get-Credential [-UserName NAME]: asks for the password (or takes -Password)."""
    user = invocation.string("UserName") or ""
    secret = invocation.args.get("Password")
    if not isinstance(secret, SecureString):
        read = invocation.shell.io.read_secret
        if read is None:
            raise CmdletError(
                message="Get-Credential asks for a password; outside the interactive shell "
                "give -Password (ConvertTo-SecureString -String '...' -AsPlainText -Force).",
                category="InvalidOperation",
                target=":",
                exception="PSInvalidOperationException",
                error_id=invocation.cmdlet.error_id("CouldNotPromptForCredential"),
                terminating=True,
            )
        secret = SecureString(read(f"Password for user {user}: "))
    return [
        PSObject(
            "System.Management.Automation.PSCredential",
            {"UserName": user, "Password": secret},
            table=("UserName", "Password"),
        )
    ]


IDENTITY = Param("Identity", Kind.STRING, position=0, help="Name or address.")
CONFIRM = Param("Confirm", Kind.SWITCH, help="-Confirm:$false skips the prompt.")
SERVER = Param("Server", Kind.STRING, help="Another server of the organization.")

ADMIN_CMDLETS: tuple[Cmdlet, ...] = (
    Cmdlet(
        "Get-PopSettings",
        "Shows the POP3 settings of a server (configured; -Effective: what the services use).",
        (
            Param("Server", Kind.STRING, position=0, help="The server (default this one)."),
            Param("DomainController", Kind.STRING, help="Accepted for compatibility; ignored."),
            Param("Effective", Kind.SWITCH, help="What the running services use."),
        ),
        get_pop_settings,
        error_class=f"{TASKS}.SystemConfigurationTasks.GetPopConfiguration",
    ),
    Cmdlet(
        "Set-PopSettings",
        "Changes the POP3 settings of a server; they apply when the services restart.",
        (
            *(
                Param(name, Kind.OBJECT, choices=POP_SETTING_CHOICES.get(name, ()))
                for name in POP_SETTING_NAMES
            ),
            SERVER,
            Param("DomainController", Kind.STRING, help="Accepted for compatibility; ignored."),
            Param("WhatIf", Kind.SWITCH, help="Show what would change, change nothing."),
            CONFIRM,
        ),
        set_pop_settings,
        error_class=f"{TASKS}.SystemConfigurationTasks.SetPopConfiguration",
    ),
    Cmdlet(
        "New-Mailbox",
        "Creates a mailbox.",
        (
            Param("Name", Kind.STRING, position=0, mandatory=True, help="The mailbox name."),
            Param("Password", Kind.SECURE, help="Prompted for when left out."),
            Param("PrimarySmtpAddress", Kind.STRING, help="Default: NAME@<default domain>."),
            Param("UserPrincipalName", Kind.STRING, help="Used as the address if none given."),
            Param("Alias", Kind.STRING, help="Accepted; the alias is the name."),
            SERVER,
        ),
        new_mailbox,
        error_class=f"{TASKS}.RecipientTasks.NewMailbox",
    ),
    Cmdlet(
        "Get-Mailbox",
        "Lists mailboxes (wildcards permitted).",
        (IDENTITY, Param("ResultSize", Kind.STRING, help="Accepted; every match is returned.")),
        get_mailbox,
        error_class=f"{TASKS}.RecipientTasks.GetMailbox",
    ),
    Cmdlet(
        "Remove-Mailbox",
        "Removes a mailbox and its mail.",
        (IDENTITY, CONFIRM),
        remove_mailbox,
        error_class=f"{TASKS}.RecipientTasks.RemoveMailbox",
    ),
    Cmdlet(
        "Set-Mailbox",
        "Changes a mailbox: its password, its quota.",
        (
            IDENTITY,
            Param("Password", Kind.SECURE, help="The new password."),
            Param(
                "ProhibitSendReceiveQuota",
                Kind.STRING,
                help="The most the mailbox may hold (500MB, 2GB, Unlimited); delivery "
                "refuses a message that would go past it.",
            ),
        ),
        set_mailbox,
        error_class=f"{TASKS}.RecipientTasks.SetMailbox",
    ),
    Cmdlet(
        "Get-CASMailbox",
        "Shows a mailbox's POP3 settings.",
        (IDENTITY,),
        get_cas_mailbox,
        error_class=f"{TASKS}.RecipientTasks.GetCASMailbox",
    ),
    Cmdlet(
        "Set-CASMailbox",
        "Changes a mailbox's POP3 settings (PopEnabled and the Pop* settings).",
        (
            IDENTITY,
            *(
                Param(
                    name,
                    kind,
                    choices=POP_SETTING_CHOICES["MessageRetrievalMimeFormat"]
                    if name == "PopMessagesRetrievalMimeFormat"
                    else (),
                )
                for name, kind in CAS_SETTINGS.items()
            ),
        ),
        set_cas_mailbox,
        error_class=f"{TASKS}.RecipientTasks.SetCASMailbox",
    ),
    Cmdlet(
        "Get-RoleGroupMember",
        "Lists the members of a role group.",
        (Param("Identity", Kind.STRING, position=0, mandatory=True, help="The role group."),),
        get_role_group_member,
        error_class=f"{TASKS}.RbacTasks.GetRoleGroupMember",
    ),
    Cmdlet(
        "Add-RoleGroupMember",
        "Adds a mailbox to a role group.",
        (
            Param("Identity", Kind.STRING, position=0, mandatory=True, help="The role group."),
            Param("Member", Kind.STRING, mandatory=True, help="The mailbox."),
        ),
        add_role_group_member,
        error_class=f"{TASKS}.RbacTasks.AddRoleGroupMember",
    ),
    Cmdlet(
        "Remove-RoleGroupMember",
        "Removes a mailbox from a role group.",
        (
            Param("Identity", Kind.STRING, position=0, mandatory=True, help="The role group."),
            Param("Member", Kind.STRING, mandatory=True, help="The mailbox."),
            CONFIRM,
        ),
        remove_role_group_member,
        error_class=f"{TASKS}.RbacTasks.RemoveRoleGroupMember",
    ),
    Cmdlet(
        "New-MoveRequest",
        "Moves a mailbox to another Mailbox server, keeping every message and UIDL.",
        (
            IDENTITY,
            Param(
                "TargetServer",
                Kind.STRING,
                aliases=("TargetDatabase",),
                help="The Mailbox server to move it to.",
            ),
        ),
        new_move_request,
        error_class=f"{TASKS}.RecipientTasks.NewMoveRequest",
    ),
    Cmdlet(
        "Get-MoveRequest",
        "Shows mailbox moves and where each stands.",
        (IDENTITY,),
        get_move_request,
        error_class=f"{TASKS}.RecipientTasks.GetMoveRequest",
    ),
    Cmdlet(
        "Resume-MoveRequest",
        "Takes a failed or interrupted mailbox move up again.",
        (IDENTITY,),
        resume_move_request,
        error_class=f"{TASKS}.RecipientTasks.ResumeMoveRequest",
    ),
    Cmdlet(
        "Remove-MoveRequest",
        "Forgets a finished move, or cancels one before the mailbox switches servers.",
        (IDENTITY, CONFIRM),
        remove_move_request,
        error_class=f"{TASKS}.RecipientTasks.RemoveMoveRequest",
    ),
    Cmdlet(
        "Get-ExchangeServer",
        "Lists the servers of the organization and their roles.",
        (IDENTITY,),
        get_exchange_server,
        error_class=f"{TASKS}.SystemConfigurationTasks.GetExchangeServer",
    ),
    Cmdlet(
        "Test-PopConnectivity",
        "Logs on to the POP3 service with a test mailbox and fetches a test message.",
        (
            Param(
                "ClientAccessServer",
                Kind.STRING,
                position=0,
                help="The server whose front end to test (default this one).",
            ),
            Param("MailboxServer", Kind.STRING, help="Accepted for compatibility."),
            Param(
                "MailboxCredential",
                Kind.OBJECT,
                help="(Get-Credential NAME); default the test mailbox extest_<server>.",
            ),
            Param(
                "ConnectionType",
                Kind.ENUM,
                choices=("Plaintext", "Ssl", "Tls"),
                help="Plaintext (110), Ssl (995, the default) or Tls (110 with STLS).",
            ),
            Param("PortClientAccessServer", Kind.INT, help="Default: from the bindings."),
            Param("PerConnectionTimeout", Kind.INT, help="Seconds per operation (0-120)."),
            Param("Timeout", Kind.INT, help="Seconds for the whole test (0-3600)."),
            Param("TrustAnySSLCertificate", Kind.SWITCH, help="Accept any certificate."),
            Param("LightMode", Kind.SWITCH, help="Only log on; no test message."),
            Param(
                "ResetTestAccountCredentials",
                Kind.SWITCH,
                help="Give the test mailbox a new password.",
            ),
            Param("MonitoringContext", Kind.BOOL, help="Accepted for compatibility."),
        ),
        test_pop_connectivity,
        error_class=f"{TASKS}.SystemConfigurationTasks.TestPopConnectivity",
    ),
    Cmdlet(
        "Get-Credential",
        "Asks for a user name's password and returns a credential.",
        (
            Param("UserName", Kind.STRING, position=0, help="The account."),
            Param("Password", Kind.SECURE, help="For scripts: the password as a secure string."),
        ),
        get_credential,
        error_class="Microsoft.PowerShell.Commands.GetCredentialCommand",
    ),
    Cmdlet(
        "Search-AdminAuditLog",
        "Searches the audit log of administrative changes.",
        (
            Param("Cmdlets", Kind.STRINGS, help="Cmdlet names, e.g. Start-Service."),
            Param("UserIds", Kind.STRINGS, help="Who made the change."),
            Param("StartDate", Kind.STRING, help="From this date/time (ISO 8601)."),
            Param("EndDate", Kind.STRING, help="Until this date/time (ISO 8601)."),
            Param("ResultSize", Kind.INT, help="At most this many entries (default 1000)."),
        ),
        search_admin_audit_log,
        error_class=f"{TASKS}.SystemConfigurationTasks.SearchAdminAuditLog",
    ),
)
