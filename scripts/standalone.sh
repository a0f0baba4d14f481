#!/usr/bin/env bash
# Starts the whole system with local defaults: a private Postgres (unless DATABASE_URL is
# set), a private Kafka-compatible broker (unless KAFKA_BOOTSTRAP_SERVERS is set), ingest,
# scheduler, worker, web UI (http://127.0.0.1:8080) and a demo generator so payments flow
# at once.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/tansu.sh
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  ensure_tansu
fi
exec cargo run --release -- standalone --demo "$@"
