# Installs the Kafka-compatible broker Tansu (Apache-2.0, from crates.io) unless it is there.
ensure_tansu() {
  if command -v tansu >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    return 0
  fi
  echo "installing the Kafka-compatible broker tansu (once; takes a few minutes)" >&2
  cargo install tansu --version 0.6.0 --locked --features dynostore
}
