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

registered && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "runsc.sh: dockerd does not know the runtime runsc, and only root can register it" >&2; exit 1
fi
# daemon.json as it is, with this one entry added or replaced; written only when it changes.
python3 - "$CONFIG" "$entry" <<'EOF'
import json, os, sys

path, entry = sys.argv[1], json.loads(sys.argv[2])
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
if config.get("runtimes", {}).get("runsc") != entry:
    print(f"runsc.sh: registering runsc in {path}")
    config.setdefault("runtimes", {})["runsc"] = entry
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
EOF
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
