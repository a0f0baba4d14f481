#!/usr/bin/env bash
# Starts the whole system with local defaults: a private Postgres (unless DATABASE_URL is
# set), a private Kafka-compatible broker (unless KAFKA_BOOTSTRAP_SERVERS is set), ingest,
# scheduler, worker, web UI (http://127.0.0.1:8080) and a demo generator so payments flow
# at once. Run it again after a crash (kill -9, a closed terminal): it stops or adopts
# what the dead one left running in ./.upiflow.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/tansu.sh
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  ensure_tansu
fi
cargo build --release --bin upiflow
# exec the binary itself, not `cargo run`: a signal sent to this script's pid (kill -9
# included) must reach upiflow, not a cargo that would leave it running orphaned.
exec "${CARGO_TARGET_DIR:-target}/release/upiflow" standalone --demo "$@"
