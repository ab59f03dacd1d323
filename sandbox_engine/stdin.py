"""A program's stdin as a run feeds it: a bounded queue, and a writer thread of its own.

A program that prints without reading fills its stdin pipe, and a write to it then blocks until
the program reads. Made from the thread that carries output, or from the client's handler, such
a write stalls everything behind it: so only this writer ever waits on the program's stdin. What
waits for it is bounded, so a client cannot grow the server's memory by sending faster than the
program reads; kills and signals never queue here, so they go ahead of any input.
"""

from __future__ import annotations

import collections
import logging
import threading

from .executor import ExecutorError, Sandbox

log = logging.getLogger(__name__)


class InputOverflow(Exception):
    """More input is waiting for the program than the limit allows."""


class Stdin:
    def __init__(self, sandbox: Sandbox, limit: int, held: bool) -> None:
        """`limit`: bytes that may wait for the program; `held`: nothing is written until
        release() (the compile stage runs, or a terminal is not ready for input yet)."""
        self.sandbox = sandbox
        self.limit = limit
        self._held = held
        self._queue: collections.deque[bytes | None] = collections.deque()
        # Bytes queued or being written now.
        self._waiting = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._write_all, name=name, daemon=True)
        self._thread.start()

    def put(self, data: bytes | None) -> None:
        """Queue input (None: end of input). InputOverflow when it would pass the limit."""
        size = len(data) if data is not None else 0
        with self._cond:
            if self._closed:
                return
            if self._waiting + size > self.limit:
                raise InputOverflow(
                    f"more than {self.limit} bytes of input are waiting for the program, which is "
                    "not reading them"
                )
            self._queue.append(data)
            self._waiting += size
            self._cond.notify()

    def release(self) -> None:
        """Let held input go to the program, in the order it came."""
        with self._cond:
            self._held = False
            self._cond.notify()

    def close(self) -> None:
        """Write nothing more. A write under way ends when the sandbox's streams close."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify()

    def join(self, timeout: float) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _write_all(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (self._held or not self._queue):
                    self._cond.wait()
                if self._closed:
                    return
                data = self._queue.popleft()
            try:
                if data is None:
                    self.sandbox.close_stdin()
                else:
                    self.sandbox.write(data)
            except ExecutorError as exc:
                # The sandbox is going; its end is the pump's to report.
                log.info("input to %s lost: %s", self.sandbox.session_id, exc)
            finally:
                with self._cond:
                    self._waiting -= len(data) if data is not None else 0
