"""What a full replay buffer costs the server: hold N interactive sessions that each printed more
than --replay-buffer (so their buffers are full) and now wait in input(), and compare the
server's RSS (master and workers) before and while they are held.

    scripts/replay_memory.py --server http://127.0.0.1:8080 --sessions 40 [--idle]

--idle holds sessions that printed nothing, for the same figure without buffers (the bench's
"server RSS per idle session"). Start the server with --output-limit above 1.1 MB (2m), so
that the program is not stopped by the output limit, --max-sessions above N, and --idle-timeout
and --input-timeout above the time it takes to start them all.
"""

from __future__ import annotations

import argparse
import json
import time

from sandbox_engine.bench import Client
from sandbox_engine.bench_baselines import rss, server_pids

# About 1.1 MB of output, then a prompt: the buffer (1 MiB by default) is full and stays so.
FULL = (
    "import sys\nfor i in range(1100):\n    sys.stdout.write('x' * 1023 + '\\n')\n"
    "sys.stdout.flush()\ninput()\n"
)
IDLE = "print('ready', flush=True)\ninput()\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--idle", action="store_true", help="sessions that print (almost) nothing")
    args = parser.parse_args()
    client = Client(args.server)
    # A connection kept alive between sessions that take seconds each may be closed under us.
    client.http.headers["Connection"] = "close"
    pids = server_pids(int(args.server.rsplit(":", 1)[1].split("/")[0]))
    before = rss(pids)
    held = []
    try:
        for _ in range(args.sessions):
            ws = client.attach(client.create(IDLE if args.idle else FULL))
            printed = 0
            while printed < (6 if args.idle else 1100 * 1024):
                message = json.loads(ws.recv(60))
                if message["type"] == "stdout":
                    printed += len(message["data"])
                assert message["type"] != "state" or message["state"] == "RUNNING", message
            held.append(ws)
        time.sleep(2)
        during = rss(pids)
    finally:
        for ws in held:
            ws.close()
    per = (during - before) / max(1, len(held))
    print(
        f"{len(held)} {'idle' if args.idle else 'full-buffer'} sessions: server RSS "
        f"{before / 2**20:.0f} MB before, {during / 2**20:.0f} MB holding them, "
        f"{per / 1024:.0f} KB per session"
    )


if __name__ == "__main__":
    main()
