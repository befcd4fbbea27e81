"""PopSettings: Exchange 2013 defaults, validation, parse_setting and JSON storage."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popgate.directory import (
    CalendarItemRetrievalOption,
    ExtendedProtectionPolicy,
    InvalidSetting,
    LoginType,
    MimeFormat,
    PopSettings,
    RollOver,
    SortOrder,
    format_setting,
    parse_setting,
)

#: exchange-pop3.md section 2, one row per Set-PopSettings parameter: Exchange 2013 defaults.
EXCHANGE_DEFAULTS: dict[str, object] = {
    "AuthenticatedConnectionTimeout": timedelta(minutes=30),
    "PreAuthenticatedConnectionTimeout": timedelta(minutes=1),
    "Banner": "The Microsoft Exchange POP3 service is ready.",
    "CalendarItemRetrievalOption": CalendarItemRetrievalOption.ICALENDAR,
    "OwaServerUrl": None,
    "EnableExactRFC822Size": False,
    "EnableGSSAPIAndNTLMAuth": True,
    "EnforceCertificateErrors": False,
    "ExtendedProtectionPolicy": ExtendedProtectionPolicy.NONE,
    "ExternalConnectionSettings": (),
    "InternalConnectionSettings": None,  # computed: <FQDN>:995:SSL, <FQDN>:110:TLS
    "LoginType": LoginType.SECURE_LOGIN,
    "MaxCommandSize": 512,
    "MaxConnectionFromSingleIP": 2147483647,
    "MaxConnections": 2147483647,
    "MaxConnectionsPerUser": 16,
    "MessageRetrievalMimeFormat": MimeFormat.BEST_BODY_FORMAT,
    "MessageRetrievalSortOrder": SortOrder.ASCENDING,
    "ProtocolLogEnabled": False,
    "LogFileLocation": None,  # popgate: <data dir>/logs/pop3
    "LogFileRollOverSettings": RollOver.DAILY,
    "LogPerFileSizeQuota": 0,
    "ProxyTargetPort": 1995,
    "SSLBindings": ("[::]:995", "0.0.0.0:995"),
    "UnencryptedOrTLSBindings": ("[::]:110", "0.0.0.0:110"),
    "SuppressReadReceipt": False,
    "X509CertificateName": None,
}
#: Where popgate departs from Exchange on purpose (documented on PopSettings).
DELIBERATE_DEVIATIONS = {"EnableExactRFC822Size": True}


def test_every_exchange_parameter_has_a_field_and_nothing_else_is_unexplained() -> None:
    fields = [f.name for f in dataclasses.fields(PopSettings)]
    assert list(PopSettings.EXCHANGE_NAMES) == fields
    extensions = {PopSettings.EXCHANGE_NAMES[name] for name in PopSettings.POPGATE_EXTENSIONS}
    assert extensions == {
        "AllowDirectBackendLogin",
        "GracefulStopTimeout",
        "WorkerProcesses",
        "LoginFailureDelay",
        "LoginFailureMaxDelay",
        "LoginFailureLockout",
    }
    exchange = set(PopSettings.EXCHANGE_NAMES.values()) - extensions
    assert exchange == set(EXCHANGE_DEFAULTS)


def test_defaults_equal_exchange_2013_except_documented_deviations() -> None:
    settings = PopSettings()
    by_exchange_name = {v: k for k, v in PopSettings.EXCHANGE_NAMES.items()}
    for exchange_name, expected in (EXCHANGE_DEFAULTS | DELIBERATE_DEVIATIONS).items():
        assert getattr(settings, by_exchange_name[exchange_name]) == expected, exchange_name
    assert "EnableExactRFC822Size" in (PopSettings.__doc__ or "").replace(
        "enable_exact_rfc822_size", "EnableExactRFC822Size"
    )


def test_popgate_extension_defaults() -> None:
    settings = PopSettings()
    assert settings.allow_direct_backend_login is False
    assert settings.graceful_stop_timeout == timedelta(seconds=30)
    assert settings.worker_processes == 1
    assert settings.login_failure_delay == timedelta(seconds=1)
    assert settings.login_failure_max_delay == timedelta(seconds=15)
    assert settings.login_failure_lockout == 10


def test_internal_connection_settings_default_is_computed_from_the_fqdn() -> None:
    assert PopSettings().internal_connection_settings_for("mbx01.contoso.com") == (
        "mbx01.contoso.com:995:SSL",
        "mbx01.contoso.com:110:TLS",
    )
    custom = PopSettings(internal_connection_settings=("pop.contoso.com:995:SSL",))
    assert custom.internal_connection_settings_for("x") == ("pop.contoso.com:995:SSL",)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        # booleans
        ("ProtocolLogEnabled", "$true", True),
        ("protocollogenabled", "$FALSE", False),
        ("protocol_log_enabled", "true", True),
        ("SuppressReadReceipt", "false", False),
        # time spans
        ("AuthenticatedConnectionTimeout", "00:30:00", timedelta(minutes=30)),
        ("AuthenticatedConnectionTimeout", "1.00:00:00", timedelta(days=1)),
        ("AuthenticatedConnectionTimeout", "90", timedelta(seconds=90)),
        ("PreAuthenticatedConnectionTimeout", "0:0:45", timedelta(seconds=45)),
        ("GracefulStopTimeout", "0", timedelta(0)),
        # enums by name (any case) and number
        ("LoginType", "PlainTextLogin", LoginType.PLAIN_TEXT_LOGIN),
        ("LoginType", "securelogin", LoginType.SECURE_LOGIN),
        ("LoginType", "2", LoginType.PLAIN_TEXT_AUTHENTICATION),
        ("MessageRetrievalMimeFormat", "6", MimeFormat.TNEF),
        ("MessageRetrievalMimeFormat", "TextEnriched", MimeFormat.TEXT_ENRICHED_ONLY),
        ("MessageRetrievalMimeFormat", "best_body_format", MimeFormat.BEST_BODY_FORMAT),
        ("MessageRetrievalSortOrder", "Descending", SortOrder.DESCENDING),
        ("CalendarItemRetrievalOption", "icalendar", CalendarItemRetrievalOption.ICALENDAR),
        ("CalendarItemRetrievalOption", "1", CalendarItemRetrievalOption.INTRANET_URL),
        ("ExtendedProtectionPolicy", "require", ExtendedProtectionPolicy.REQUIRE),
        ("LogFileRollOverSettings", "Hourly", RollOver.HOURLY),
        # multi-value
        ("SSLBindings", "[::]:995, 0.0.0.0:995", ("[::]:995", "0.0.0.0:995")),
        ("SSLBindings", "[0:0::1]:995", ("[::1]:995",)),
        ("UnencryptedOrTLSBindings", "$null", ()),
        ("ExternalConnectionSettings", "mail.contoso.com:995:ssl", ("mail.contoso.com:995:SSL",)),
        ("ExternalConnectionSettings", "Mail.Contoso.com:110", ("mail.contoso.com:110",)),
        ("InternalConnectionSettings", "$null", None),
        ("InternalConnectionSettings", "[2001:db8::1]:995:TLS", ("[2001:db8::1]:995:TLS",)),
        # sizes
        ("LogPerFileSizeQuota", "2MB", 2 * 1024 * 1024),
        ("LogPerFileSizeQuota", "512 kb", 512 * 1024),
        ("LogPerFileSizeQuota", "0", 0),
        ("LogPerFileSizeQuota", "unlimited", None),
        # integers
        ("MaxCommandSize", "40", 40),
        ("MaxCommandSize", "1024", 1024),
        ("max_connections_per_user", "2147483647", 2147483647),
        ("ProxyTargetPort", "65535", 65535),
        ("WorkerProcesses", "4", 4),
        # text
        ("Banner", "Welcome to POP3", "Welcome to POP3"),
        ("OwaServerUrl", "https://mail.contoso.com/owa", "https://mail.contoso.com/owa"),
        ("OwaServerUrl", "$null", None),
        ("LogFileLocation", "/var/log/popgate/pop3", "/var/log/popgate/pop3"),
        ("X509CertificateName", "Mail.Contoso.com", "mail.contoso.com"),
        ("X509CertificateName", "*.contoso.com", "*.contoso.com"),
    ],
)
def test_parse_setting(name: str, text: str, expected: object) -> None:
    value = parse_setting(name, text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("MaxCommandSize", "20", "MaxCommandSize must be between 40 and 1024; got 20."),
        ("MaxCommandSize", "1025", "MaxCommandSize must be between 40 and 1024; got 1025."),
        ("MaxCommandSize", "big", "MaxCommandSize must be a whole number"),
        ("MaxConnections", "0", "MaxConnections must be between 1 and 2147483647; got 0."),
        ("MaxConnectionsPerUser", "2147483648", "between 1 and 2147483647"),
        ("ProxyTargetPort", "0", "ProxyTargetPort must be between 1 and 65535; got 0."),
        ("WorkerProcesses", "0", "WorkerProcesses must be between 1 and 1024"),
        (
            "AuthenticatedConnectionTimeout",
            "00:00:29",
            "AuthenticatedConnectionTimeout must be between 00:00:30 and 1.00:00:00; got 00:00:29.",
        ),
        ("AuthenticatedConnectionTimeout", "1.00:00:01", "between 00:00:30 and 1.00:00:00"),
        ("PreAuthenticatedConnectionTimeout", "01:00:01", "between 00:00:30 and 01:00:00"),
        ("PreAuthenticatedConnectionTimeout", "00:61:00", "time span"),
        ("PreAuthenticatedConnectionTimeout", "soon", "time span"),
        ("ProtocolLogEnabled", "yes", "ProtocolLogEnabled must be $true or $false"),
        ("LoginType", "7", "LoginType must be one of 1 PlainTextLogin"),
        ("LoginType", "Kerberos", "LoginType must be one of"),
        ("CalendarItemRetrievalOption", "TextEnriched", "must be one of 0 iCalendar"),
        ("ExtendedProtectionPolicy", "sometimes", "None, Allow, Require"),
        ("SSLBindings", "192.0.2.1", "is not a binding"),
        ("SSLBindings", "::1:995", "not a binding"),
        ("SSLBindings", "[127.0.0.1]:995", "malformed"),
        ("SSLBindings", "host.example:995", "not an IP address"),
        ("SSLBindings", "0.0.0.0:70000", "port from 1 to 65535"),
        ("SSLBindings", "0.0.0.0:995,0.0.0.0:995", "lists the same value twice"),
        ("ExternalConnectionSettings", "mail.contoso.com:995:STARTTLS", "SSL or TLS"),
        ("ExternalConnectionSettings", "mail_contoso:995", "not a host name"),
        ("ExternalConnectionSettings", "mail.contoso.com", "Host:Port"),
        ("LogPerFileSizeQuota", "2XB", "must be a size"),
        ("LogPerFileSizeQuota", "-1", "must be a size"),
        ("Banner", "two\r\nlines", "one line of printable text"),
        ("Banner", "x" * 507, "at most 506 bytes"),
        ("OwaServerUrl", "ftp://mail/owa", "http or https URL"),
        ("LogFileLocation", "logs/pop3", "absolute directory path"),
        ("X509CertificateName", "not a host", "host name"),
        ("Banner", "$null", None),  # text: "$null" is a literal banner, not an error
        ("MaxCommandSise", "512", "Did you mean MaxCommandSize?"),
        ("Port", "110", "is not a POP3 setting"),
    ],
)
def test_parse_setting_errors_name_the_setting_and_the_rule(
    name: str, text: str, message: str | None
) -> None:
    if message is None:
        assert parse_setting(name, text) == text
        return
    with pytest.raises(InvalidSetting) as caught:
        parse_setting(name, text)
    assert message in str(caught.value)


def test_required_settings_refuse_null() -> None:
    with pytest.raises(InvalidSetting, match=r"MaxCommandSize must have a value"):
        PopSettings().with_changes({"MaxCommandSize": None})


def test_constructor_validates_typed_values() -> None:
    with pytest.raises(InvalidSetting, match="between 40 and 1024"):
        PopSettings(max_command_size=39)
    with pytest.raises(InvalidSetting, match="must be a whole number"):
        PopSettings(max_command_size=True)
    with pytest.raises(InvalidSetting, match="must be a MimeFormat"):
        PopSettings(message_retrieval_mime_format=LoginType.SECURE_LOGIN)  # type: ignore[arg-type]
    with pytest.raises(InvalidSetting, match="must be a list"):
        PopSettings(ssl_bindings=995)  # type: ignore[arg-type]
    # Text is read as an administrator would type it.
    assert PopSettings(ssl_bindings="0.0.0.0:995").ssl_bindings == ("0.0.0.0:995",)  # type: ignore[arg-type]
    assert PopSettings(ssl_bindings=["0.0.0.0:995"]).ssl_bindings == ("0.0.0.0:995",)  # type: ignore[arg-type]


def test_custom_calendar_option_requires_owa_url() -> None:
    with pytest.raises(InvalidSetting, match="requires OwaServerUrl"):
        PopSettings().with_changes({"CalendarItemRetrievalOption": "Custom"})
    settings = PopSettings().with_changes(
        {"CalendarItemRetrievalOption": "Custom", "OwaServerUrl": "https://mail/owa"}
    )
    assert settings.calendar_item_retrieval_option is CalendarItemRetrievalOption.CUSTOM


def test_with_changes_accepts_both_spellings_typed_values_and_text() -> None:
    settings = PopSettings().with_changes(
        {
            "maxcommandsize": 100,
            "login_type": "PlainTextLogin",
            "AuthenticatedConnectionTimeout": 120,
            "ProtocolLogEnabled": "$true",
        }
    )
    assert settings.max_command_size == 100
    assert settings.login_type is LoginType.PLAIN_TEXT_LOGIN
    assert settings.authenticated_connection_timeout == timedelta(minutes=2)
    assert settings.protocol_log_enabled is True


def test_json_stores_only_changes_and_fills_defaults() -> None:
    assert PopSettings().to_json() == {}
    changed = PopSettings(max_command_size=100, ssl_bindings=(), log_per_file_size_quota=None)
    stored = changed.to_json()
    assert stored == {"max_command_size": 100, "ssl_bindings": [], "log_per_file_size_quota": None}
    assert PopSettings.from_json(stored) == changed
    # A key from a newer popgate is ignored rather than refusing to load.
    assert PopSettings.from_json({"future_setting": 1}) == PopSettings()


def test_full_json_round_trips_every_field() -> None:
    settings = PopSettings(
        authenticated_connection_timeout=timedelta(hours=2, seconds=1),
        calendar_item_retrieval_option=CalendarItemRetrievalOption.CUSTOM,
        owa_server_url="https://mail.contoso.com/owa",
        extended_protection_policy=ExtendedProtectionPolicy.ALLOW,
        internal_connection_settings=("a.contoso.com:995:SSL",),
        login_type=LoginType.PLAIN_TEXT_AUTHENTICATION,
        message_retrieval_mime_format=MimeFormat.TNEF,
        message_retrieval_sort_order=SortOrder.DESCENDING,
        log_file_roll_over_settings=RollOver.MONTHLY,
        x509_certificate_name="mail.contoso.com",
    )
    full = settings.to_json(full=True)
    assert set(full) == set(PopSettings.EXCHANGE_NAMES)
    assert full["login_type"] == "PlainTextAuthentication"
    assert full["calendar_item_retrieval_option"] == "Custom"
    assert full["message_retrieval_sort_order"] == "Descending"
    assert full["authenticated_connection_timeout"] == 7201
    assert PopSettings.from_json(full) == settings


@pytest.mark.parametrize("name", list(PopSettings.EXCHANGE_NAMES))
def test_format_setting_is_read_back_by_parse_setting(name: str) -> None:
    changed = PopSettings(
        owa_server_url="https://mail/owa",
        log_per_file_size_quota=None,
        internal_connection_settings=("a.b:995:SSL", "a.b:110"),
    )
    for settings in (changed, PopSettings()):
        value = getattr(settings, name)
        assert parse_setting(name, format_setting(name, value)) == value


def test_format_setting_examples() -> None:
    assert format_setting("AuthenticatedConnectionTimeout", timedelta(days=1)) == "1.00:00:00"
    assert format_setting("ProtocolLogEnabled", True) == "$true"
    assert format_setting("LoginType", LoginType.SECURE_LOGIN) == "SecureLogin"
    assert format_setting("CalendarItemRetrievalOption", 0) == "0"
    assert format_setting("CalendarItemRetrievalOption", CalendarItemRetrievalOption(0)) == (
        "iCalendar"
    )
    assert format_setting("LogPerFileSizeQuota", None) == "unlimited"
    assert format_setting("OwaServerUrl", None) == "$null"


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_max_command_size_accepts_exactly_its_range(value: int) -> None:
    if 40 <= value <= 1024:
        assert parse_setting("MaxCommandSize", str(value)) == value
    else:
        with pytest.raises(InvalidSetting, match=f"between 40 and 1024; got {value}"):
            parse_setting("MaxCommandSize", str(value))


@given(st.integers(min_value=0, max_value=10 * 86400))
def test_timespan_text_round_trips(seconds: int) -> None:
    text = format_setting("GracefulStopTimeout", timedelta(seconds=seconds))
    if seconds <= 3600:
        assert parse_setting("GracefulStopTimeout", text) == timedelta(seconds=seconds)
    else:
        with pytest.raises(InvalidSetting, match="between 00:00:00 and 01:00:00"):
            parse_setting("GracefulStopTimeout", text)
