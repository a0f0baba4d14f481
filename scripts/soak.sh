#!/usr/bin/env bash
# The long form of the chaos soak (tests/chaos_soak.rs): SECONDS of chaos (default 600) with
# 2 schedulers, 2 workers, 2 ingest processes and the web server SIGKILLed at random and
# Postgres restarted twice, then the exactness checks. It starts its own Postgres cluster and
# Tansu broker (installed when missing); the shared DATABASE_URL is never touched.
#   scripts/soak.sh [SECONDS] [cargo test args, e.g. --release]
#   UPIFLOW_SOAK_SEED=N scripts/soak.sh 600     # replay a kill schedule
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/tansu.sh
ensure_tansu
seconds=${1:-600}
shift || true
UPIFLOW_SOAK_SECONDS=$seconds exec cargo test "$@" --test chaos_soak -- --nocapture
