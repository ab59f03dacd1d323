"""The CLI's side of a dropped connection (follow): reconnects that resume, take over their own
session, watch again, and hand on every message once; over scripted connections."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from sandbox_engine import follow
from sandbox_engine.follow import Follower, Lost

URL = "ws://server/ws/session/s"
DROP = object()


def out(seq: int) -> dict:
    return {"type": "stdout", "data": f"line {seq}\n", "seq": seq}


class Scripted:
    """One connection: what it receives (DROP: the connection is lost without a close frame),
    what it is sent."""

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.sent: list[dict] = []
        self.dropped = False

    def recv(self) -> str:
        item = self.script.pop(0)
        if item is DROP:
            self.dropped = True
            raise ConnectionClosedError(None, None)
        if isinstance(item, Close):
            raise ConnectionClosedError(item, None)
        return json.dumps(item)

    def send(self, text: str) -> None:
        if self.dropped:
            raise ConnectionClosedError(None, None)
        self.sent.append(json.loads(text))

    def close(self) -> None:
        pass


def refusal(status: int) -> InvalidStatus:
    body = json.dumps({"error": {"code": "x", "message": f"refused {status}"}}).encode()
    return InvalidStatus(Response(status, "", Headers(), body))


class Connector:
    """Hands out the scripted connections (or refusals) in order, and records each URL."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.urls: list[str] = []

    def __call__(self, url: str, **kwargs) -> Scripted:
        self.urls.append(url)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def query(self, n: int) -> dict:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.urls[n]).query).items()}


@pytest.fixture(autouse=True)
def no_waits(monkeypatch):
    monkeypatch.setattr(follow, "BACKOFF", (0.0,))


def drain(stream: Follower, until: str = "state") -> list[dict]:
    seen = []
    while not seen or seen[-1]["type"] != until:
        seen.append(stream.next())
    return seen


FINAL = {"type": "state", "state": "FINISHED", "exitCode": 0, "reason": "exited", "signal": None, "seq": 4}


def test_a_drop_resumes_from_the_last_seq_taking_over_on_a_409_and_sends_what_waited():
    first = Scripted([out(1), out(2), DROP])
    second = Scripted([out(3), {"type": "live"}, FINAL])
    connector = Connector(first, refusal(409), second)
    notices: list[str] = []
    stream = Follower(URL, on_notice=notices.append, connector=connector)
    assert [stream.next(), stream.next()] == [out(1), out(2)]
    first.dropped = True
    stream.send({"type": "input", "data": "typed while away\n"})
    assert drain(stream) == [out(3), {"type": "live"}, FINAL]
    assert connector.query(1) == {"resume": "2"}
    assert connector.query(2) == {"resume": "2", "takeover": "1"}
    assert second.sent == [{"type": "input", "data": "typed while away\n"}]
    assert notices == ["the connection was lost; reconnecting...", "reconnected"]


def test_a_watcher_watches_again_from_the_start_and_skips_what_it_saw():
    first = Scripted([{"type": "live"}, out(1), out(2), DROP])
    # The buffer lost seq 3 meanwhile: the jump from 2 to 4 is said.
    second = Scripted([out(2), FINAL, DROP])
    connector = Connector(first, second)
    notices: list[str] = []
    stream = Follower(
        f"{URL}/watch?token=t&from=now", watching=True, on_notice=notices.append, connector=connector
    )
    seen = drain(stream)
    assert seen == [{"type": "live"}, out(1), out(2), FINAL]
    assert connector.query(1) == {"token": "t", "from": "start"}
    assert "1 messages were lost while disconnected" in notices


def test_a_close_with_a_reason_is_lost_in_those_words():
    stream = Follower(
        URL, connector=Connector(Scripted([out(1), Close(4408, "another client took this session over")]))
    )
    stream.next()
    with pytest.raises(Lost, match="another client took this session over"):
        stream.next()


def test_a_refusal_other_than_a_busy_one_ends_it():
    connector = Connector(Scripted([DROP]), refusal(410))
    stream = Follower(URL, connector=connector)
    with pytest.raises(Lost, match="refused 410"):
        stream.next()


def test_a_gap_is_said_and_not_handed_on():
    notices: list[str] = []
    script = [{"type": "gap", "from": 1, "to": 5}, out(6)]
    stream = Follower(URL, on_notice=notices.append, connector=Connector(Scripted(script)))
    assert stream.next() == out(6)
    assert notices == ["5 messages were lost while disconnected"]


@pytest.mark.parametrize("link", ["http://host/session/s", "ftp://host/watch/s?token=t", "host/watch/s"])
def test_watch_takes_only_a_watch_link(link):
    from sandbox_engine.client import ClientError, watch

    with pytest.raises(ClientError, match="is not a watch link"):
        watch(link)
