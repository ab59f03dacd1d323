#!/usr/bin/env bash
# `make bench`: two servers on this machine, one with a warm pool and one without, the same pair
# again with their sandboxes under gVisor (--runtime runsc), and the benchmark against all four;
# results to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
state=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait || true; rm -rf "$state"; }
trap cleanup EXIT

serve() {  # port instance pool runtime
  SANDBOX_ENGINE_STATE_DIR="$state" .venv/bin/sandbox-engine serve --bind "127.0.0.1:$1" --workers 2 \
    --instance "$2" --pool-size "$3" --runtime "$4" --max-sessions 260 --idle-timeout 120 \
    >"$state/$2.log" 2>&1 &
  pids+=($!)
}
scripts/runsc.sh
# A pool larger than the sequential phase's 51 sessions, so every one of them is measured warm
# (the bench waits for the pool to be full before each warm phase and reports its level).
serve 18081 bench-warm "python=64" runc
serve 18082 bench-cold 0 runc
serve 18083 bench-gvisor-warm "python=64" runsc
serve 18084 bench-gvisor-cold 0 runsc
for port in 18081 18082 18083 18084; do
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
done
.venv/bin/sandbox-engine bench --server http://127.0.0.1:18081 --cold-server http://127.0.0.1:18082 \
  --gvisor-server http://127.0.0.1:18083 --gvisor-cold-server http://127.0.0.1:18084 \
  --markdown BENCHMARKS.md "$@"
# Every language's hello world, warm and cold, beside its own `docker run` floor: its own section.
# Its server, with a warm sandbox of every language, starts now, so as not to weigh on the above.
serve 18085 bench-languages "$(.venv/bin/python -m sandbox_engine.languages pool-sizes 1)" runc
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:18085/readyz" >/dev/null && break; sleep 0.2; done
.venv/bin/sandbox-engine bench-languages --server http://127.0.0.1:18085 --cold-server http://127.0.0.1:18082 \
  --markdown BENCHMARKS.md
