#!/usr/bin/env bash
# Runs the whole test suite against real services that it starts itself: a throw-away
# Postgres cluster (unless DATABASE_URL is already set). Usable on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
  source scripts/lib/postgres.sh
  start_test_postgres
  trap stop_test_postgres EXIT
fi
export DATABASE_URL

cargo test --workspace --all-targets "$@"
