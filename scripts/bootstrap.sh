#!/usr/bin/env bash
# Create .venv and install popgate into it (with the test and lint tools when asked).
# Usage: scripts/bootstrap.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # python3-venv is missing from some minimal Debian images.
  python3 -m venv --help >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv; }
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=25.1"
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -e . --group test --group lint
  # The TLS scanner's own environment (it needs an older cryptography than popgate pins).
  [ -x .venv-sslyze/bin/python ] || python3 -m venv .venv-sslyze
  .venv-sslyze/bin/python -m pip install -q -r scripts/sslyze-requirements.txt
else
  .venv/bin/python -m pip install -q -e .
fi
