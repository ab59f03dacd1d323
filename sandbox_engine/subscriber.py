"""A client's connection as a session's hub and its watchers see it (ws.Channel, a relay's
client, the tests' fake)."""

from __future__ import annotations

from typing import Protocol

NORMAL_CLOSURE = 1000


class Subscriber(Protocol):
    def send_text(self, text: str) -> None: ...

    def close(self, code: int = NORMAL_CLOSURE, reason: str | None = None) -> None: ...

    def abort(self) -> None: ...
