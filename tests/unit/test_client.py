"""`sandbox-engine run`'s choice of language: the server's GET /languages, over real HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from fakes import FakeExecutor
from flask import Flask
from werkzeug.serving import make_server

from sandbox_engine import create_app
from sandbox_engine.client import ClientError, language_of
from sandbox_engine.config import Config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    """The app on a free local port, in a thread, for as long as the block runs; its URL."""
    http = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll: shutdown() waits for the serving loop to look.
    thread = threading.Thread(target=http.serve_forever, args=(0.02,), name="http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}"
    finally:
        http.shutdown()
        thread.join()
        http.server_close()


@pytest.fixture
def server(tmp_path, executor: FakeExecutor) -> Iterator[str]:
    app = create_app(Config(state_dir=str(tmp_path / "state")), executor=executor)
    try:
        with serving(app) as url:
            yield url
    finally:
        app.extensions["sandbox_engine"].shutdown()


def other_server(body: dict, status: int = 200) -> Flask:
    """A server whose GET /languages answers this, as one of another version might."""
    app = Flask("other")
    app.get("/languages")(lambda: (body, status))
    return app


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("greet.py", "python"),
        ("src/Main.JAVA", "java"),
        ("app.mjs", "javascript"),
        ("prog.cc", "cpp"),
        ("run.bash", "bash"),
        ("dir.v2/main.hs", "haskell"),
    ],
)
def test_a_file_is_in_the_language_its_extension_names_on_the_server(server, path, language):
    assert language_of(server, path) == language


def test_an_extension_no_language_takes_asks_for_lang_and_names_those_known(server):
    with pytest.raises(ClientError) as error:
        language_of(server, "prog.cob")
    message = str(error.value)
    assert "no language of" in message and ".cob files" in message and message.endswith("give --lang")
    assert ".py" in message and ".hs" in message and "\n" not in message


def test_a_file_without_an_extension_asks_for_lang_without_asking_the_server():
    with pytest.raises(ClientError, match="without an extension; give --lang"):
        language_of(f"http://127.0.0.1:{free_port()}", "Makefile")


def test_an_unreachable_server_is_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ClientError, match=f"^cannot reach {url}: ConnectionError$"):
        language_of(url, "greet.py")


def test_a_server_that_does_not_list_extensions_asks_for_lang():
    with serving(other_server({"languages": [{"id": "python", "name": "Python", "version": "3.11"}]})) as url:
        with pytest.raises(ClientError, match=r"does not say which languages take \.py files; give --lang"):
            language_of(url, "greet.py")


def test_a_server_that_refuses_says_why():
    refusal = {"error": {"code": "runtime_unavailable", "message": "Docker does not answer"}}
    with serving(other_server(refusal, 503)) as url:
        with pytest.raises(
            ClientError, match="^the server did not list its languages: Docker does not answer; give --lang$"
        ):
            language_of(url, "greet.py")
