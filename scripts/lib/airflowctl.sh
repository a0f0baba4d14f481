# Installs Airflow's remote CLI, apache-airflow-ctl (from PyPI), into target/airflowctl-venv for
# tests/airflowctl.rs, unless it is there.
AIRFLOWCTL_VERSION=0.1.5
ensure_airflowctl() {
  local venv=target/airflowctl-venv
  if [ -x "$venv/bin/airflowctl" ] && "$venv/bin/python" -c "import airflowctl" 2>/dev/null; then
    return 0
  fi
  echo "installing apache-airflow-ctl $AIRFLOWCTL_VERSION for the remote CLI test" >&2
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "apache-airflow-ctl==$AIRFLOWCTL_VERSION"
}
