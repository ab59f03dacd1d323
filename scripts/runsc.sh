#!/usr/bin/env bash
# Registers gVisor's runsc with dockerd as the runtime `runsc` (for `serve --runtime runsc`): its
# entry in daemon.json, then a SIGHUP to a running dockerd, which reloads the runtimes (Docker
# 20.10 does) without a restart, so that the containers running meanwhile are untouched. A daemon
# not running yet reads the entry when it starts. Quick when done.
set -euo pipefail
CONFIG=${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
PIDFILE=/var/run/docker.pid

runsc=$(command -v runsc) || { echo "runsc.sh: runsc is not installed (apt-get install runsc)" >&2; exit 1; }
# --network=none: the sandboxes have no network anyway, and this runsc (2022) refuses to start in a
# network namespace on recent kernels (its root-namespace check misfires). --oci-seccomp: the
# container's seccomp profile holds inside the sandbox (the engine gives one that denies user
# namespaces: in one of its own, a program is no longer bound by the process limit).
entry=$(printf '{"path": "%s", "runtimeArgs": ["--network=none", "--oci-seccomp"]}' "$runsc")

registered() {  # dockerd answers and knows runsc with exactly this entry
  timeout 10 docker info --format '{{json .Runtimes.runsc}}' 2>/dev/null |
    python3 -c 'import json, sys; sys.exit(json.load(sys.stdin) != json.loads(sys.argv[1]))' "$entry" 2>/dev/null
}
in_config() {  # daemon.json holds exactly this entry, for the daemon's next start too
  python3 -c 'import json, sys
sys.exit(json.load(open(sys.argv[1])).get("runtimes", {}).get("runsc") != json.loads(sys.argv[2]))' \
    "$CONFIG" "$entry" 2>/dev/null
}

registered && in_config && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "runsc.sh: the runtime runsc is not registered with dockerd, and only root can register it" >&2
  exit 1
fi
if ! in_config; then
  echo "runsc.sh: registering runsc in $CONFIG"
  # daemon.json as it is, with this one entry added or replaced.
  python3 - "$CONFIG" "$entry" <<'PY'
import json, os, sys

path, entry = sys.argv[1], json.loads(sys.argv[2])
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
config.setdefault("runtimes", {})["runsc"] = entry
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path + ".tmp", "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.replace(path + ".tmp", path)
PY
fi
registered && exit 0
pid=$(cat "$PIDFILE" 2>/dev/null || true)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
  exit 0  # no daemon: it reads the entry when scripts/dockerd.sh starts it
fi
kill -HUP "$pid"
for _ in $(seq 1 50); do
  registered && exit 0
  sleep 0.2
done
echo "runsc.sh: dockerd (pid $pid) did not take the runtime runsc from $CONFIG after SIGHUP;" \
  "see its log (${DOCKERD_LOG:-/var/log/sandbox-engine-dockerd.log})" >&2
exit 1
