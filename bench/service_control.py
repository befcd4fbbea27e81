"""How long the service host takes to start and stop the two POP3 services, beside Dovecot.

It builds a throw-away popgate home on free loopback ports, runs ``popgate host`` in the
background and, N times in one run, measures:

- through the host's control API: start-to-Running of MSExchangePOP3BE then MSExchangePOP3
  (from sending the control until the API reports Running and every port of the service
  accepts a TCP connection), then idle stop-to-Stopped of MSExchangePOP3 then MSExchangePOP3BE;
- the command lines an administrator types, as subprocesses (Python start-up included):
  ``popgate net start MSExchangePOP3BE`` + ``popgate net start MSExchangePOP3``, the two
  ``popgate net stop`` commands, and ``popgate net start`` alone (one API call, no change);
- Dovecot (Debian's dovecot-pop3d) on loopback: process launch until its POP3 ports accept a
  connection and until it greets, and SIGTERM until the process has exited.

    .venv/bin/python -m bench.service_control [--repeat 10] [--no-dovecot]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench._dovecot import Dovecot
from bench.pop3 import free_port, listening, popgate, wait_for
from popgate.home import Home
from popgate.host._client import HostClient, HostNotRunningError
from popgate.host._common import control_socket_path

BACKEND = "MSExchangePOP3BE"
FRONTEND = "MSExchangePOP3"
#: "Estimated time to complete: 2 minutes" in Exchange 2013's "Start and stop the POP3
#: services", the procedure that starts both services.
EXCHANGE_ESTIMATE = 120.0
#: How often the API is asked whether a control has finished (the brief's interval).
API_POLL = 0.01
#: How often a port is probed; finer than API_POLL because a connect() costs microseconds.
PORT_POLL = 0.001
#: Pause after both services are up and before they are stopped, so that the port probes'
#: short-lived sessions have ended and the stop is measured on idle services.
SETTLE = 0.2
START_API = "start to Running + ports open, via the API"
START_BOTH = f"`popgate net start {BACKEND}` + `popgate net start {FRONTEND}`"
STOP_BOTH = f"`popgate net stop {FRONTEND}` + `popgate net stop {BACKEND}`"

Samples = dict[tuple[str, str], list[float]]


def cli_command() -> list[str]:
    """The ``popgate`` an administrator types: the venv's console script when installed."""
    script = Path(sys.executable).with_name("popgate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "popgate.cli"]


def wait_until(check: Callable[[], bool], what: str, *, within: float = 30) -> None:
    """Poll ``check`` every :data:`PORT_POLL` seconds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {within:.0f} s")
        time.sleep(PORT_POLL)


def all_listening(ports: Sequence[int]) -> bool:
    """Whether every port on 127.0.0.1 accepts a connection."""
    return all(listening(port) for port in ports)


def host_answers(client: HostClient) -> bool:
    """Whether the host's control API answers yet."""
    try:
        client.services()
    except HostNotRunningError:
        return False
    return True


def api_start(client: HostClient, name: str, ports: Sequence[int]) -> float:
    """Seconds from the start control until Running and every port accepts a connection."""
    started = time.perf_counter()
    client.start(name)
    final = client.wait_while_pending(name, interval=API_POLL)
    if final["status"] != "Running":
        raise SystemExit(f"{name} did not start: {final['last_error']}")
    wait_until(lambda: all_listening(ports), f"{name} listening on {ports}")
    return time.perf_counter() - started


def api_stop(client: HostClient, name: str) -> float:
    """Seconds from the stop control until the API reports Stopped."""
    started = time.perf_counter()
    client.stop(name)
    final = client.wait_while_pending(name, interval=API_POLL)
    if final["status"] != "Stopped":
        raise SystemExit(f"{name} did not stop: {final['status']}")
    return time.perf_counter() - started


def cli_sequence(env: dict[str, str], commands: Sequence[Sequence[str]]) -> float:
    """Wall seconds to run ``popgate <command>`` for each command in turn, each one a process."""
    started = time.perf_counter()
    for command in commands:
        subprocess.run(
            [*cli_command(), *command], env=env, check=True, timeout=300,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return time.perf_counter() - started


def expect_status(client: HostClient, status: str) -> None:
    """Fail unless both services are in ``status`` (after a command-line sequence)."""
    for name in (BACKEND, FRONTEND):
        actual = client.service(name)["status"]
        if actual != status:
            raise SystemExit(f"{name} is {actual} after the command line, not {status}")


def dovecot_version() -> str:
    """``2.3.19.1`` from ``dovecot --version``."""
    result = subprocess.run(["dovecot", "--version"], capture_output=True, text=True, check=True)
    return result.stdout.split()[0]


def dovecot_launch(dovecot: Dovecot) -> tuple[float, float]:
    """Seconds from launching Dovecot until both POP3 ports accept, and until a greeting.

    Dovecot's master opens the ports itself and forks the login processes that greet
    clients, so an accepted connection may still wait; the greeting says it serves.
    Dovecot.start() wrote the configuration; its command is repeated here because start()
    also pauses half a second after the launch, which would be timed with it.
    """
    started = time.perf_counter()
    process = subprocess.Popen(["dovecot", "-F", "-c", str(dovecot.root / "dovecot.conf")])
    dovecot.process = process

    def up() -> bool:
        if process.poll() is not None:
            raise SystemExit(f"Dovecot exited with status {process.returncode}; see its log")
        return all_listening([dovecot.port, dovecot.plain_port])

    wait_until(up, "Dovecot listening")
    accepting = time.perf_counter() - started
    with socket.create_connection(("127.0.0.1", dovecot.plain_port), timeout=30) as connection:
        greeting = connection.makefile("rb").readline()
        greeted = time.perf_counter() - started
        if not greeting.startswith(b"+OK"):
            raise SystemExit(f"Dovecot greeted with {greeting!r}")
        connection.sendall(b"QUIT\r\n")
    return accepting, greeted


def dovecot_stop(dovecot: Dovecot) -> float:
    """Seconds from SIGTERM until the Dovecot master process has exited."""
    started = time.perf_counter()
    dovecot.stop()
    return time.perf_counter() - started


def stop_host(host: subprocess.Popen[bytes]) -> None:
    """SIGTERM the host (it stops its services first); kill it if need be."""
    if host.poll() is None:
        host.terminate()
        try:
            host.wait(timeout=120)
        except subprocess.TimeoutExpired:
            host.kill()
            host.wait()
    # A host that died or was killed leaves no service behind: they die with their supervisor.


def kill_dovecot(dovecot: Dovecot) -> None:
    """Stop Dovecot, killing it if SIGTERM is not enough."""
    try:
        dovecot.stop()
    except subprocess.TimeoutExpired:
        if dovecot.process is not None:
            dovecot.process.kill()
            dovecot.process.wait()


def duration(seconds: float) -> str:
    """Milliseconds, with a decimal below 100 ms."""
    milliseconds = seconds * 1000
    return f"{milliseconds:,.1f} ms" if milliseconds < 100 else f"{milliseconds:,.0f} ms"


def report(samples: Samples, repeat: int) -> None:
    """Print the Markdown table and the comparison with Exchange's estimate."""
    print(f"| measurement | server | median of {repeat} | max of {repeat} |")
    print("|---|---|---|---|")
    for (measurement, server), runs in samples.items():
        print(f"| {measurement} | {server} "
              f"| {duration(statistics.median(runs))} | {duration(max(runs))} |")  # fmt: skip
    both_api = [
        start_be + start_fe
        for start_be, start_fe in zip(
            samples[(START_API, BACKEND)],
            samples[(START_API, FRONTEND)],
            strict=True,
        )
    ]
    both_cli = statistics.median(samples[(START_BOTH, "popgate")])
    print()
    print(
        f'Exchange 2013, "Start and stop the POP3 services": "Estimated time to complete: '
        f'{EXCHANGE_ESTIMATE / 60:.0f} minutes".\n'
        f"popgate, both services with two `popgate net start` commands: {both_cli:.2f} s "
        f"(median), {EXCHANGE_ESTIMATE / both_cli:,.0f} times shorter; through the API alone: "
        f"{statistics.median(both_api):.2f} s.\n"
        "The estimate is for a person doing the whole procedure, so this says the services "
        "are not the slow part, not that one is faster than the other."
    )


def measure(
    args: argparse.Namespace,
    env: dict[str, str],
    client: HostClient,
    ports: dict[str, list[int]],
    dovecot: Dovecot | None,
) -> Samples:
    """Every measurement, ``args.repeat`` times, interleaved so that drift hits all alike."""
    samples: Samples = {}

    def record(measurement: str, server: str, seconds: float) -> None:
        samples.setdefault((measurement, server), []).append(seconds)

    version = dovecot_version() if dovecot is not None else ""
    for _ in range(args.repeat):
        for name in (BACKEND, FRONTEND):
            seconds = api_start(client, name, ports[name])
            record(START_API, name, seconds)
        time.sleep(SETTLE)
        for name in (FRONTEND, BACKEND):
            record("stop to Stopped (idle), via the API", name, api_stop(client, name))
        seconds = cli_sequence(env, [["net", "start", BACKEND], ["net", "start", FRONTEND]])
        record(START_BOTH, "popgate", seconds)
        expect_status(client, "Running")
        if not all_listening([port for name in ports for port in ports[name]]):
            raise SystemExit("a service reported Running without listening")
        time.sleep(SETTLE)
        seconds = cli_sequence(env, [["net", "stop", FRONTEND], ["net", "stop", BACKEND]])
        record(STOP_BOTH, "popgate", seconds)
        expect_status(client, "Stopped")
        seconds = cli_sequence(env, [["net", "start"]])
        record("`popgate net start` (lists started services: one API call)", "popgate", seconds)
        if dovecot is not None:
            accepting, greeted = dovecot_launch(dovecot)
            record("launch to POP3 ports open", f"Dovecot {version}", accepting)
            record("launch to first +OK greeting (plain port)", f"Dovecot {version}", greeted)
            time.sleep(SETTLE)
            record("SIGTERM to exited (idle)", f"Dovecot {version}", dovecot_stop(dovecot))
    return samples


def interrupted(signum: int, _frame: object) -> None:
    """A signal handler that ends the run through the normal clean-up."""
    raise SystemExit(f"stopped by signal {signum}")


def main() -> None:
    """Set up, run the host (and Dovecot), measure, print, and stop everything."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10, help="repetitions of each measurement")
    parser.add_argument("--no-dovecot", action="store_true", help="measure popgate alone")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    # SIGTERM would end Python without running the clean-up below; make it an exception.
    signal.signal(signal.SIGTERM, interrupted)
    if not args.no_dovecot and not Dovecot.available():
        raise SystemExit("Dovecot is not installed: apt-get install dovecot-pop3d, or --no-dovecot")
    with tempfile.TemporaryDirectory(prefix="popgate-bench-") as scratch:
        root = Path(scratch)
        root.chmod(0o711)  # Dovecot's unprivileged processes must reach its folder inside
        home = Home(root / "home")
        env = dict(os.environ, POPGATE_HOME=str(home.root))
        popgate(env, "setup")
        backend_port, plain_port, ssl_port = free_port(), free_port(), free_port()
        popgate(
            env, "settings", "set", "ProxyTargetPort", str(backend_port),
            "UnencryptedOrTLSBindings", f"127.0.0.1:{plain_port}",
            "SSLBindings", f"127.0.0.1:{ssl_port}",
        )  # fmt: skip
        ports = {BACKEND: [backend_port], FRONTEND: [plain_port, ssl_port]}
        dovecot = None
        if not args.no_dovecot:
            dovecot = Dovecot(
                root / "dovecot", free_port(), free_port(), home.certificate, home.private_key
            )
        with (root / "host.log").open("wb") as host_log:
            host = subprocess.Popen(
                [*cli_command(), "host", "--https", f"127.0.0.1:{free_port()}"],
                env=env, stdin=subprocess.DEVNULL, stdout=host_log, stderr=subprocess.STDOUT,
                start_new_session=True,  # out of the terminal's process group, away from Ctrl-C
            )  # fmt: skip
            try:
                with HostClient.local(control_socket_path(home)) as client:
                    wait_for(lambda: host_answers(client), host, "the service host")
                    if dovecot is not None:
                        dovecot.start({})  # writes its configuration; measure() relaunches it
                        dovecot.stop()
                    samples = measure(args, env, client, ports, dovecot)
            except BaseException:
                sys.stderr.write((root / "host.log").read_text(errors="replace")[-4000:])
                raise
            finally:
                if dovecot is not None:
                    kill_dovecot(dovecot)
                stop_host(host)
        report(samples, args.repeat)


if __name__ == "__main__":
    main()
