#!/usr/bin/env bash
# The main job: install, then `popgate up`: set up this computer if needed (idempotent), run
# the service host, start MSExchangePOP3BE then MSExchangePOP3. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/popgate up "$@"
