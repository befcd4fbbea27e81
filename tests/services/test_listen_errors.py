"""What a service says when it cannot listen: the reason, and the setting that moves it."""

from __future__ import annotations

import errno

from popgate.services._runner import listen_error


def test_a_privileged_port_says_what_is_needed_and_how_to_change_the_binding() -> None:
    denied = OSError(errno.EACCES, "Permission denied")
    message = str(listen_error(denied, "0.0.0.0:110", "UnencryptedOrTLSBindings", 110))
    assert message.startswith("cannot listen on 0.0.0.0:110: permission denied; ")
    assert "ports below 1024 need root or CAP_NET_BIND_SERVICE" in message
    assert "popgate install-systemd --user USER" in message
    assert message.endswith("'popgate settings set UnencryptedOrTLSBindings 0.0.0.0:1110'")
    message = str(listen_error(denied, "[::]:995", "SSLBindings", 995))
    assert message.endswith("'popgate settings set SSLBindings [::]:1995'")


def test_an_address_in_use_names_the_setting() -> None:
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    message = str(listen_error(in_use, "port 1995", "ProxyTargetPort", 1995))
    assert message == (
        "cannot listen on port 1995: the address is already in use by another program; "
        "stop that program, or move the service: 'popgate settings set ProxyTargetPort 1996'"
    )
