"""Who hears a session: the client that controls it, the replay buffer every message goes
through, and the reconnect grace while no client is attached.

The run sends to its hub, never to a client: a client that goes away detaches, and the program
runs on for the grace, its messages kept in the buffer for a client that resumes. Messages reach
the controller in seq order under the hub's lock, and a resuming client is sent what it missed
under the same lock before it joins: nothing twice, nothing lost between replay and live.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from .errors import EngineError, Kind
from .protocol import encode
from .replay import ReplayBuffer
from .subscriber import NORMAL_CLOSURE, Subscriber
from .watchers import LIVE, REVOKED, Watcher

log = logging.getLogger(__name__)


class Mirror(Protocol):
    """A copy of the hubs' buffers kept elsewhere (redis_replay.ReplayMirror): appended and
    ended never block; started and stopped by the worker."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def appended(self, session_id: str, text: str) -> None: ...

    def ended(self, session_id: str) -> None: ...


class Callbacks:
    """A client that cannot resume (Piston's connect), as plain callables: a send that fails
    ends its session at once, whatever the grace."""

    resumable = False

    def __init__(
        self,
        emit: Callable[[dict], None],
        close: Callable[[], None],
        abort: Callable[[], None] = lambda: None,
    ) -> None:
        self._emit, self._close, self._abort = emit, close, abort

    def send_text(self, text: str) -> None:
        message = json.loads(text)
        message.pop("seq", None)
        self._emit(message)

    def close(self, code: int = NORMAL_CLOSURE, reason: str | None = None) -> None:
        self._close()

    def abort(self) -> None:
        self._abort()


class SessionHub:
    def __init__(
        self,
        session_id: str,
        buffer_limit: int,
        grace: float,
        on_gone: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        max_watchers: int = 16,
    ) -> None:
        self.session_id = session_id
        self.max_watchers = max_watchers
        self._watchers: list[Watcher] = []
        self._clock = clock
        self.grace = grace
        # Ends the session client_disconnected: no client came back within the grace.
        self.on_gone = on_gone
        # Told each message's text as numbered, and the end (a copy of the buffer: redis_replay).
        self.on_text: Callable[[str], None] = lambda text: None
        self.on_end: Callable[[], None] = lambda: None
        self.buffer = ReplayBuffer(buffer_limit)
        # Reentrant: a send that fails inside publish detaches its client under the lock.
        self._lock = threading.RLock()
        self._controller: Subscriber | None = None
        # The last client that controlled the session, attached or not: its normal close ends it.
        self._last: Subscriber | None = None
        self._back: threading.Event | None = None
        self._grace_thread: threading.Thread | None = None
        self.ended_at: float | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def attached(self) -> bool:
        return self._controller is not None

    # --- the run's side ------------------------------------------------------------------
    def publish(self, message: dict) -> None:
        """Number the message, keep it for replay and send it to the controller, if any. Never
        raises: a client that cannot be sent to is detached."""
        with self._lock:
            text = self.buffer.append(message)
            self.on_text(text)
            if self._controller is not None:
                self._send(self._controller, text)
            for watcher in self._watchers:
                watcher.offer(text, self.buffer.last)

    def close(self) -> None:
        """The run sent its final state: close the controller; later clients get a replay."""
        with self._lock:
            self.ended_at = self._clock()
            # Nothing left to end; and the hub, kept for the grace, must not keep the run.
            self.on_gone = lambda: None
            controller, self._controller = self._controller, None
            self._cancel_grace()
            for watcher in self._watchers:
                watcher.finish()
            self.on_end()
        if controller is not None:
            controller.close(NORMAL_CLOSURE, None)

    def abort(self) -> None:
        """Cut the controller off without the lock, which a send to it may hold for ever."""
        controller = self._controller
        if controller is not None:
            controller.abort()

    # --- the clients' side ---------------------------------------------------------------
    def attach(
        self, client: Subscriber, after: int = 0, takeover: bool = False, resumed: bool = False
    ) -> None:
        """Make `client` the controller: send it every message after seq `after` still held (a
        gap first when some are lost), then, when it resumes, `live` and the watchers' count,
        then everything live. A session that has ended replays to its final state, then closes.
        EngineError when another client controls it and this one does not take over, or `after`
        is a seq never sent."""
        with self._lock:
            try:
                gap, texts = self.buffer.since(after)
            except ValueError as exc:
                raise EngineError(Kind.INVALID_REQUEST, f"cannot resume: {exc}") from None
            if self._controller is not None:
                if not takeover:
                    raise EngineError(
                        Kind.ALREADY_ATTACHED,
                        f"session {self.session_id} already has a client attached (resume with takeover=1)",
                    )
                previous, self._controller = self._controller, None
                previous.close(Kind.TAKEN_OVER.close_code, "another client took this session over")
            self._last = client
            try:
                if gap is not None:
                    client.send_text(encode(gap.message()))
                for text in texts:
                    client.send_text(text)
                if resumed:
                    client.send_text(LIVE)
                    if self._watchers and not self.ended:
                        client.send_text(self._count_text())
            except Exception:  # noqa: BLE001 - any failure to send means the client is gone
                self._start_grace()
                raise
            if self.ended:
                client.close(NORMAL_CLOSURE, None)
                return
            self._controller = client
            self._cancel_grace()

    def detach(self, client: Subscriber) -> None:
        """The client went away without closing, or asked to detach: the grace begins."""
        with self._lock:
            if self._controller is client:
                self._controller = None
                self._start_grace(getattr(client, "resumable", True))

    def leave(self, client: Subscriber) -> None:
        """The client closed normally: unless another took over, the session ends now."""
        with self._lock:
            if self._last is not client or self.ended:
                return
            self._controller = None
            self._cancel_grace()
        self.on_gone()

    def stop(self) -> None:
        """Stop the grace's thread, if one waits, and cut the watchers still there (the engine
        forgets the hub after this)."""
        with self._lock:
            self._cancel_grace()
            thread = self._grace_thread
            watchers, self._watchers = self._watchers, []
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        for watcher in watchers:
            watcher.abort()
        for watcher in watchers:
            watcher.join(1.0)

    # --- watchers ------------------------------------------------------------------------
    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def watch(self, client: Subscriber, from_start: bool = True) -> Watcher:
        """Add a read-only client: what the buffer holds (from_start), `live`, then everything
        live, by its own thread (see watchers). EngineError past max_watchers."""
        with self._lock:
            if len(self._watchers) >= self.max_watchers and not self.ended:
                raise EngineError(
                    Kind.TOO_MANY_WATCHERS,
                    f"session {self.session_id} has {self.max_watchers} watchers, the most it may have",
                )
            watcher = Watcher(client, self.buffer.limit, self._catch_up, f"se-watch-{self.session_id}")
            # The replay is the buffer's own texts: it does not count against the watcher's bound.
            watcher.restart_from_buffer([*(self._held_since(0) if from_start else []), (None, LIVE)])
            watcher.last_seq = 0 if from_start else self.buffer.last
            watcher.live_after = self.buffer.last
            watcher.start()
            if self.ended:
                watcher.finish()
                return watcher
            self._watchers.append(watcher)
            self._count_changed()
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        """The watcher went away (or was closed): it no longer counts."""
        watcher.stop()
        with self._lock:
            if watcher not in self._watchers:
                return
            self._watchers.remove(watcher)
            if not self.ended:
                self._count_changed()

    def revoke(self) -> None:
        """Close every watcher at once (their links were revoked)."""
        with self._lock:
            watchers, self._watchers = self._watchers, []
            if watchers and not self.ended:
                self._count_changed()
        for watcher in watchers:
            watcher.finish(Kind.INVALID_TOKEN.close_code, REVOKED, now=True)

    def _count_text(self) -> str:
        return encode({"type": "watchers", "count": len(self._watchers)})

    def _count_changed(self) -> None:
        """Under the lock: everyone attached hears the new count (no seq: it is not the run's)."""
        text = self._count_text()
        if self._controller is not None:
            self._send(self._controller, text)
        for watcher in self._watchers:
            watcher.offer(text)

    def _held_since(self, after: int) -> list[tuple[int | None, str]]:
        """Under the lock: the messages after seq `after` still held, a gap first if lost."""
        gap, texts = self.buffer.since(after)
        first = after + 1 if gap is None else gap.last + 1
        held: list[tuple[int | None, str]] = [(None, encode(gap.message()))] if gap is not None else []
        return held + [(first + n, text) for n, text in enumerate(texts)]

    def _catch_up(self, watcher: Watcher) -> None:
        """A watcher that fell behind its bound goes on from what the buffer holds."""
        with self._lock:
            held = self._held_since(watcher.last_seq)
            if not watcher.live:
                # Dropped with the queue: it goes where the replay ended, before the first live one.
                live = (n for n, (seq, _) in enumerate(held) if seq is not None and seq > watcher.live_after)
                held.insert(next(live, len(held)), (None, LIVE))
            if self._watchers and not self.ended:
                held.append((None, self._count_text()))
            watcher.restart_from_buffer(held)

    # --- the grace -----------------------------------------------------------------------
    def _send(self, client: Subscriber, text: str) -> None:
        try:
            client.send_text(text)
        except Exception as exc:  # noqa: BLE001 - a client that cannot be sent to is gone
            log.info("session %s: its client went away (%s); detached", self.session_id, exc)
            self.detach(client)

    def _start_grace(self, resumable: bool = True) -> None:
        """Under the lock: end the session after the grace unless a client attaches first."""
        if self.ended or self._back is not None:
            return
        if self.grace <= 0 or not resumable:
            self.on_gone()
            return
        back = self._back = threading.Event()
        self._grace_thread = threading.Thread(
            target=self._wait_grace, args=(back,), name=f"se-grace-{self.session_id}", daemon=True
        )
        self._grace_thread.start()

    def _cancel_grace(self) -> None:
        if self._back is not None:
            self._back.set()
            self._back = None

    def _wait_grace(self, back: threading.Event) -> None:
        if back.wait(self.grace):
            return
        with self._lock:
            if self._back is not back:
                return
            self._back = None
        log.info("session %s: no client came back within %.0f s", self.session_id, self.grace)
        self.on_gone()


class Hubs:
    """The hubs of the sessions this worker runs, and of those that ended within the grace (a
    client that comes back after the end still gets the replay up to the final state)."""

    def __init__(
        self,
        buffer_limit: int,
        grace: float,
        max_watchers: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buffer_limit = buffer_limit
        self.grace = grace
        self.max_watchers = max_watchers
        self._clock = clock
        self._hubs: dict[str, SessionHub] = {}
        self._lock = threading.Lock()
        # Told when a session's hub opens and when it is forgotten: other workers find it so.
        self.on_open: Callable[[str], None] = lambda session_id: None
        self.on_forget: Callable[[str], None] = lambda session_id: None
        # Where each hub's messages are copied, if anywhere (see SessionHub.on_text).
        self.mirror: Mirror | None = None

    def open(self, session_id: str) -> SessionHub:
        hub = SessionHub(
            session_id, self.buffer_limit, self.grace, clock=self._clock, max_watchers=self.max_watchers
        )
        mirror = self.mirror
        if mirror is not None:
            hub.on_text = lambda text: mirror.appended(session_id, text)
            hub.on_end = lambda: mirror.ended(session_id)
        with self._lock:
            self._forget_expired()
            self._hubs[session_id] = hub
        self.on_open(session_id)
        return hub

    def get(self, session_id: str) -> SessionHub | None:
        with self._lock:
            self._forget_expired()
            return self._hubs.get(session_id)

    def drop(self, session_id: str) -> None:
        with self._lock:
            hub = self._hubs.pop(session_id, None)
        if hub is not None:
            hub.stop()
            self.on_forget(session_id)

    def prune(self) -> None:
        """Forget the hubs whose grace after the end is over (also done on every open and get)."""
        with self._lock:
            self._forget_expired()

    def clear(self) -> None:
        with self._lock:
            hubs, self._hubs = self._hubs, {}
        for session_id, hub in hubs.items():
            hub.stop()
            self.on_forget(session_id)

    def _forget_expired(self) -> None:
        now = self._clock()
        for session_id, hub in list(self._hubs.items()):
            if hub.ended_at is not None and now - hub.ended_at >= self.grace:
                del self._hubs[session_id]
                hub.stop()
                self.on_forget(session_id)
