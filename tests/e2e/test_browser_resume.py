"""The IDE through a dropped network, a reload and a share link: a real browser (test_browser's
chromium) against a real `sandbox-engine serve` with two workers on the real Docker daemon, its
connection through a TCP proxy the tests cut."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from harness import Server, shutdown, start_server
from tcpproxy import TcpProxy
from test_browser import (
    browser,
    ide_page,
    playwright,
    sent_messages,
    terminal_text,
    wait_ready,
    wait_terminal,
)

try:
    from playwright.sync_api import Browser, Page, WebSocketRoute, expect
except ImportError:  # test_browser's fixtures say so
    pass

pytestmark = [pytest.mark.docker, pytest.mark.slow]
__all__ = ["browser", "playwright"]

LINES = 80
# Numbered lines over about four seconds: a cut lands mid-run.
COUNTER = (
    f"import time\nfor i in range({LINES}):\n    print(f'line {{i}}', flush=True)\n    time.sleep(0.05)\n"
)
# Every status the page shows, in order, from the moment this is evaluated.
RECORD_STATUSES = """() => { const text = document.getElementById("status-text");
  window.statuses = [text.textContent];
  new MutationObserver(() => window.statuses.push(text.textContent))
    .observe(text, {childList: true, characterData: true, subtree: true}); }"""


@pytest.fixture(scope="module")
def resume_server(docker_client, tmp_path_factory) -> Iterator[Server]:
    server = start_server(docker_client, tmp_path_factory, workers=2, idle_timeout=30, run_timeout=90)
    yield server
    shutdown(server)


@pytest.fixture
def proxy(resume_server: Server) -> Iterator[TcpProxy]:
    proxy = TcpProxy(urlsplit(resume_server.url).port)
    yield proxy
    proxy.close()


@pytest.fixture
def proxied_page(browser: Browser, resume_server: Server, proxy: TcpProxy, request) -> Iterator[Page]:
    """The IDE loaded through the proxy: its WebSockets (same origin) go through it too."""
    through = dataclasses.replace(resume_server, url=f"http://127.0.0.1:{proxy.port}")
    with ide_page(browser, through, request, viewport={"width": 1280, "height": 760}) as page:
        yield page


@pytest.fixture
def page(browser: Browser, resume_server: Server, request) -> Iterator[Page]:
    with ide_page(browser, resume_server, request, viewport={"width": 1280, "height": 760}) as page:
        yield page


def socket_urls(page: Page) -> list[str]:
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    return urls


def test_a_cut_connection_reconnects_and_every_line_shows_once(proxied_page: Page, proxy: TcpProxy) -> None:
    page = proxied_page
    wait_ready(page)
    urls = socket_urls(page)
    page.evaluate(RECORD_STATUSES)
    page.evaluate("code => ide.setCode(code)", COUNTER)
    page.click("#run")
    before = wait_terminal(page, "line 10\n")
    session_id = page.evaluate("ide.session().id")
    proxy.cut()
    assert f"line {LINES - 1}" not in before, "the run ended before the cut"
    expect(page.locator("#status-text")).to_have_text("finished · exit code 0", timeout=60_000)
    shown = wait_terminal(page, "[finished · exit code 0]")
    assert shown == "".join(f"line {i}\n" for i in range(LINES)) + "[finished · exit code 0]"
    statuses = page.evaluate("window.statuses")
    assert "reconnecting…" in statuses, statuses
    # Reconnecting, then running again, then the end: it carried on.
    after = statuses[statuses.index("reconnecting…") :]
    assert "running" in after and after[-1] == "finished · exit code 0", statuses
    assert all(f"/ws/session/{session_id}" in url for url in urls), urls
    assert "resume=" not in urls[0] and all("resume=" in url for url in urls[1:]), urls
    # A normal end: no reconnect after it (a while without one), nothing left to re-attach to.
    connections = len(urls)
    page.wait_for_timeout(1500)
    assert len(urls) == connections, urls
    assert page.evaluate("sessionStorage.getItem('sandbox-engine:attached')") is None


# In cbreak mode (no line editing, no echo), so that a cursor position report would reach the
# program as it is. A query answered live (as a terminal must), then one written while the page
# is away, which the page then gets as a replay: that one must go unanswered.
CURSOR_QUERIES = """import os, select, sys, tty
tty.setcbreak(0)
def ask():
    sys.stdout.write("\\x1b[6n")
    sys.stdout.flush()
def read(timeout):
    ready, _, _ = select.select([0], [], [], timeout)
    return os.read(0, 64) if ready else b""
ask()
print("live report:", "yes" if read(20).startswith(b"\\x1b[") else "no", flush=True)
print("ready", flush=True)
read(60)
ask()
print("asked", flush=True)
print("then:", repr(read(60)), flush=True)
"""


def test_a_replayed_cursor_query_gets_no_answer(
    proxied_page: Page, proxy: TcpProxy, resume_server: Server
) -> None:
    page = proxied_page
    wait_ready(page)
    page.evaluate("code => ide.setCode(code)", CURSOR_QUERIES)
    with page.expect_websocket() as opened:
        page.click("#run")
    sent: list = []
    opened.value.on("framesent", lambda frame: sent.append(frame))
    assert "live report: yes" in wait_terminal(page, "ready")
    session_id = page.evaluate("ide.session().id")
    # The page's network goes down; meanwhile another client of ours makes the program ask again.
    proxy.refusing = True
    proxy.cut()
    expect(page.locator("#status-text")).to_have_text("reconnecting…")
    with resume_server.attach(session_id, resume=0, takeover=True) as other:
        other.send({"type": "input", "data": "g"})
        other.read_stdout_until("asked")
        other.send({"type": "detach"})
    proxy.refusing = False
    # The page comes back: the query is in its replay, and the terminal parses it.
    wait_terminal(page, "asked", timeout=30_000)
    page.wait_for_function("() => ide.session() && !ide.session().replaying")
    expect(page.locator("#status-text")).to_have_text("running")
    page.click("#terminal")
    page.keyboard.type("x")
    shown = wait_terminal(page, "then:")
    assert "then: b'x'" in shown, shown
    # Only the live query had an answer, on the first connection.
    replies = [m for m in sent_messages(sent) if m["type"] == "input" and "\x1b[" in m["data"]]
    assert len(replies) == 1, replies
    expect(page.locator("#status-text")).to_have_text("finished · exit code 0")


GREETER = (
    "import time\nprint('started', flush=True)\nname = input('name? ')\nprint('Hello', name, flush=True)\n"
)


def test_a_reload_offers_to_reattach_and_it_carries_on(page: Page, resume_server: Server) -> None:
    wait_ready(page)
    page.evaluate("code => ide.setCode(code)", GREETER)
    page.click("#run")
    wait_terminal(page, "name? ")
    session_id = page.evaluate("ide.session().id")
    kept = json.loads(page.evaluate("sessionStorage.getItem('sandbox-engine:attached')"))
    assert kept["id"] == session_id and kept["tty"] is True and kept["language"] == "python"
    page.reload()
    dialog = page.locator("#reattach-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#reattach-id")).to_have_text(session_id)
    # The reload detached: the program still runs.
    assert resume_server.session(session_id)["state"] == "RUNNING"
    page.click("#reattach-accept")
    expect(dialog).to_be_hidden()
    # Replayed from its start into the empty terminal, once.
    assert wait_terminal(page, "name? ") == "started\nname? "
    expect(page.locator("#status-text")).to_have_text("running")
    page.wait_for_function("() => ide.session() && !ide.session().replaying")
    page.click("#terminal")
    page.keyboard.type("Ada")
    page.keyboard.press("Enter")
    expect(page.locator("#status-text")).to_have_text("finished · exit code 0")
    assert terminal_text(page) == "started\nname? Ada\nHello Ada\n[finished · exit code 0]"
    assert page.evaluate("sessionStorage.getItem('sandbox-engine:attached')") is None
    # Nothing is offered after a run that ended.
    page.reload()
    wait_ready(page)
    expect(dialog).to_be_hidden()


def test_declining_to_reattach_leaves_the_program_alone(page: Page, resume_server: Server) -> None:
    wait_ready(page)
    page.evaluate("code => ide.setCode(code)", GREETER)
    page.click("#run")
    wait_terminal(page, "name? ")
    session_id = page.evaluate("ide.session().id")
    page.reload()
    page.click("#reattach-decline")
    wait_ready(page)
    # The status says ready while the dialog is still up: the choice is taken once it closed,
    # and the tab's entry goes then (CI's loaded machine read it before).
    expect(page.locator("#reattach-dialog")).to_be_hidden()
    page.wait_for_function("sessionStorage.getItem('sandbox-engine:attached') === null", timeout=10_000)
    assert page.evaluate("ide.session()") is None
    assert page.evaluate("sessionStorage.getItem('sandbox-engine:attached')") is None
    assert resume_server.session(session_id)["state"] == "RUNNING"
    page.reload()
    wait_ready(page)
    expect(page.locator("#reattach-dialog")).to_be_hidden()
    # Ours to clean up: the server would end it after its reconnect grace.
    assert requests.delete(f"{resume_server.url}/session/{session_id}", timeout=10).status_code == 204


def test_the_share_button_shows_only_while_a_program_runs(page: Page) -> None:
    wait_ready(page)
    share = page.locator("#share")
    expect(share).to_be_hidden()
    page.evaluate("code => ide.setCode(code)", GREETER)
    page.click("#run")
    wait_terminal(page, "name? ")
    expect(share).to_be_visible()
    page.click("#terminal")
    page.keyboard.type("Ada")
    page.keyboard.press("Enter")
    expect(page.locator("#status-text")).to_have_text("finished · exit code 0")
    expect(share).to_be_hidden()


def test_a_server_that_ends_the_connection_on_purpose_is_not_retried(
    page: Page, resume_server: Server
) -> None:
    """A takeover (4408) is an answer: the page says so and does not take the session back."""
    wait_ready(page)
    page.evaluate("code => ide.setCode(code)", GREETER)
    urls = socket_urls(page)
    page.click("#run")
    wait_terminal(page, "name? ")
    session_id = page.evaluate("ide.session().id")
    with resume_server.attach(session_id, resume=0, takeover=True) as other:
        expect(page.locator("#status-text")).to_have_text(
            "connection lost: another client took this session over"
        )
        page.wait_for_timeout(1000)
        assert len(urls) == 1, urls
        other.send({"type": "kill"})
        other.read_to_end()


def test_the_share_link_opens_read_only_and_follows_live(
    browser: Browser, resume_server: Server, request: pytest.FixtureRequest
) -> None:
    with ide_page(
        browser,
        resume_server,
        request,
        viewport={"width": 1280, "height": 760},
        permissions=["clipboard-read", "clipboard-write"],
    ) as page:
        wait_ready(page)
        page.evaluate("code => ide.setCode(code)", GREETER)
        page.click("#run")
        wait_terminal(page, "name? ")
        session_id = page.evaluate("ide.session().id")
        page.click("#share")
        expect(page.locator("#share-dialog")).to_be_visible()
        expect(page.locator("#share-note")).to_have_text("Copied to the clipboard.")
        link = page.input_value("#share-url")
        assert link.startswith(f"{resume_server.url}/watch/{session_id}?token="), link
        assert page.evaluate("navigator.clipboard.readText()") == link
        page.click("#share-dialog button[value=close]")
        expect(page.locator("#share-dialog")).to_be_hidden()

        # Another browser, no key, no storage: the link is all it has.
        watch_server = dataclasses.replace(resume_server, url=link)
        with ide_page(browser, watch_server, request, viewport={"width": 1280, "height": 760}) as watcher:
            # From the run's start, read-only.
            assert wait_terminal(watcher, "name? ") == "started\nname? "
            expect(watcher.locator("#status-text")).to_have_text("running")
            expect(watcher.locator("#brand-mode")).to_have_text("watching · read-only")
            for control in ("#run", "#stop", "#language", "#reset"):
                expect(watcher.locator(control)).to_be_disabled()
            expect(watcher.locator("#share")).to_be_hidden()
            assert watcher.get_attribute(".cm-content", "contenteditable") == "false"
            # Each side sees one watcher.
            expect(page.locator("#watchers")).to_have_text("👁 1")
            expect(watcher.locator("#watchers")).to_have_text("👁 1")
            # What the watcher types goes nowhere; what the runner types, the watcher sees live.
            watcher.click("#terminal")
            watcher.keyboard.type("zzz")
            page.click("#terminal")
            page.keyboard.type("Ada")
            page.keyboard.press("Enter")
            expect(watcher.locator("#status-text")).to_have_text("finished · exit code 0")
            expected = "started\nname? Ada\nHello Ada\n[finished · exit code 0]"
            assert wait_terminal(watcher, "[finished") == expected
            expect(page.locator("#status-text")).to_have_text("finished · exit code 0")
            assert terminal_text(page) == expected


def test_a_resume_shows_a_gap_where_output_was_lost_and_nothing_twice(page: Page) -> None:
    """Played by a scripted server in the browser's network layer: the first connection drops
    without a close frame; the resume is answered with a message the page has (seq 2), a gap
    (3-5) and the rest."""
    connections: list[str] = []

    def socket(ws: WebSocketRoute) -> None:
        connections.append(ws.url)
        if len(connections) == 1:
            ws.send(json.dumps({"type": "state", "state": "RUNNING", "seq": 1}))
            ws.send(json.dumps({"type": "stdout", "data": "before\r\n", "seq": 2}))
            ws.close(code=1006)
            return
        for message in (
            {"type": "stdout", "data": "before\r\n", "seq": 2},
            {"type": "gap", "from": 3, "to": 5},
            {"type": "stdout", "data": "after\r\n", "seq": 6},
            {"type": "live"},
            {"type": "state", "state": "FINISHED", "exitCode": 0, "reason": "exited", "seq": 7},
        ):
            ws.send(json.dumps(message))
        ws.close(code=1000)

    page.route(
        re.compile(r"/session$"),
        lambda route: route.fulfill(status=201, json={"sessionId": "scripted"}),
    )
    page.route_web_socket(re.compile(r"/ws/session/scripted(\?.*)?$"), socket)
    wait_ready(page)
    page.evaluate(RECORD_STATUSES)
    page.click("#run")
    expect(page.locator("#status-text")).to_have_text("finished · exit code 0")
    assert connections[1].endswith("/ws/session/scripted?resume=2"), connections
    assert terminal_text(page) == (
        "before\n[3 messages of output lost here: the server no longer held them]\nafter\n"
        "[finished · exit code 0]"
    )
    assert "reconnecting…" in page.evaluate("window.statuses")


def test_with_keys_a_share_link_needs_none_and_a_revoke_ends_it(
    browser: Browser, docker_client, tmp_path_factory, request: pytest.FixtureRequest
) -> None:
    server = start_server(docker_client, tmp_path_factory, workers=2, idle_timeout=30, run_timeout=90)
    try:
        secret = server.make_key("ide", "--scopes", "session")
        with ide_page(browser, server, request, viewport={"width": 1280, "height": 760}) as page:
            page.fill("#key-input", secret)
            page.click("#key-save")
            wait_ready(page)
            page.evaluate("code => ide.setCode(code)", GREETER)
            page.click("#run")
            wait_terminal(page, "name? ")
            session_id = page.evaluate("ide.session().id")
            # A browser that does not let the page write to the clipboard.
            page.evaluate("() => { navigator.clipboard.writeText = () => Promise.reject(new Error('no')); }")
            page.click("#share")
            # The link is shown, selected, to copy by hand.
            expect(page.locator("#share-note")).to_have_text("Copy this link:")
            link = page.input_value("#share-url")
            assert page.evaluate("document.activeElement.id") == "share-url"
            page.keyboard.press("Escape")
            watch_server = dataclasses.replace(server, url=link)
            with ide_page(browser, watch_server, request, viewport={"width": 1280, "height": 760}) as watcher:
                assert wait_terminal(watcher, "name? ") == "started\nname? "
                expect(watcher.locator("#key-dialog")).to_be_hidden()
                expect(page.locator("#watchers")).to_have_text("👁 1")
                revoked = requests.delete(
                    f"{server.url}/session/{session_id}/watchers",
                    headers={"Authorization": f"Bearer {secret}"},
                    timeout=10,
                )
                assert revoked.status_code == 204
                expect(watcher.locator("#status-text")).to_have_text(
                    "connection lost: the session's watch links were revoked"
                )
                expect(page.locator("#watchers")).to_be_hidden()
            page.click("#terminal")
            page.keyboard.type("Ada")
            page.keyboard.press("Enter")
            expect(page.locator("#status-text")).to_have_text("finished · exit code 0")
    finally:
        shutdown(server)
