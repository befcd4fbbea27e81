"""``popgate shell``: the interactive console (prompt_toolkit) and -c / -f runs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.shortcuts import CompleteStyle

from popgate.host._client import HostClient, HostControlError, HostNotRunningError
from popgate.shell._admin_cmdlets import ADMIN_CMDLETS
from popgate.shell._core_cmdlets import CORE_CMDLETS
from popgate.shell._language import needs_more_input
from popgate.shell._runtime import Cmdlet, Param, Shell, ShellIO
from popgate.shell._service_cmdlets import SERVICE_CMDLETS

__all__ = ["ShellCompleter", "interactive", "make_shell", "run_script"]

BANNER = (
    "popgate management shell: Exchange Management Shell cmdlets for this organization's "
    "POP3 services.\nGet-Command lists the cmdlets, Get-Help NAME explains one; Tab "
    "completes; exit leaves.\n"
)
#: The last word typed, and everything before it.
_LAST_WORD = re.compile(r"(\S*)$")


def make_shell(
    io: ShellIO, connect: Callable[[], HostClient], *, interactive: bool = False
) -> Shell:
    """A shell with every cmdlet registered."""
    shell = Shell(io=io, connect=connect, interactive=interactive)
    shell.register((*SERVICE_CMDLETS, *ADMIN_CMDLETS, *CORE_CMDLETS))
    return shell


def run_script(shell: Shell, text: str) -> bool:
    """Run ``text`` (a -c command or a -f script); True when every command succeeded."""
    try:
        return shell.run(text)
    except HostNotRunningError:
        shell.io.write(
            "The popgate service host is not running on this computer; start it with "
            "'popgate up' (or 'popgate host').\n"
        )
        return False
    except HostControlError as error:
        shell.io.write(f"The popgate service host refused the request: {error}\n")
        return False


class ShellCompleter(Completer):
    """Tab completion: cmdlet names, parameter names, service names and enum values."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self._service_names: list[str] | None = None

    def _services(self) -> list[str]:
        if self._service_names is None:
            try:
                self._service_names = [s["name"] for s in self.shell.client().services()]
            except (HostNotRunningError, HostControlError):
                self._service_names = []
        return self._service_names

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        """Completions for the word before the cursor."""
        before = document.text_before_cursor
        match = _LAST_WORD.search(before)
        word = match.group(1) if match else ""
        # The command this word belongs to: the text after the last | or ; (or newline).
        segment = re.split(r"[|;\n]", before)[-1]
        tokens = segment.split()
        at_command = not tokens or (len(tokens) == 1 and not segment.endswith(" "))
        if at_command:
            yield from self._complete(word, sorted({c.name for c in self._cmdlets()}))
            return
        cmdlet = self.shell.cmdlets.get(tokens[0].casefold())
        if cmdlet is None:
            return
        if word.startswith("-"):
            names = [f"-{param.name}" for param in cmdlet.params]
            yield from self._complete(word, names)
            return
        previous = tokens[-1] if word == "" or len(tokens) < 2 else tokens[-2]
        param = self._param(cmdlet, previous)
        if param is not None and param.choices:
            yield from self._complete(word, list(param.choices))
        elif self._takes_service_name(cmdlet, param):
            yield from self._complete(word, self._services())

    def _cmdlets(self) -> list[Cmdlet]:
        return list(self.shell.cmdlets.values())

    @staticmethod
    def _param(cmdlet: Cmdlet, token: str) -> Param | None:
        if not token.startswith("-"):
            return None
        name = token[1:].split(":", 1)[0].casefold()
        for param in cmdlet.params:
            if param.name.casefold() == name:
                return param
        return None

    @staticmethod
    def _takes_service_name(cmdlet: Cmdlet, param: Param | None) -> bool:
        if cmdlet.name == "Net":
            return True
        if cmdlet.name not in {c.name for c in SERVICE_CMDLETS}:
            return False
        return param is None or param.name == "Name"

    @staticmethod
    def _complete(word: str, candidates: Iterable[str]) -> Iterable[Completion]:
        folded = word.casefold()
        for candidate in candidates:
            if candidate.casefold().startswith(folded):
                yield Completion(candidate, start_position=-len(word))


def _enter_runs_complete_commands() -> KeyBindings:
    """Enter runs the command when it is complete, else starts a ``>>`` line, as PowerShell
    does; the whole multi-line command is then one history entry."""
    bindings = KeyBindings()

    @bindings.add("enter")
    def _(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if needs_more_input(buffer.text):
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    return bindings


def _history_file() -> Path:
    state = Path.home() / ".local" / "state" / "popgate"
    state.mkdir(parents=True, exist_ok=True)
    return state / "shell_history"


def interactive(connect: Callable[[], HostClient], prompt_name: str) -> bool:
    """The interactive console; True when the last command succeeded."""
    # Readline-like: Tab completes in place (a unique match at once, else the common part
    # and a list), which is what PowerShell users' fingers expect from Tab.
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(_history_file())),
        complete_style=CompleteStyle.READLINE_LIKE,
        multiline=True,
        key_bindings=_enter_runs_complete_commands(),
        prompt_continuation=">> ",
    )

    def read_secret(prompt: str) -> str:
        return session.prompt(prompt, is_password=True)

    def confirm(action: str, target: str) -> bool:
        print("\nConfirm\nAre you sure you want to perform this action?")
        print(action)
        answer = session.prompt(
            '[Y] Yes  [A] Yes to All  [N] No  [L] No to All  [?] Help (default is "Y"): '
        )
        return answer.strip().lower() in ("", "y", "a")

    def write(text: str) -> None:
        print(text, end="", flush=True)

    shell = make_shell(
        ShellIO(write=write, read_secret=read_secret, confirm=confirm), connect, interactive=True
    )
    completer = ShellCompleter(shell)
    print(BANNER)
    ok = True
    try:
        while True:
            try:
                text = session.prompt(f"[PS] {prompt_name}> ", completer=completer)
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if text.strip().lower() in ("exit", "quit"):
                break
            if text.strip():
                ok = run_script(shell, text)
    finally:
        shell.close()
    return ok
