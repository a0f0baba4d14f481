#!/usr/bin/env bash
# Runs the benchmark programs against a throw-away Postgres with default durability
# (fsync and synchronous_commit on), unless DATABASE_URL is set.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DATABASE_URL:-}" ]; then
  source scripts/lib/postgres.sh
  PG_DURABLE=1 start_test_postgres
  trap stop_test_postgres EXIT
fi
export DATABASE_URL
cargo run --release --example bench_engine
cargo run --release --example bench_catchup
cargo run --release --example bench_ingest
cargo run --release --example bench_latency
cargo run --release --example bench_transforms
cargo run --release --example bench_grid
cargo run --release --example bench_dashboard
cargo run --release --example bench_api
cargo run --release --example bench_api_key
cargo run --release --example bench_history
