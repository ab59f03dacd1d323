"""A session's replay buffer: its recent messages, each numbered with its seq, bounded in bytes."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

from .protocol import encode


@dataclass(frozen=True)
class Gap:
    """Messages a resuming client asked for that the buffer no longer holds: seqs first..last."""

    first: int
    last: int

    def message(self) -> dict:
        return {"type": "gap", "from": self.first, "to": self.last}


class ReplayBuffer:
    """Numbers every message of a session (1, 2, 3, ...) and keeps the newest of them, as their
    JSON text, within `limit` bytes; the newest one is always kept, whatever its size."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.last = 0
        self._held: deque[tuple[int, str, int]] = deque()
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def append(self, message: dict) -> str:
        """Number the message and keep it; returns its text as every client receives it."""
        self.last += 1
        text = encode({**message, "seq": self.last})
        size = len(text.encode("utf-8", "surrogatepass"))
        self._held.append((self.last, text, size))
        self._size += size
        while self._size > self.limit and len(self._held) > 1:
            self._size -= self._held.popleft()[2]
        return text

    def since(self, after: int) -> tuple[Gap | None, list[str]]:
        """What a client that saw every message up to seq `after` has missed: the seqs lost to the
        bound, if any, and the texts still held. ValueError for a seq never sent."""
        if not 0 <= after <= self.last:
            raise ValueError(f"seq {after} was never sent (the last is {self.last})")
        first_held = self._held[0][0] if self._held else self.last + 1
        gap = Gap(after + 1, first_held - 1) if first_held > after + 1 else None
        return gap, [text for seq, text, _ in self._held if seq > after]


def stored_since(texts: list[str], after: int) -> tuple[Gap | None, list[str]]:
    """As ReplayBuffer.since, from a buffer's texts as kept elsewhere (see redis_replay)."""
    seqs = [json.loads(text)["seq"] for text in texts]
    last = seqs[-1] if seqs else 0
    if not 0 <= after <= last:
        raise ValueError(f"seq {after} was never sent (the last is {last})")
    first_held = seqs[0] if seqs else last + 1
    gap = Gap(after + 1, first_held - 1) if first_held > after + 1 else None
    return gap, [text for seq, text in zip(seqs, texts, strict=True) if seq > after]
