#!/usr/bin/env bash
# Everything `make run` and `make test` need on a fresh Debian machine, as root; quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."
want_tests=${1:-}

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
# gVisor, for `serve --runtime runsc` (and `make test-gvisor`); scripts/runsc.sh registers it.
command -v runsc >/dev/null || need+=(runsc)
[ -n "$want_tests" ] && { command -v nginx >/dev/null || need+=(nginx-light); }
# Replicas share their records in Redis (--redis-url): the tests run Debian's redis-server.
[ -n "$want_tests" ] && { command -v redis-server >/dev/null || need+=(redis-server); }
# The browser test drives the IDE page in Debian's chromium, headless, through Playwright; the
# page's fonts are DejaVu (chromium only recommends fonts).
[ -n "$want_tests" ] && { command -v chromium >/dev/null || need+=(chromium fonts-dejavu-core); }
# The launchers' unit tests build se-run (images/runtime/se-run.c) on the host, static as in its image.
[ -n "$want_tests" ] && { { command -v gcc >/dev/null && dpkg -s libc6-dev >/dev/null 2>&1; } || need+=(gcc libc6-dev); }
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's nginx package starts a server on port 80 we do not want; the tests run their own.
  if [[ " ${need[*]} " == *" nginx-light "* ]]; then nginx -s stop 2>/dev/null || true; fi
  # Likewise its redis-server where an init system starts one: the tests start their own.
  if [[ " ${need[*]} " == *" redis-server "* ]]; then service redis-server stop >/dev/null 2>&1 || true; fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# pip, with its warnings about index locations this machine does not have left out. A failed
# install stops the set-up with pip's own error shown, and no stamp is written, so the next run
# tries again.
pip_install() {
  local status=0
  .venv/bin/pip install -q "$@" 2>&1 | { grep -v '^WARNING: Location' || true; } || status=${PIPESTATUS[0]}
  if [ "$status" != 0 ]; then
    echo "setup: \`pip install $*\` failed (exit $status); the next run tries again" >&2
    exit "$status"
  fi
}

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  pip_install --upgrade pip
  pip_install -e '.[test]'
  .venv/bin/sandbox-engine --help >/dev/null
  touch "$stamp"
fi

scripts/dockerd.sh
# Not fatal: runc, the default, does without; `make test-gvisor` runs it again and stops there.
scripts/runsc.sh || echo "setup: the runtime runsc (gVisor) is not available; --runtime runsc will not work" >&2
scripts/build-images.sh
