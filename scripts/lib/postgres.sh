# Starts a throw-away Postgres cluster for tests (sourced by scripts/test.sh and scripts/bench.sh).
# The server refuses to run as root, so as root it runs as the `postgres` user.

PG_RUN=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  PG_RUN=(runuser -u postgres --)
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_test_postgres() {
  command -v initdb >/dev/null || { echo "initdb not found: install the Postgres server (apt-get install postgresql)" >&2; exit 1; }
  PG_DIR=$(mktemp -d /tmp/upiflow-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
  PG_PORT=$(free_port)
  "${PG_RUN[@]}" initdb -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
  # Tests do not test durability, so they skip it for speed; benchmarks (PG_DURABLE=1) keep
  # Postgres' defaults so their numbers hold for a real deployment.
  local fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ "${PG_DURABLE:-0}" = 1 ] && fast=""
  # Commit times, for bench_latency's event -> stored (committed) latency.
  "${PG_RUN[@]}" pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=500 -c shared_buffers=256MB -c track_commit_timestamp=on $fast" \
    start >/dev/null || { cat "$PG_DIR/server.log" >&2; exit 1; }
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "test Postgres on port $PG_PORT ($PG_DIR)" >&2
}

stop_test_postgres() {
  "${PG_RUN[@]}" pg_ctl -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
