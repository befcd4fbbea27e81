"""sslyze scans the front end's TLS on 995 (implicit) and 110 (STLS): nothing below TLS 1.2,
no weak cipher, no compression, secure renegotiation only (issue 10, TLS)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Installation, installed

REPOSITORY = Path(__file__).resolve().parents[2]
#: Made by scripts/bootstrap.sh --dev (see scripts/sslyze-requirements.txt for why apart).
SSLYZE = REPOSITORY / ".venv-sslyze" / "bin" / "python"
SCANS = ["--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3",
         "--compression", "--reneg"]  # fmt: skip
#: Cipher suites named with any of these are weak: no forward secrecy, no authentication,
#: no encryption, export-grade, broken or 64-bit-block ciphers, or CBC with SHA-1's MAC.
WEAK = ("_RSA_WITH_", "NULL", "anon", "EXPORT", "RC4", "DES", "IDEA", "MD5", "CBC")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """The front end (and its backend) with its implicit-TLS and STLS ports."""
    with installed(tmp_path_factory.mktemp("tls-scan")) as installation:
        installation.start_backend()
        installation.start_frontend()
        yield installation


def scan(port: int, tmp_path: Path, *, starttls: bool) -> dict[str, Any]:
    """sslyze's results for 127.0.0.1:port, as its JSON output gives them."""
    assert SSLYZE.exists(), "run scripts/bootstrap.sh --dev: it makes .venv-sslyze"
    output = tmp_path / f"scan-{port}.json"
    command = [str(SSLYZE), "-m", "sslyze", *SCANS, f"--json_out={output}"]
    command += ["--starttls=pop3"] if starttls else []
    finished = subprocess.run(
        [*command, f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=300, check=False
    )
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    (server,) = json.loads(output.read_text())["server_scan_results"]
    assert server["connectivity_status"] == "COMPLETED", server
    result: dict[str, Any] = server["scan_result"]
    return result


def accepted(result: dict[str, Any], version: str) -> list[str]:
    """Names of the cipher suites the server accepted with a protocol version."""
    attempt = result[f"{version}_cipher_suites"]
    assert attempt["status"] == "COMPLETED", attempt
    return [item["cipher_suite"]["name"] for item in attempt["result"]["accepted_cipher_suites"]]


@pytest.mark.parametrize("starttls", [False, True], ids=["995 implicit TLS", "110 STLS"])
def test_the_scan_finds_only_tls_1_2_and_up_strong_ciphers_no_compression_safe_reneg(
    served: Installation, tmp_path: Path, starttls: bool
) -> None:
    port = served.plain_port if starttls else served.ssl_port
    result = scan(port, tmp_path, starttls=starttls)
    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        assert accepted(result, old) == [], old
    modern = accepted(result, "tls_1_2") + accepted(result, "tls_1_3")
    assert accepted(result, "tls_1_3"), "TLS 1.3 is offered"
    assert modern
    assert [name for name in modern if any(mark in name for mark in WEAK)] == []
    compression = result["tls_compression"]["result"]
    assert compression["supports_compression"] is False
    renegotiation = result["session_renegotiation"]["result"]
    assert renegotiation["is_vulnerable_to_client_renegotiation_dos"] is False
    assert renegotiation["supports_secure_renegotiation"] is True
