# Installs aiosmtpd (a real SMTP server, from PyPI) into target/aiosmtpd-venv for the email
# notifier test of tests/notifications.rs, unless it is there.
AIOSMTPD_VERSION=1.4.6
ensure_aiosmtpd() {
  local venv=target/aiosmtpd-venv
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import aiosmtpd" 2>/dev/null; then
    return 0
  fi
  echo "installing aiosmtpd $AIOSMTPD_VERSION for the email notifier test" >&2
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "aiosmtpd==$AIOSMTPD_VERSION"
}
