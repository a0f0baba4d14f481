# Installs Apache Airflow's official Python client (from PyPI) into target/airflow-client-venv
# for tests/airflow_client.rs, unless it is there.
AIRFLOW_CLIENT_VERSION=3.3.2
ensure_airflow_client() {
  local venv=target/airflow-client-venv
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import airflow_client.client" 2>/dev/null; then
    return 0
  fi
  echo "installing apache-airflow-client $AIRFLOW_CLIENT_VERSION for the compatibility test" >&2
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "apache-airflow-client==$AIRFLOW_CLIENT_VERSION"
}
