"""Piston v2's interactive WebSocket, /api/v2/connect, on our interactive sessions.

The client sends `init` (Piston's /execute fields), then `data` (stdin) and `signal` messages;
the server sends `runtime`, then per stage `stage`, `data` (stdout, stderr) and `exit`, and
closes with 4999 once the program is over. Anything Piston refuses gets an `error` message and
the close code Piston gives it (api/src/api/v2.js): 4000 a second init, 4001 no init in time,
4002 after an error message, 4003 input before init, 4004 a stream other than stdin, 4005 an
unknown signal.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from . import piston
from .auth import current_key
from .errors import EngineError, Kind
from .executor import ExecutorError
from .hub import Callbacks
from .piston import PREFIX, available_runtimes, error_answer, server_limits
from .piston_answers import ConnectStages
from .piston_protocol import Job, PistonError, parse_job
from .protocol import SIGNALS, Input, ProtocolError, Signal, parse_json, shown
from .session import SessionRun
from .states import Reason
from .worker import current_engine
from .ws import LINGER, Channel, WholeFrameSocket, origin_allowed

log = logging.getLogger(__name__)

bp = Blueprint("piston_ws", __name__, url_prefix=PREFIX)
# Refusals before the upgrade are answered as Piston's HTTP API answers its errors.
bp.register_error_handler(EngineError, piston.engine_error)
bp.register_error_handler(Exception, piston.unexpected)
sock = Sock()
# How long a client has, once connected, to send its init. Piston gives one second; a few more
# cost nothing and spare a client on a slow link.
INIT_TIMEOUT = 5.0


class Refused(Exception):
    """The connection ends here: its close code and reason, after an `error` message if any."""

    def __init__(self, code: int, reason: str, error: str | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.error = code, reason, error


def notified(message: str) -> Refused:
    # A close reason holds at most 123 bytes, so Piston tells the error first, then closes.
    return Refused(4002, "Notified Error", message)


@bp.before_request
def refuse_before_upgrade():
    origin = request.headers.get("Origin")
    if origin and not origin_allowed(origin):
        raise EngineError(Kind.FORBIDDEN, f"origin {shown(origin)} may not connect here")
    for key in ("gunicorn.socket", "werkzeug.socket"):
        if key in request.environ:
            request.environ[key] = WholeFrameSocket(request.environ[key])


@bp.get("/connect")
def without_upgrade():
    return error_answer(426, "this is a WebSocket endpoint: connect with Upgrade: websocket")


@sock.route("/connect", bp=bp)
def connect(ws) -> None:
    serve(ws)


def serve(ws) -> None:
    """One client's connection, from its init to the close (flask-sock's route returns None, so
    this is the handler the tests call)."""
    channel = Channel(ws)
    run = None
    try:
        job = _init(ws)
        run, stages = _start(job, channel)
        _serve(ws, run, stages, channel)
    except Refused as refused:
        _refuse(channel, refused)
    except ConnectionClosed:
        pass  # we closed it after the program's end, or the client went away
    except Exception:
        # Never out of the handler: Flask would write an HTTP 500 into the WebSocket.
        log.exception("Piston's connect failed")
        _refuse(channel, notified("internal error"))
    if run is not None and not run.finished and run.outcome is None:
        run.client_gone()


def _refuse(channel: Channel, refused: Refused) -> None:
    try:
        if refused.error is not None:
            channel.send({"type": "error", "message": refused.error})
    except (ConnectionClosed, OSError):
        return  # the client is gone, or the run's end closed it first
    channel.close(refused.code, refused.reason)
    channel.linger(LINGER)


def _init(ws) -> Job:
    """Wait for the client's init; other messages before it are refused or, as Piston does,
    ignored."""
    deadline = time.monotonic() + INIT_TIMEOUT
    while True:
        raw = ws.receive(timeout=max(0.0, deadline - time.monotonic()))
        if raw is None:
            raise Refused(4001, "Initialization Timeout")
        message = _message(raw)
        kind = message.get("type")
        if kind in ("data", "signal"):
            raise Refused(4003, "Not yet initialized")
        if kind == "init":
            try:
                job = parse_job(message, available_runtimes(), server_limits())
            except PistonError as exc:
                raise notified(exc.message) from None
            if len(job.files) > 1:
                raise notified("connect runs one file: an interactive session takes no other files")
            if job.args:
                raise notified("connect takes no args: an interactive session runs without arguments")
            return job


def _start(job: Job, channel: Channel) -> tuple[SessionRun, ConnectStages]:
    """Create the session, tell the client its runtime, and start the program."""
    engine = current_engine()
    stages = ConnectStages(job.run_timeout, job.compile_timeout)

    def emit(message: dict) -> None:
        for translated in stages.translate(message):
            channel.send(translated)

    try:
        session_id = engine.create_session(
            job.runtime.id, job.files[0].content.decode("utf-8"), key=current_key()
        )
    except EngineError as exc:
        raise notified(exc.message) from None
    channel.send({"type": "runtime", "language": job.runtime.language, "version": job.runtime.version})
    try:
        client = Callbacks(emit, lambda: channel.close(4999, "Job Completed"), channel.abort)
        run = engine.attach(session_id, client)
    except EngineError as exc:
        _forget(session_id)
        raise notified(exc.message) from None
    if job.stdin:
        # Piston leaves init's stdin out of an interactive run; a client that sends it means it.
        _act(run, Input(job.stdin.encode("utf-8")), channel)
    return run, stages


def _forget(session_id: str) -> None:
    """End a session whose program could not start, rather than leave it to expire."""
    try:
        current_engine().delete(session_id, current_key())
    except (EngineError, ExecutorError) as exc:
        log.warning("session %s is left to the reaper: %s", session_id, exc)


def _serve(ws, run: SessionRun, stages: ConnectStages, channel: Channel) -> None:
    """Hand the client's messages to the run until it is over; end a stage that passes the
    timeout the client asked for, as Piston's own timeouts end it."""
    timed_out = False
    while not run.finished:
        if not timed_out and stages.expired():
            run.end(Reason.TIMEOUT)
            timed_out = True
        raw = ws.receive(timeout=None if timed_out else stages.wait())
        if raw is None:
            continue
        message = _message(raw)
        kind = message.get("type")
        if kind == "init":
            raise Refused(4000, "Already Initialized")
        if kind == "data":
            if message.get("stream") != "stdin":
                raise Refused(4004, "Can only write to stdin")
            data = message.get("data")
            if not isinstance(data, str):
                raise notified("data must be a string")
            try:
                _act(run, Input(data.encode("utf-8")), channel)
            except UnicodeEncodeError:
                raise notified("data holds half a character (a lone surrogate)") from None
        elif kind == "signal":
            if message.get("signal") not in SIGNALS:
                raise Refused(4005, "Invalid signal")
            _act(run, Signal(message["signal"]), channel)


def _act(run: SessionRun, message: Input | Signal, channel: Channel) -> None:
    try:
        run.handle(message)
    except ProtocolError as exc:
        # Signals faster than the server takes them: told, and the program carries on.
        channel.send({"type": "error", "message": str(exc)})
    except EngineError as exc:
        raise notified(exc.message) from None


def _message(raw: str | bytes) -> dict:
    try:
        message = parse_json(raw)
    except ProtocolError as exc:
        raise notified(f"the message is {exc}") from None
    if not isinstance(message, dict):
        raise notified("a message must be a JSON object with a 'type'")
    return message
