#!/usr/bin/env bash
# Makes sure a Docker daemon answers: starts dockerd if none runs, after clearing what a killed
# daemon leaves behind (a stale pid file, a dead containerd's pid file, a dangling socket).
set -euo pipefail
LOG=${DOCKERD_LOG:-/var/log/sandbox-engine-dockerd.log}

answers() { timeout 5 docker version >/dev/null 2>&1; }

answers && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "dockerd.sh: Docker does not answer and only root can start it" >&2; exit 1
fi
for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
done
# pidof, not pgrep: a daemon that exited but is not yet reaped (a zombie) must not count.
if ! pidof dockerd >/dev/null; then
  rm -f /var/run/docker.sock
  nohup dockerd >>"$LOG" 2>&1 </dev/null &
fi
for _ in $(seq 1 150); do
  answers && exit 0
  sleep 0.2
done
echo "dockerd.sh: dockerd did not answer within 30 s; the end of $LOG:" >&2
tail -20 "$LOG" >&2
exit 1
