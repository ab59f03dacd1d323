"""Before each of the benchmark's phases: the servers' warm pools full and the last phase's
sandboxes gone, so that no phase is measured while Docker still refills or removes for another.

A phase's sessions are replaced (refills wait for quiet) and removed (removals wait for quiet)
after it, and every server of the bench shares one Docker and two cores: a warm pool of 64 under
gVisor filling while the runc server's warm sessions are measured, or 50 removals while the cold
server's starts are, doubles what the figures say.
"""

from __future__ import annotations

import time

import docker

from .docker_executor import LABEL


def pool_levels(client) -> list[dict]:
    response = client.http.get(f"{client.server}/pool", timeout=30)
    response.raise_for_status()
    return response.json()["pool"]


def describe_pool(levels: list[dict]) -> str:
    described = [f"{p['language']}{' tty' if p['tty'] else ''} {p['warm']}/{p['size']}" for p in levels]
    return ", ".join(described) or "none"


def wait_for_pool(client, timeout: float = 180) -> str:
    """Wait until the server's warm pools are full (refills wait for quiet, so the previous
    phase's sessions would otherwise still be replaced while this one is measured)."""
    deadline = time.monotonic() + timeout
    while True:
        levels = pool_levels(client)
        if all(p["warm"] >= p["size"] for p in levels) or time.monotonic() > deadline:
            return describe_pool(levels)
        time.sleep(0.5)


def sandboxes() -> int:
    """How many sandbox-engine containers Docker holds, of any server, in any state."""
    api = docker.APIClient(version="1.41")
    try:
        return len(api.containers(all=True, filters={"label": [LABEL]}))
    finally:
        api.close()


def settle(clients: list, timeout: float = 180, steady: float = 3.0) -> str:
    """Wait until every server's pools are full and Docker holds no other sandbox (the last
    phase's removed), or as many for `steady` seconds (another server's sessions, on a machine
    shared with one); the first server's pools described."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        levels = [pool_levels(client) for client in clients]
        pooled = sum(p["size"] for server in levels for p in server)
        full = all(p["warm"] >= p["size"] for server in levels for p in server)
        held = sandboxes()
        if held != last:
            last, since = held, time.monotonic()
        drained = held <= pooled or time.monotonic() - since >= steady
        if (full and drained) or time.monotonic() > deadline:
            return describe_pool(levels[0]) if levels else "none"
        time.sleep(0.5)
