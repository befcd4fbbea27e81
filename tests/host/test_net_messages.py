"""net.exe's messages, as exchange-pop3.md section 8.2 quotes them."""

from __future__ import annotations

from popgate.host import _net as net

POP3 = "Microsoft Exchange POP3"


def test_start_and_stop_success() -> None:
    started = net.starting(POP3, 2)
    assert started.text == (
        "The Microsoft Exchange POP3 service is starting...\n"
        "The Microsoft Exchange POP3 service was started successfully.\n\n"
    )
    assert started.status == 0
    stopped = net.stopping(POP3, 1)
    assert stopped.text == (
        "The Microsoft Exchange POP3 service is stopping..\n"
        "The Microsoft Exchange POP3 service was stopped successfully.\n\n"
    )
    assert stopped.status == 0


def test_a_start_that_fails_says_why_and_exits_2() -> None:
    failed = net.starting(POP3, 0, "cannot listen on 0.0.0.0:110: permission denied")
    assert failed.text == (
        "The Microsoft Exchange POP3 service is starting.\n"
        "The Microsoft Exchange POP3 service could not be started.\n\n"
        "cannot listen on 0.0.0.0:110: permission denied\n\n"
    )
    assert failed.status == 2


def test_the_progressive_pieces_make_the_whole_message() -> None:
    assert net.starting_line(POP3) + "." + net.start_result(POP3).text == (
        net.starting(POP3, 1).text
    )
    assert net.stopping_line(POP3) + net.stop_result(POP3).text == net.stopping(POP3, 0).text


def test_errors_end_with_a_blank_line_and_exit_2() -> None:
    cases = {
        net.already_started(): "The requested service has already been started.\n\n"
        "More help is available by typing NET HELPMSG 2182.\n\n",
        net.not_started(POP3): "The Microsoft Exchange POP3 service is not started.\n\n"
        "More help is available by typing NET HELPMSG 3521.\n\n",
        net.invalid_name(): "The service name is invalid.\n\n"
        "More help is available by typing NET HELPMSG 2185.\n\n",
        net.access_denied(): "System error 5 has occurred.\n\nAccess is denied.\n\n",
        net.disabled(): "System error 1058 has occurred.\n\nThe service cannot be started, "
        "either because it is disabled or because it has no enabled devices associated with "
        "it.\n\n",
    }
    for output, text in cases.items():
        assert output.text == text
        assert output.status == 2


def test_net_start_without_a_name_lists_started_services() -> None:
    output = net.started_list([POP3, "Microsoft Exchange POP3 Backend"])
    assert output.text == (
        "These Windows services are started:\n\n"
        "   Microsoft Exchange POP3\n"
        "   Microsoft Exchange POP3 Backend\n\n"
        "The command completed successfully.\n\n"
    )
    assert output.status == 0
