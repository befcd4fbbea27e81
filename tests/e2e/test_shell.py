"""``popgate shell`` against a real host: the seed's Shell procedure and every cmdlet."""

from __future__ import annotations

import os
import poplib
import re
import sys
from pathlib import Path

import pexpect
import pytest

from tests.e2e.conftest import Installation, insecure_client_context
from tests.e2e.test_backend import MESSAGES, PASSWORD
from tests.e2e.test_control import directory_call, newest_audit_of

PROMPT = r"\[PS\] \S+>"
SECURE = f"(ConvertTo-SecureString -String '{PASSWORD}' -AsPlainText -Force)"


def shell(installation: Installation, text: str, *, ok: bool = True) -> str:
    """Run ``popgate shell -c TEXT``; its output (exit status 0 expected when ``ok``)."""
    result = installation.popgate("shell", "-c", text, check=False)
    assert (result.returncode == 0) is ok, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


def table_rows(output: str) -> dict[str, list[str]]:
    """Rows of a Get-Service table by service name."""
    rows = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("Running", "Stopped", "StartPending", "StopPending"):
            rows[words[1]] = words
    return rows


def test_the_seeds_shell_procedure(installation: Installation) -> None:
    installation.start_host()
    assert shell(installation, "Start-service MSExchangePOP3") == ""
    assert shell(installation, "Start-service MSExchangePOP3BE") == ""
    listed = shell(installation, "Get-Service MSExchangePOP3*")
    assert listed == (
        "\n"
        "Status   Name               DisplayName\n"
        "------   ----               -----------\n"
        "Running  MSExchangePOP3     Microsoft Exchange POP3\n"
        "Running  MSExchangePOP3BE   Microsoft Exchange POP3 Backend\n"
        "\n"
    )
    assert shell(installation, "Stop-service MSExchangePOP3") == ""
    assert shell(installation, "Stop-service MSExchangePOP3BE") == ""
    rows = table_rows(shell(installation, "Get-Service MSExchangePOP3*"))
    assert {name: row[0] for name, row in rows.items()} == {
        "MSExchangePOP3": "Stopped",
        "MSExchangePOP3BE": "Stopped",
    }


def test_service_errors_look_like_powershell(installation: Installation) -> None:
    installation.start_host()
    output = shell(installation, "Start-Service MSExchangeIMAP4", ok=False)
    assert output == (
        "Start-Service : Cannot find any service with service name 'MSExchangeIMAP4'.\n"
        "At line:1 char:1\n"
        "+ Start-Service MSExchangeIMAP4\n"
        "+ ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n"
        "    + CategoryInfo          : ObjectNotFound: (MSExchangeIMAP4:String) [Start-Service], "
        "ServiceCommandException\n"
        "    + FullyQualifiedErrorId : NoServiceFoundForGivenName,"
        "Microsoft.PowerShell.Commands.StartServiceCommand\n\n"
    )
    # A wildcard that matches nothing is not an error.
    assert shell(installation, "Get-Service *IMAP*") == ""
    shell(installation, "Set-Service MSExchangePOP3 -StartupType Disabled")
    output = shell(installation, "Start-Service MSExchangePOP3", ok=False)
    assert output.startswith(
        "Start-Service : Service 'Microsoft Exchange POP3 (MSExchangePOP3)' cannot be started "
        "due to the following error: Cannot start service MSExchangePOP3 on computer '.'.\n"
    )
    assert "CouldNotStartService,Microsoft.PowerShell.Commands.StartServiceCommand" in output
    output = shell(installation, "Get-Service MSExchangePOP3 | Format-List Name,StartType")
    assert output == "\nName      : MSExchangePOP3\nStartType : Disabled\n\n"
    shell(installation, "Set-Service -Name MSExchangePOP3 -StartupType manual")
    # Stopping a stopped service is silently nothing, as in PowerShell.
    assert shell(installation, "Stop-Service MSExchangePOP3BE") == ""


def test_parse_errors_point_at_the_column(installation: Installation) -> None:
    output = shell(installation, "Get-Service -Name 'MSExchangePOP3", ok=False)
    assert output.startswith("At line:1 char:19\n+ Get-Service -Name 'MSExchangePOP3\n")
    assert "The string is missing the terminator: '." in output
    assert "FullyQualifiedErrorId : TerminatorExpectedAtEndOfString" in output
    output = shell(installation, "Get-Service -Bogus x", ok=False)
    assert "A parameter cannot be found that matches parameter name 'Bogus'." in output


def test_pipelines_restart_filter_and_format(installation: Installation) -> None:
    installation.start_host()
    shell(installation, "Start-Service MSExchangePOP3BE; Start-Service MSExchangePOP3")
    before = {s: installation.wait_for_status(s, "Running")["pid"] for s in
              ("MSExchangePOP3", "MSExchangePOP3BE")}  # fmt: skip
    assert shell(installation, "Get-Service *POP* | Restart-Service") == ""
    for name, pid in before.items():
        assert installation.wait_for_status(name, "Running")["pid"] != pid
    shell(installation, "Stop-Service MSExchangePOP3")
    running = shell(
        installation, "Get-Service | Where-Object { $_.Status -eq 'Running' } | ft Name"
    )
    # Mail delivery (Automatic) runs too; Get-Service sorts by name.
    assert running == "\nName\n----\nMSExchangeDelivery\nMSExchangePOP3BE\n\n"
    passed = shell(installation, "Start-Service MSExchangePOP3 -PassThru | fl Name,Status")
    assert passed == "\nName   : MSExchangePOP3\nStatus : Running\n\n"
    started = shell(installation, "Net Start")
    assert "   Microsoft Exchange POP3 Backend\n" in started
    stopped = shell(installation, "Net Stop MSExchangePOP3")
    assert stopped.endswith("The Microsoft Exchange POP3 service was stopped successfully.\n\n")
    output = shell(installation, "Net Stop MSExchangePOP3", ok=False)
    assert "More help is available by typing NET HELPMSG 3521." in output


def _bindings(listing: str) -> set[str]:
    """The address:port entries of a `fl SSLBindings` listing (a port may start with 1)."""
    return set(re.findall(r"\b[\d.]+:\d+\b", listing))


def test_pop_settings_change_after_a_restart_and_bad_values_change_nothing(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, tmp_path / "eml")
    installation.start_host()
    shell(installation, "Start-Service MSExchangePOP3BE; Start-Service MSExchangePOP3")
    changed = shell(
        installation,
        "Set-PopSettings -Banner 'popgate test banner' -LoginType PlainTextLogin "
        "-MaxConnectionsPerUser 2",
    )
    assert changed == (
        "WARNING: Changes to POP3 settings will only take effect after all Microsoft Exchange "
        f"POP3 services are restarted on server {installation.layout.server_name}.\n"
    )
    listed = shell(installation, "Get-PopSettings | fl Banner,LoginType,MaxConnectionsPerUser")
    assert "Banner                : popgate test banner\n" in listed
    assert "WARNING: The POP3 services on server" in listed
    effective = shell(installation, "Get-PopSettings -Effective | fl Banner")
    assert "The Microsoft Exchange POP3 service is ready." in effective
    shell(installation, "Get-Service *POP* | Restart-Service")
    client = poplib.POP3("127.0.0.1", installation.plain_port, timeout=30)
    assert client.getwelcome() == b"+OK popgate test banner"
    client.user("alice")  # PlainTextLogin: no STLS needed
    client.pass_(PASSWORD)
    assert client.stat()[0] == len(MESSAGES)
    client.quit()

    for bad, reason in (("-LoginType Bogus", "LoginType"), ("-MaxCommandSize 5", "MaxCommandSize")):
        output = shell(installation, f"Set-PopSettings {bad}", ok=False)
        assert reason in output
        assert "CategoryInfo          : InvalidData" in output
    unchanged = shell(installation, "Get-PopSettings | fl LoginType,MaxCommandSize")
    assert "LoginType      : PlainTextLogin\n" in unchanged
    assert "MaxCommandSize : 512\n" in unchanged
    shell(installation, "Set-PopSettings -SSLBindings @{Add='127.0.0.1:1'}")
    bindings = _bindings(shell(installation, "Get-PopSettings | fl SSLBindings"))
    assert "127.0.0.1:1" in bindings
    shell(installation, "Set-PopSettings -SSLBindings @{Remove='127.0.0.1:1'}")
    bindings = _bindings(shell(installation, "Get-PopSettings | fl SSLBindings"))
    assert bindings == {f"127.0.0.1:{installation.ssl_port}"}
    audit = shell(installation, "Search-AdminAuditLog -Cmdlets Set-PopSettings -ResultSize 10")
    assert "CmdletName     : Set-PopSettings" in audit
    assert "Banner" in audit


def test_mailbox_and_cas_mailbox_cmdlets(installation: Installation) -> None:
    installation.start_host()
    created = shell(installation, f"New-Mailbox -Name carol -Password {SECURE}")
    assert "carol" in created
    assert "carol" in shell(installation, "Get-Mailbox car*")
    shell(installation, "Start-Service MSExchangePOP3BE")
    client = poplib.POP3_SSL(
        "127.0.0.1", installation.backend_port, context=insecure_client_context(), timeout=30
    )
    client.user("carol")
    client.pass_(PASSWORD)
    client.quit()
    shell(installation, "Set-CASMailbox -Identity carol -PopEnabled $false")
    cas = shell(installation, "Get-CASMailbox carol")
    assert re.search(r"carol\s+False\s+True", cas), cas
    shell(installation, "Restart-Service MSExchangePOP3BE")
    client = poplib.POP3_SSL(
        "127.0.0.1", installation.backend_port, context=insecure_client_context(), timeout=30
    )
    client.user("carol")
    with pytest.raises(poplib.error_proto):
        client.pass_(PASSWORD)
    client.close()
    shell(installation, "Set-CASMailbox carol -PopEnabled $true")
    new_password = "(ConvertTo-SecureString 'new pass phrase' -AsPlainText -Force)"
    shell(installation, f"Set-Mailbox carol -Password {new_password}")
    refused = shell(installation, "Remove-Mailbox carol", ok=False)
    assert "-Confirm:$false" in refused
    shell(installation, "Remove-Mailbox carol -Confirm:$false")
    missing = shell(installation, "Get-Mailbox carol", ok=False)
    assert "carol" in missing
    assert "ObjectNotFound" in missing
    entry = newest_audit_of(installation, "Remove-Mailbox")
    assert entry["result"] == "Success"


def test_role_groups_servers_help_and_commands(installation: Installation) -> None:
    installation.add_mailbox("dave", PASSWORD)
    installation.start_host()
    shell(installation, "Add-RoleGroupMember 'View-Only Organization Management' -Member dave")
    members = shell(installation, "Get-RoleGroupMember 'View-Only Organization Management'")
    assert "dave" in members
    servers = shell(installation, "Get-ExchangeServer")
    assert installation.layout.server_name in servers
    assert "Default-First-Site-Name" in servers
    help_text = shell(installation, "Get-Help Start-Service")
    assert "SYNOPSIS\n    Starts one or more stopped services." in help_text
    assert "[-PassThru]" in help_text
    commands = shell(installation, "Get-Command *-PopSettings")
    assert "Get-PopSettings" in commands
    assert "Set-PopSettings" in commands
    shell(
        installation,
        "Remove-RoleGroupMember 'View-Only Organization Management' -Member dave -Confirm:$false",
    )
    assert "dave" not in shell(
        installation, "Get-RoleGroupMember 'View-Only Organization Management'"
    )


def test_a_view_only_member_reads_but_cannot_change(installation: Installation) -> None:
    installation.add_mailbox("viewer", PASSWORD)
    directory_call(
        installation, "add_role_group_member", "View-Only Organization Management", "viewer"
    )
    installation.start_host()
    connect = (
        f"Connect-PopgateServer -Server 127.0.0.1 -Port {installation.https_port} "
        f"-UserName viewer -Password {SECURE} -TrustAnySSLCertificate; "
    )
    output = shell(installation, connect + "Get-PopSettings")
    assert "View-Only Organization Management" in output  # who the connection acts as
    assert "SecureLogin" in output
    output = shell(installation, connect + "Set-PopSettings -Banner x", ok=False)
    assert "Access is denied." in output
    output = shell(installation, connect + "Start-Service MSExchangePOP3", ok=False)
    assert "Cannot open MSExchangePOP3 service on computer '.'." in output
    assert newest_audit_of(installation, "Set-PopSettings", "viewer")["result"] == "Denied"


def test_scripts_run_with_f_and_fail_as_a_whole(installation: Installation, tmp_path: Path) -> None:
    installation.start_host()
    script = tmp_path / "start.ps1"
    script.write_text(
        "# Start the POP3 services\nStart-Service MSExchangePOP3BE\n"
        "Get-Service MSExchangePOP3BE |\n  Format-List Name, Status\n"
    )
    result = installation.popgate("shell", "-f", str(script))
    assert result.stdout == "\nName   : MSExchangePOP3BE\nStatus : Running\n\n"
    failing = tmp_path / "fail.ps1"
    failing.write_text("Start-Service Nope\nGet-Service MSExchangePOP3BE\n")
    result = installation.popgate("shell", "-f", str(failing), check=False)
    assert result.returncode == 1
    assert "Running  MSExchangePOP3BE" in result.stdout  # the next command still ran


def test_interactive_completion_and_history(installation: Installation) -> None:
    installation.start_host()
    child = pexpect.spawn(
        sys.executable,
        ["-m", "popgate.cli", "shell"],
        # pexpect's terminal does not answer cursor-position requests; say so up front.
        env={
            **installation.env,
            "TERM": "xterm",
            "HOME": str(installation.home),
            "PROMPT_TOOLKIT_NO_CPR": "1",
        },
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 160),
    )
    try:
        child.expect(PROMPT)
        child.send("Start-Ser\t")
        child.expect_exact("Start-Service")
        child.send(" MSExchangePOP3B\t")
        child.expect_exact("MSExchangePOP3BE")
        child.send("\r")
        child.expect(PROMPT)
        child.send("Set-Service MSExchangePOP3 -Startup\t")
        child.expect_exact("-StartupType")
        child.send(" Dis\t")
        child.expect_exact("Disabled")
        child.send("\x15")  # Ctrl-U: forget this line
        child.send("Get-Service MSExchangePOP3BE |\r")
        child.expect_exact(">>")  # a trailing pipe asks for the rest
        child.send("Format-List Status\r")
        child.expect_exact("Status : Running")
        child.expect(PROMPT)
        # History: Up recalls the previous command (both lines of it).
        child.send("\x1b[A")
        child.expect_exact("Format-List Status")
        child.send("\r")
        child.expect_exact("Status : Running")
        child.expect(PROMPT)
        child.send("exit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    history = installation.home / ".local" / "state" / "popgate" / "shell_history"
    assert "Start-Service MSExchangePOP3BE" in history.read_text()
    assert os.stat(history).st_size > 0


def test_test_pop_connectivity_logs_on_and_round_trips_a_message(
    installation: Installation,
) -> None:
    installation.start_host()
    shell(installation, "Start-Service MSExchangePOP3BE; Start-Service MSExchangePOP3")
    output = shell(installation, "Test-PopConnectivity -TrustAnySSLCertificate | fl")
    assert "Scenario    : Test POP3 Connectivity\n" in output
    assert "Result      : Success\n" in output
    assert "LocalSite   : Default-First-Site-Name\n" in output
    assert re.search(r"Latency\(MS\) : \d+", output), output
    light = shell(installation, "Test-PopConnectivity -ConnectionType Tls -LightMode -Trust")
    assert "Success" in light
    # Exchange's test account was created for it, and the test left no message behind.
    assert f"extest_{installation.layout.server_name}" in shell(installation, "Get-Mailbox ext*")
    failed = shell(installation, "Test-PopConnectivity")  # the self-signed certificate
    assert "Failure" in failed
    entry = newest_audit_of(installation, "Test-PopConnectivity")
    assert entry["result"] == "Failure"
