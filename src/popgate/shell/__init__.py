"""The management shell: Exchange Management Shell cmdlets over the host's control API."""

from __future__ import annotations

from popgate.shell._console import interactive, make_shell, run_script
from popgate.shell._runtime import Shell, ShellIO

__all__ = ["Shell", "ShellIO", "interactive", "make_shell", "run_script"]
