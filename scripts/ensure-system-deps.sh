#!/usr/bin/env bash
# Installs what the local stack needs from the system, or says exactly how to.
set -euo pipefail

have_pg_server() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && return 0
  command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && return 0
  return 1
}

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
updated=
apt_install() {
  [ -n "$updated" ] || { apt-get update -qq; updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! have_pg_server; then
  if can_apt; then
    echo "Installing the PostgreSQL server (apt-get install postgresql)..."
    apt_install postgresql
  else
    echo "PostgreSQL server binaries (initdb, pg_ctl) are missing." >&2
    echo "Install them: 'sudo apt-get install postgresql' (Debian/Ubuntu) or 'brew install postgresql' (macOS)." >&2
    exit 1
  fi
fi

# The Celery tests queue steps on a Redis broker that the test suite starts on loopback.
if [ "${1:-}" = "--with-browser" ] && ! command -v redis-server >/dev/null 2>&1; then
  if can_apt; then
    echo "Installing Redis for the Celery executor tests (apt-get install redis-server)..."
    apt_install redis-server
  else
    echo "The Celery executor tests need redis-server: 'sudo apt-get install redis-server'" >&2
    echo "(Debian/Ubuntu) or 'brew install redis' (macOS)." >&2
    exit 1
  fi
fi

# The browser test drives Debian's Chromium through Playwright (no browser download).
if [ "${1:-}" = "--with-browser" ] && [ ! -x /usr/bin/chromium ]; then
  if can_apt; then
    echo "Installing Chromium for the browser test (apt-get install chromium)..."
    apt_install chromium
  else
    echo "The browser test needs Chromium at /usr/bin/chromium: 'sudo apt-get install chromium'." >&2
    echo "Without it that one test is skipped, or fails where CI is set." >&2
  fi
fi
