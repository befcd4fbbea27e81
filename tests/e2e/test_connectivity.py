"""Test-PopConnectivity against real POP3 services: the round trip, TLS modes and failures."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import poplib
import socket
from pathlib import Path
from typing import Any

import pytest

from popgate.directory import Directory, Mailbox, PopSettings, Role, Server
from popgate.host._connectivity import (
    LOCAL_SITE,
    SCENARIO,
    ConnectionType,
    ConnectivityResult,
    _endpoint,
)
from popgate.host._connectivity import (
    # Imported under another name: pytest would collect a "test_" function as a test.
    test_pop_connectivity as pop_connectivity,
)
from popgate.store import MaildirStore
from tests.e2e.conftest import Installation, insecure_client_context
from tests.e2e.test_backend import MESSAGES, PASSWORD

TRUST_ANY: dict[str, Any] = {"trust_any_ssl_certificate": True}


def connectivity(installation: Installation, **options: Any) -> ConnectivityResult:
    """Run Test-PopConnectivity with the installation's directory, as the host will."""

    async def call() -> ConnectivityResult:
        directory = await Directory.connect(installation.layout.directory_url)
        try:
            return await pop_connectivity(installation.layout, directory, **options)
        finally:
            await directory.close()

    return asyncio.run(call())


def mailbox_of(installation: Installation, name: str) -> Mailbox | None:
    """The directory's record of mailbox ``name``."""

    async def call() -> Mailbox | None:
        directory = await Directory.connect(installation.layout.directory_url)
        try:
            return await directory.get_mailbox(name)
        finally:
            await directory.close()

    return asyncio.run(call())


def stored_uids(installation: Installation, name: str) -> list[str]:
    """The UIDs the store holds for mailbox ``name``, in order."""
    mailbox = mailbox_of(installation, name)
    assert mailbox is not None

    async def call() -> list[str]:
        session = await MaildirStore(installation.layout.mail_root).open(mailbox.guid)
        try:
            return [info.uid for info in session.messages]
        finally:
            await session.close()

    return asyncio.run(call())


@pytest.fixture
def services(installation: Installation, tmp_path: Path) -> Installation:
    """Mailbox alice with the MESSAGES corpus, both POP3 services and mail delivery running."""
    installation.add_mailbox("alice", PASSWORD)
    installation.import_messages("alice", MESSAGES, tmp_path / "eml")
    installation.start_backend()
    installation.start_frontend()
    installation.start_delivery()
    return installation


def alice(**options: Any) -> dict[str, Any]:
    """Options that log on as alice with her password."""
    return {"mailbox_credential": ("alice", PASSWORD), **options}


def assert_failure(result: ConnectivityResult, *fragments: str) -> None:
    """A Failure whose Error has every fragment and no traceback."""
    assert result.result == "Failure", result
    assert "Traceback" not in result.error
    for fragment in fragments:
        assert fragment in result.error, result.error


# --- round trips ---------------------------------------------------------------------------


def test_ssl_round_trip_deletes_only_the_test_message(services: Installation) -> None:
    before = stored_uids(services, "alice")
    assert len(before) == len(MESSAGES)
    result = connectivity(services, **alice(port=services.ssl_port, **TRUST_ANY))
    assert result.result == "Success", result.error
    assert result.error == ""
    assert result.cas_server == services.layout.server_name
    assert result.local_site == LOCAL_SITE == "Default-First-Site-Name"
    assert result.scenario == SCENARIO == "Test POP3 Connectivity"
    assert result.mailbox == "alice"
    assert result.latency_ms is not None
    assert result.latency_ms > 0
    assert result.exchange_fields()["Latency(MS)"] == result.latency_ms
    # The test message came and went; the user's own mail is exactly as it was.
    assert stored_uids(services, "alice") == before


def test_tls_round_trip_uses_stls_on_the_plain_port(services: Installation) -> None:
    before = stored_uids(services, "alice")
    result = connectivity(
        services, **alice(connection_type=ConnectionType("tls"), port=services.plain_port)
    )
    # Without trust_any the self-signed certificate fails after STLS, as with Ssl.
    assert_failure(result, "-TrustAnySSLCertificate")
    result = connectivity(
        services,
        **alice(connection_type=ConnectionType("TLS"), port=services.plain_port, **TRUST_ANY),
    )
    assert result.result == "Success", result.error
    assert stored_uids(services, "alice") == before


def test_the_port_defaults_to_the_effective_binding(services: Installation) -> None:
    assert connectivity(services, **alice(**TRUST_ANY)).result == "Success"
    tls = connectivity(services, **alice(connection_type=ConnectionType.TLS, **TRUST_ANY))
    assert tls.result == "Success", tls.error


def test_light_mode_logs_on_and_leaves_the_mailbox_alone(services: Installation) -> None:
    before = stored_uids(services, "alice")
    index = MaildirStore(services.layout.mail_root).root
    files_before = sorted(path.name for path in index.rglob("*") if path.is_file())
    result = connectivity(services, **alice(port=services.ssl_port, light_mode=True, **TRUST_ANY))
    assert result.result == "Success", result.error
    assert result.latency_ms is not None
    assert stored_uids(services, "alice") == before
    assert sorted(path.name for path in index.rglob("*") if path.is_file()) == files_before


# --- failures ------------------------------------------------------------------------------


def test_an_untrusted_certificate_fails_with_the_way_out(services: Installation) -> None:
    before = stored_uids(services, "alice")
    result = connectivity(services, **alice(port=services.ssl_port))
    assert_failure(result, "could not be verified", "-TrustAnySSLCertificate", "certificate")
    assert result.latency_ms is None
    # The test message put in before connecting was taken out again.
    assert stored_uids(services, "alice") == before


def test_plaintext_on_secure_login_reports_the_servers_refusal(services: Installation) -> None:
    before = stored_uids(services, "alice")
    result = connectivity(
        services, **alice(connection_type=ConnectionType("plaintext"), port=services.plain_port)
    )
    assert_failure(
        result,
        "-ERR Clear-text logins are disabled on this connection; send STLS first.",
    )
    assert stored_uids(services, "alice") == before


def test_a_wrong_password_fails_the_logon(services: Installation) -> None:
    before = stored_uids(services, "alice")
    result = connectivity(
        services,
        mailbox_credential=("alice", "not the password"),
        port=services.ssl_port,
        **TRUST_ANY,
    )
    assert_failure(result, "The logon as alice failed", "-ERR [AUTH]")
    assert result.latency_ms is None
    assert stored_uids(services, "alice") == before
    unknown = connectivity(
        services, mailbox_credential=("nobody", "x"), port=services.ssl_port, **TRUST_ANY
    )
    assert_failure(unknown, "There is no mailbox 'nobody'")
    light = connectivity(
        services,
        mailbox_credential=("nobody", "x"),
        port=services.ssl_port,
        light_mode=True,
        **TRUST_ANY,
    )
    assert_failure(light, "-ERR [AUTH]")


def test_a_stopped_front_end_is_connection_refused(installation: Installation) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.start_backend()
    installation.start_delivery()
    frontend = installation.start_frontend()
    frontend.terminate()
    frontend.wait(timeout=40)
    result = connectivity(installation, **alice(port=installation.ssl_port, **TRUST_ANY))
    assert_failure(result, "refused", "popgate net start MSExchangePOP3")
    assert stored_uids(installation, "alice") == []


def test_without_mail_delivery_the_round_trip_fails_and_says_why(
    installation: Installation,
) -> None:
    installation.add_mailbox("alice", PASSWORD)
    installation.start_backend()
    installation.start_frontend()
    result = connectivity(installation, **alice(port=installation.ssl_port, **TRUST_ANY))
    assert_failure(result, "MSExchangeDelivery", "popgate net start MSExchangeDelivery")
    assert stored_uids(installation, "alice") == []
    # The logon alone does not need it.
    light = connectivity(
        installation, **alice(port=installation.ssl_port, light_mode=True, **TRUST_ANY)
    )
    assert light.result == "Success", light.error


def test_a_mailbox_in_use_fails_with_in_use(services: Installation) -> None:
    before = stored_uids(services, "alice")
    holder = poplib.POP3_SSL(
        "127.0.0.1", services.ssl_port, context=insecure_client_context(), timeout=30
    )
    try:
        holder.user("alice")
        holder.pass_(PASSWORD)
        result = connectivity(services, **alice(port=services.ssl_port, **TRUST_ANY))
        assert_failure(result, "IN-USE")
        light = connectivity(
            services, **alice(port=services.ssl_port, light_mode=True, **TRUST_ANY)
        )
        assert_failure(light, "-ERR [IN-USE]")
    finally:
        holder.quit()
    assert stored_uids(services, "alice") == before


def test_a_silent_server_hits_the_per_connection_timeout(installation: Installation) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        # The kernel completes the handshake; nobody ever sends a greeting.
        result = connectivity(
            installation,
            mailbox_credential=("alice", PASSWORD),
            connection_type=ConnectionType.PLAINTEXT,
            port=port,
            light_mode=True,
            per_connection_timeout=0.5,
        )
        assert_failure(result, "PerConnectionTimeout", "greeting")
        whole = connectivity(
            installation,
            mailbox_credential=("alice", PASSWORD),
            connection_type=ConnectionType.PLAINTEXT,
            port=port,
            light_mode=True,
            per_connection_timeout=5,
            timeout=0.5,
        )
        assert_failure(whole, "within 0.5 seconds (Timeout)")


def test_out_of_range_parameters_are_the_callers_mistake(installation: Installation) -> None:
    with pytest.raises(ValueError, match="PerConnectionTimeout"):
        connectivity(installation, per_connection_timeout=121)
    with pytest.raises(ValueError, match="Timeout"):
        connectivity(installation, timeout=0)
    with pytest.raises(ValueError, match="PortClientAccessServer"):
        connectivity(installation, port=70000)
    unknown = connectivity(installation, client_access_server="nosuchserver")
    assert_failure(unknown, "There is no server 'nosuchserver'")


# --- the test account ----------------------------------------------------------------------


def test_the_extest_account_is_created_then_reused(services: Installation) -> None:
    home = services.layout
    name = f"extest_{home.server_name}"
    password_file = home.secrets_dir / "extest.password"
    assert mailbox_of(services, name) is None
    first = connectivity(services, port=services.ssl_port, **TRUST_ANY)
    assert first.result == "Success", first.error
    assert first.mailbox == name
    account = mailbox_of(services, name)
    assert account is not None
    assert account.pop_enabled
    assert not account.is_administrator
    assert account.server == home.server_name
    assert password_file.stat().st_mode & 0o777 == 0o600
    password = password_file.read_text()

    second = connectivity(services, port=services.ssl_port, **TRUST_ANY)
    assert second.result == "Success", second.error
    assert password_file.read_text() == password
    assert mailbox_of(services, name) == account
    assert stored_uids(services, name) == []

    reset = connectivity(
        services, port=services.ssl_port, reset_test_account_credentials=True, **TRUST_ANY
    )
    assert reset.result == "Success", reset.error
    assert password_file.read_text() != password

    password_file.unlink()
    lost = connectivity(services, port=services.ssl_port, light_mode=True, **TRUST_ANY)
    assert lost.result == "Success", lost.error
    assert password_file.exists()
    assert mailbox_of(services, name) == account


# --- parsing and endpoints (no services) ---------------------------------------------------


def test_connection_type_parses_case_insensitively() -> None:
    assert ConnectionType("ssl") is ConnectionType.SSL
    assert ConnectionType("PLAINTEXT") is ConnectionType.PLAINTEXT
    assert ConnectionType("Tls") is ConnectionType.TLS
    with pytest.raises(ValueError, match="Starttls"):
        ConnectionType("Starttls")


@pytest.fixture
def server() -> Server:
    """A Client Access server record."""
    return Server(
        name="cas01",
        fqdn="cas01.contoso.com",
        roles=frozenset({Role.CLIENT_ACCESS}),
        proxy_host="cas01.contoso.com",
    )


@pytest.mark.parametrize(
    ("kind", "port", "local", "expected"),
    [
        (ConnectionType.SSL, None, True, ("127.0.0.1", 995)),
        (ConnectionType.SSL, None, False, ("cas01.contoso.com", 995)),
        (ConnectionType.TLS, None, True, ("127.0.0.1", 110)),
        (ConnectionType.PLAINTEXT, 2110, True, ("127.0.0.1", 2110)),
        (ConnectionType.PLAINTEXT, 2110, False, ("cas01.contoso.com", 2110)),
    ],
)
def test_wildcard_bindings_mean_loopback_here_and_the_fqdn_elsewhere(
    server: Server,
    kind: ConnectionType,
    port: int | None,
    local: bool,
    expected: tuple[str, int],
) -> None:
    assert _endpoint(server, PopSettings(), kind, port, local=local) == expected


def test_ipv6_only_and_specific_bindings(server: Server) -> None:
    v6 = PopSettings(ssl_bindings=("[::]:995",))
    assert _endpoint(server, v6, ConnectionType.SSL, None, local=True) == ("::1", 995)
    specific = PopSettings(ssl_bindings=("192.0.2.7:1995",))
    assert _endpoint(server, specific, ConnectionType.SSL, None, local=False) == (
        str(ipaddress.ip_address("192.0.2.7")),
        1995,
    )


def test_the_command_line_shares_the_test_and_exits_non_zero_on_failure(
    services: Installation,
) -> None:
    created = services.popgate("setup", "--test-user").stdout
    server = services.layout.server_name
    assert f"Test mailbox for Test-PopConnectivity: extest_{server}" in created
    passed = services.popgate("test-connectivity", "--trust-any-ssl-certificate")
    assert passed.stdout.split()[:6] == [
        "CasServer", "LocalSite", "Scenario", "Result", "Latency(MS)", "Error",
    ]  # fmt: skip
    assert "Test POP3 Connectivity" in passed.stdout
    assert " Success " in passed.stdout
    as_json = services.popgate(
        "test-connectivity", "--connection-type", "tls", "--trust-any-ssl-certificate", "--json"
    )
    row = json.loads(as_json.stdout)
    assert (row["Result"], row["Scenario"], row["Error"]) == (
        "Success", "Test POP3 Connectivity", "",
    )  # fmt: skip
    assert row["Latency(MS)"] > 0
    # LoginType SecureLogin refuses a password before TLS: a Failure, exit status 1.
    failed = services.popgate(
        "test-connectivity", "--connection-type", "Plaintext", "--json", check=False
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["Result"] == "Failure"
    # Any mailbox, with its password on standard input; LightMode leaves its mail alone.
    before = stored_uids(services, "alice")
    mine = services.popgate(
        "test-connectivity", "--mailbox", "alice", "--password-stdin", "--light-mode",
        "--trust-any-ssl-certificate", "--json", input_text=PASSWORD + "\n",
    )  # fmt: skip
    assert json.loads(mine.stdout)["Result"] == "Success"
    assert stored_uids(services, "alice") == before
