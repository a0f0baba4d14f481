#!/usr/bin/env bash
# Runs the whole test suite against real services that it starts itself: a throw-away
# Postgres cluster (unless DATABASE_URL is already set) and the Tansu broker binary the
# Kafka tests start, Debian's Chromium for the browser tests and Airflow's Python client
# for the compatibility test, aiosmtpd for the email notifier test, Airflow's remote CLI
# (airflowctl) and schemathesis for the API tests (all installed when missing). Usable on a
# fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/tansu.sh
ensure_tansu
source scripts/lib/chromium.sh
ensure_chromium
source scripts/lib/airflow_client.sh
ensure_airflow_client
source scripts/lib/aiosmtpd.sh
ensure_aiosmtpd
source scripts/lib/airflowctl.sh
ensure_airflowctl
source scripts/lib/schemathesis.sh
ensure_schemathesis

if [ -z "${DATABASE_URL:-}" ]; then
  source scripts/lib/postgres.sh
  start_test_postgres
  trap stop_test_postgres EXIT
fi
export DATABASE_URL

log=$(mktemp)
set +e
cargo test --workspace --all-targets --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
