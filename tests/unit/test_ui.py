"""The IDE page and its bundle as a browser gets them: compressed copies, cache headers, links."""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator

import pytest
from fakes import FakeExecutor
from flask import Flask
from flask.testing import FlaskClient

from sandbox_engine import create_app
from sandbox_engine.config import Config
from sandbox_engine.worker import EXTENSION

SCRIPT = b"export const greeting = 'hello';\n" * 50
IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
def app(tmp_path, executor: FakeExecutor) -> Iterator[Flask]:
    """The app over a static folder holding a small bundle as `npm run build` writes it."""
    app = create_app(Config(state_dir=str(tmp_path / "state"), idle_timeout=45), executor=executor)
    dist = tmp_path / "static" / "dist"
    (dist / "chunks").mkdir(parents=True)
    for path, data in (
        ("ide.js", SCRIPT),
        ("ide.css", b"body { margin: 0 }\n"),
        ("chunks/go-AB12.js", SCRIPT),
    ):
        (dist / path).write_bytes(data)
        (dist / (path + ".gz")).write_bytes(gzip.compress(data))
        # Not real brotli: which copy is sent is what counts here, and the browser test decodes.
        (dist / (path + ".br")).write_bytes(b"brotli:" + data)
    (dist / "ide.js.map").write_text("{}")
    app.static_folder = str(tmp_path / "static")
    yield app
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_the_page_links_its_bundle_by_versioned_urls(client):
    page = client.get("/").get_data(as_text=True)
    script = re.search(r'<script type="module" nonce="[^"]+" src="(/static/dist/ide\.js\?v=\d+)">', page)
    style = re.search(r'<link rel="stylesheet" href="(/static/dist/ide\.css\?v=\d+)">', page)
    assert script and style, page
    assert client.get(script.group(1), headers={"Accept-Encoding": "gzip"}).status_code == 200
    assert client.get(style.group(1), headers={"Accept-Encoding": "gzip"}).status_code == 200


@pytest.mark.parametrize(
    ("accept", "encoding", "body"),
    [
        ("gzip, deflate, br", "br", b"brotli:" + SCRIPT),
        ("br;q=1.0, gzip;q=0.8", "br", b"brotli:" + SCRIPT),
        ("gzip, deflate", "gzip", gzip.compress(SCRIPT)),
        ("br;q=0, gzip", "gzip", gzip.compress(SCRIPT)),
        ("identity", None, SCRIPT),
        (None, None, SCRIPT),
    ],
)
def test_the_script_comes_compressed_as_the_browser_accepts(client, accept, encoding, body):
    headers = {"Accept-Encoding": accept} if accept else {}
    response = client.get("/static/dist/ide.js?v=123", headers=headers)
    assert response.status_code == 200
    assert response.headers.get("Content-Encoding") == encoding
    assert response.mimetype in ("text/javascript", "application/javascript")
    data = response.get_data()
    if encoding == "gzip":
        data = gzip.decompress(data)
        body = SCRIPT
    assert data == body
    assert response.headers["Vary"] == "Accept-Encoding"
    assert response.headers["Cache-Control"] == IMMUTABLE


def test_versioned_urls_and_hashed_chunks_are_immutable_others_revalidate(client):
    gzip_only = {"Accept-Encoding": "gzip"}
    for url in ("/static/dist/ide.css?v=1", "/static/dist/chunks/go-AB12.js"):
        response = client.get(url, headers=gzip_only)
        assert (response.status_code, response.headers["Cache-Control"]) == (200, IMMUTABLE), url
    assert client.get("/static/dist/ide.css?v=1", headers=gzip_only).mimetype == "text/css"
    for url in ("/static/dist/ide.js", "/static/dist/ide.js.map"):
        response = client.get(url, headers=gzip_only)
        assert (response.status_code, response.headers["Cache-Control"]) == (200, "no-cache"), url
    assert client.get("/static/dist/ide.js.map").headers.get("Content-Encoding") is None


def test_a_revalidation_of_an_unchanged_file_is_304(client):
    first = client.get("/static/dist/ide.js", headers={"Accept-Encoding": "gzip"})
    again = client.get(
        "/static/dist/ide.js", headers={"Accept-Encoding": "gzip", "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304


def test_missing_files_and_paths_outside_the_bundle_are_404(client, app):
    with open(os.path.join(app.static_folder, "secret.txt"), "w") as f:
        f.write("not part of the bundle")
    for url in ("/static/dist/nope.js?v=1", "/static/dist/../secret.txt", "/static/dist/%2e%2e/secret.txt"):
        assert client.get(url, headers={"Accept-Encoding": "gzip, br"}).status_code == 404, url


def test_the_page_carries_the_servers_timeouts(tmp_path, executor):
    config = Config(state_dir=str(tmp_path / "state"), idle_timeout=45, input_timeout=90)
    app = create_app(config, executor=executor)
    try:
        page = app.test_client().get("/").get_data(as_text=True)
        assert 'data-idle-timeout="45" data-input-timeout="90"' in page
    finally:
        app.extensions[EXTENSION].shutdown()
