# Installs schemathesis (from PyPI) into target/schemathesis-venv for tests/api_fuzz.rs, which
# fuzzes upiflow's API with Airflow's own OpenAPI document, unless it is there.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
  local venv=target/schemathesis-venv
  if [ -x "$venv/bin/schemathesis" ] && "$venv/bin/python" -c "import schemathesis" 2>/dev/null; then
    return 0
  fi
  echo "installing schemathesis $SCHEMATHESIS_VERSION for the API fuzz test" >&2
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
}
