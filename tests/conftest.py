"""Settings for the whole test run."""

from __future__ import annotations

import signal

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Let Ctrl-C reach the programs the tests start, however the run itself was started.

    A background job of a non-interactive shell (``bash .ci/run &``) starts with SIGINT
    ignored, and every process it starts inherits that: Python then installs no
    KeyboardInterrupt, and a test that stops ``popgate status --watch`` with Ctrl-C waits in
    vain. A handler, unlike an ignored signal, is reset to the default in a started program.
    """
    del config
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
