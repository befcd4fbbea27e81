#!/usr/bin/env bash
# Install everything the tests need, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
needed=()
# chromium: the browser the admin center tests drive through Playwright.
for tool in curl mpop fetchmail openssl chromium swaks postfix; do command -v "$tool" >/dev/null || needed+=("$tool"); done
# ip (iproute2): tests/multi builds an organization of four computers from network namespaces.
command -v ip >/dev/null || needed+=(iproute2)
# cc and OpenSSL's headers: bench/'s load generator (pop3load.c) is compiled by its smoke test.
command -v cc >/dev/null || needed+=(gcc libc6-dev)
[ -f /usr/include/openssl/ssl.h ] || needed+=(libssl-dev)
# Dovecot's POP3 server: the smoke run of `python -m bench` compares popgate with it.
command -v dovecot >/dev/null || needed+=(dovecot-pop3d)
if [ ${#needed[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    # No package may start its system service (Dovecot on 110/995): the tests run their own.
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; made_policy=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}" >/dev/null
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
  else
    echo "missing test clients: ${needed[*]} (install them with apt-get as root)" >&2
    exit 1
  fi
fi
# The directory's tests also run against a real PostgreSQL: start one when we may.
if [ -z "${POPGATE_TEST_POSTGRES_URL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  command -v pg_ctlcluster >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  }
  read -r version cluster _ < <(pg_lsclusters --no-header | head -1)
  pg_ctlcluster "$version" "$cluster" start 2>/dev/null || true
  password=$(openssl rand -hex 16)
  as_postgres() { su postgres -s /bin/sh -c "$1"; }
  as_postgres "psql -q -c \"DROP DATABASE IF EXISTS popgate_test\""
  as_postgres "psql -q -c \"DROP ROLE IF EXISTS popgate_test\""
  as_postgres "psql -q -c \"CREATE ROLE popgate_test LOGIN PASSWORD '$password'\""
  as_postgres "createdb -O popgate_test popgate_test"
  port=$(pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $3}')
  export POPGATE_TEST_POSTGRES_URL="postgresql+asyncpg://popgate_test:$password@127.0.0.1:$port/popgate_test"
fi
scripts/bootstrap.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
exec .venv/bin/python -bb -m pytest "$@"
