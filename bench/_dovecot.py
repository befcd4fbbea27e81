"""Run Dovecot's POP3 server beside popgate, on the same corpus, for side-by-side numbers."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

CONFIG = """\
protocols = pop3
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{certificate}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:{root}/mail/%u
default_internal_user = {user}
default_login_user = dovenull
first_valid_uid = 1
# The issue's idle workload holds {idle} sessions: one pop3 process each, and every one of
# them talks to anvil, auth and stats.
default_process_limit = {process_limit}
default_client_limit = {client_limit}
auth_cache_size = 10M
# Dovecot's documented high-performance login mode: long-lived login processes.
service pop3-login {{
  inet_listener pop3 {{
    port = {plain_port}
  }}
  inet_listener pop3s {{
    port = {port}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = {cores}
}}
# Long-lived pop3 processes too: one serves session after session without a new fork.
service pop3 {{
  service_count = 0
  process_min_avail = {cores}
  # One process per session; Dovecot's own default is 1024.
  process_limit = {process_limit}
}}
service anvil {{
  chroot =
}}
"""


class Dovecot:
    """A private Dovecot instance serving one user's Maildir over implicit TLS."""

    def __init__(
        self,
        root: Path,
        port: int,
        plain_port: int,
        certificate: Path,
        key: Path,
        *,
        idle_sessions: int = 0,
    ) -> None:
        self.root = root
        self.port = port
        self.plain_port = plain_port
        self.certificate = certificate
        self.key = key
        self.idle_sessions = idle_sessions
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def hash_password(password: str) -> str:
        """Dovecot's own ARGON2ID hash of ``password`` (as doveadm pw makes it)."""
        result = subprocess.run(
            ["doveadm", "pw", "-s", "ARGON2ID", "-p", password],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    @staticmethod
    def available() -> bool:
        """Whether the dovecot binary is installed (Debian: dovecot-pop3d)."""
        return shutil.which("dovecot") is not None

    def start(self, users: Mapping[str, tuple[str, Path | None]]) -> None:
        """Copy each user's Maildir and start Dovecot.

        ``users`` maps a name to (passwd-file password field such as ``{PLAIN}secret`` or
        ``{ARGON2ID}$argon2id$...``, Maildir to copy or None for an empty one).
        """
        account = pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        for folder in ("run", "state", "home", "mail"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        lines = []
        for user, (password, maildir) in users.items():
            if maildir is None:
                for folder in ("cur", "new", "tmp"):
                    (self.root / "mail" / user / folder).mkdir(parents=True)
            else:
                shutil.copytree(
                    maildir, self.root / "mail" / user, ignore=shutil.ignore_patterns("popgate*")
                )
            lines.append(f"{user}:{password}::::::\n")
        (self.root / "passwd").write_text("".join(lines))
        shutil.copy(self.certificate, self.root / "cert.pem")
        shutil.copy(self.key, self.root / "key.pem")
        config = self.root / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                root=self.root,
                certificate=self.root / "cert.pem",
                key=self.root / "key.pem",
                uid=account.pw_uid,
                gid=account.pw_gid,
                user=account.pw_name,
                port=self.port,
                plain_port=self.plain_port,
                cores=os.cpu_count() or 1,
                idle=self.idle_sessions,
                process_limit=max(100, self.idle_sessions + 200),
                client_limit=max(1000, 2 * self.idle_sessions + 2000),
            )
        )
        if os.geteuid() == 0:
            for path in [self.root / "home", self.root / "mail", *(self.root / "mail").rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid)
        self.process = subprocess.Popen(["dovecot", "-F", "-c", str(config)])
        time.sleep(0.5)

    def stop(self) -> None:
        """Stop Dovecot and its children."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
