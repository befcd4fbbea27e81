#!/usr/bin/env bash
# The main job: install, set up this computer (idempotent), run the POP3 services.
# Today that is MSExchangePOP3BE; the front end (MSExchangePOP3) and the service host follow.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/popgate setup
exec .venv/bin/popgate service run MSExchangePOP3BE
