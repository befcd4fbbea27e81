#!/usr/bin/env bash
# The main job: install, set up this computer (idempotent), run both POP3 services.
# Until the service host arrives (`popgate up`), this script plays its part: the backend runs
# in the background, the front end in the foreground, and Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/popgate setup
.venv/bin/popgate service run MSExchangePOP3BE &
backend=$!
trap 'kill -TERM "$backend" 2>/dev/null || true; wait "$backend" || true' EXIT
.venv/bin/popgate service run MSExchangePOP3
