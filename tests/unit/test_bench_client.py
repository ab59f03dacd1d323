"""The benchmark's client: POST /session on a keep-alive connection of its own."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from sandbox_engine.bench_client import Client


class _Sessions(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A keep-alive answer, then the connection closed all the same: as a server whose keep-alive
    # ran out between two of the client's requests.
    drop_after_answer = True
    status = 201
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"body": body, "type": self.headers["Content-Type"], "path": self.path})
        answer = json.dumps({"sessionId": f"s{len(self.seen)}"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.close_connection = self.drop_after_answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    _Sessions.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sessions)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Sessions
    httpd.shutdown()
    httpd.server_close()


def test_each_create_is_one_post_even_after_the_server_closed_the_connection(server):
    url, handler = server
    client = Client(url + "/")
    connections = []
    connect = client._connect
    client._connect = lambda: connections.append(connect()) or connections[-1]
    assert [client.create("print(1)"), client.create("print(2)", tty=True)] == ["s1", "s2"]
    assert len(connections) == 2  # the second POST found its connection closed, and made another
    assert [seen["body"] for seen in handler.seen] == [
        {"language": "python", "code": "print(1)"},
        {"language": "python", "code": "print(2)", "tty": True},
    ]
    assert {seen["type"] for seen in handler.seen} == {"application/json"}
    assert {seen["path"] for seen in handler.seen} == {"/session"}


def test_an_error_answer_is_an_error(server, monkeypatch):
    url, handler = server
    monkeypatch.setattr(handler, "status", 429)
    with pytest.raises(RuntimeError, match="429"):
        Client(url).create("print(1)")
