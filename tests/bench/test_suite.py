"""``python -m bench``, the side-by-side benchmark with Dovecot, in a tiny smoke run.

It checks that the whole run works end to end and yields a figure for every row on both
servers, not how large the figures are (benchmarks are not timed tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.suite import ROWS

REPOSITORY = Path(__file__).resolve().parents[2]


def test_a_tiny_run_measures_every_row_on_both_servers(tmp_path: Path) -> None:
    output = tmp_path / "medians.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--repeat", "1", "--seconds", "1", "--idle", "20",
         "--huge", "300", "--json", str(output)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    medians = json.loads(output.read_text())
    for row in ROWS:
        figures = medians[row.key]
        assert set(figures) == {"popgate", "Dovecot"}, row.key
        assert all(value > 0 for value in figures.values()), (row.key, figures)
    table = [line for line in finished.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(ROWS)  # the header and one line per row
    assert "20 idle sessions opened" in finished.stdout
