"""Where popgate keeps its state on this computer (POPGATE_HOME) and what lives there."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Home", "HomeNotSetUpError", "default_home"]

CONFIG_FILE = "popgate.json"
#: Where MSExchangeDelivery listens for LMTP unless `popgate setup --lmtp` says otherwise.
DEFAULT_LMTP_BINDING = "127.0.0.1:24"


class HomeNotSetUpError(Exception):
    """The data directory has not been created by ``popgate setup`` yet."""


def default_home() -> Path:
    """POPGATE_HOME, else /var/lib/popgate for root and ~/.local/share/popgate for others."""
    configured = os.environ.get("POPGATE_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    if os.geteuid() == 0:
        return Path("/var/lib/popgate")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "popgate"


@dataclass(frozen=True, slots=True)
class Home:
    """The paths of one popgate data directory."""

    root: Path

    @classmethod
    def locate(cls) -> Home:
        """The data directory named by the environment (see :func:`default_home`)."""
        return cls(default_home())

    @property
    def config_file(self) -> Path:
        """JSON with this computer's server name and the directory URL."""
        return self.root / CONFIG_FILE

    @property
    def mail_root(self) -> Path:
        """Root of the Maildir store: one folder per mailbox GUID."""
        return self.root / "mail"

    @property
    def tls_dir(self) -> Path:
        """The computer's certificate and key."""
        return self.root / "tls"

    @property
    def certificate(self) -> Path:
        """The computer's self-signed certificate (PEM)."""
        return self.tls_dir / "server.crt"

    @property
    def private_key(self) -> Path:
        """The private key of :attr:`certificate` (PEM, mode 0600)."""
        return self.tls_dir / "server.key"

    def named_certificate(self, name: str) -> tuple[Path, Path]:
        """Certificate and key imported under ``name`` (an FQDN, see X509CertificateName)."""
        folder = self.tls_dir / "certs"
        return folder / f"{name}.crt", folder / f"{name}.key"

    @property
    def secrets_dir(self) -> Path:
        """Generated credentials, each in a 0600 file."""
        return self.root / "secrets"

    @property
    def administrator_password_file(self) -> Path:
        """The Administrator account's generated password."""
        return self.secrets_dir / "Administrator.password"

    @property
    def proxy_secret_file(self) -> Path:
        """The secret this computer's front end presents to POP3 Backend services."""
        return self.secrets_dir / "proxy.secret"

    @property
    def run_dir(self) -> Path:
        """Unix sockets of the running services."""
        return self.root / "run"

    @property
    def backend_socket(self) -> Path:
        """Unix socket of MSExchangePOP3BE, used by a front end on the same computer."""
        return self.run_dir / "pop3be.sock"

    def lmtp_binding(self) -> str:
        """Where MSExchangeDelivery takes LMTP over TCP: what ``popgate setup --lmtp`` stored,
        else 127.0.0.1:24; the empty string for the Unix socket only."""
        return self.read_config().get("lmtp", DEFAULT_LMTP_BINDING)

    @property
    def lmtp_socket(self) -> Path:
        """Unix socket of MSExchangeDelivery, for the local MTA's LMTP client."""
        return self.run_dir / "lmtp.sock"

    @property
    def metrics_dir(self) -> Path:
        """The services' counters (prometheus-client multiprocess files), reset by the host."""
        return self.run_dir / "metrics"

    @property
    def log_dir(self) -> Path:
        """Service and protocol logs."""
        return self.root / "logs"

    @property
    def default_directory_url(self) -> str:
        """The embedded SQLite directory of a single computer."""
        return f"sqlite+aiosqlite:///{self.root / 'directory.db'}"

    def read_config(self) -> dict[str, str]:
        """The settings written by setup; :class:`HomeNotSetUpError` when there are none."""
        try:
            loaded = json.loads(self.config_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HomeNotSetUpError(
                f"popgate is not set up in {self.root}; run 'popgate setup' first"
            ) from None
        return {str(key): str(value) for key, value in loaded.items()}

    @property
    def server_name(self) -> str:
        """This computer's name in the directory."""
        return self.read_config()["server"]

    @property
    def directory_url(self) -> str:
        """The directory this computer uses."""
        return self.read_config().get("directory_url", self.default_directory_url)

    def write_config(self, config: dict[str, str]) -> None:
        """Replace the settings file atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.config_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        temporary.replace(self.config_file)
