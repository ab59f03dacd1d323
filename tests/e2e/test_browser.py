"""The IDE page in a real browser: Debian's chromium, headless, driven by Playwright, against a real
`sandbox-engine serve` on the real Docker daemon. Refusals, dropped connections and every reason
in words are played by a scripted server in the browser's network layer instead."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator

import described
import pytest
import requests
from harness import INTERACTIVE, ROOT, Server, shutdown, start_server

try:
    from playwright.sync_api import Browser, Page, Playwright, WebSocketRoute, expect, sync_playwright
except ImportError:  # the browser fixture says so: a failure under CI=true, a skip otherwise
    sync_playwright = None

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BUNDLE = os.path.join(ROOT, "static", "dist", "ide.js")
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
# The phone the layout is tested on, as Playwright describes it (390x664, touch, mobile).
PHONE = "iPhone 13"
# The page opens on Python's example from GET /languages: the core engine issue's interactive one.
EXAMPLE = INTERACTIVE
# Every page of every test reports what its Content-Security-Policy blocked, as a console error
# that fails the test (beside the browser's own words, which it logs as well).
REPORT_CSP = """document.addEventListener("securitypolicyviolation", (event) =>
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || "inline"}`));"""


def unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if sync_playwright is None:
        unavailable("Playwright for Python is not installed; run `make test`")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is missing; run `make test` (it installs Debian's chromium)")
    if not os.path.isfile(BUNDLE):
        unavailable("the IDE's JavaScript bundle is missing; run `make ui`")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def ide_server(docker_client, tmp_path_factory) -> Iterator[Server]:
    """Timeouts long enough for a person at a keyboard, which a browser driven by a test is not."""
    server = start_server(docker_client, tmp_path_factory, workers=2, idle_timeout=20, run_timeout=60)
    yield server
    shutdown(server)


@contextlib.contextmanager
def ide_page(browser: Browser, server: Server, request: pytest.FixtureRequest, **context) -> Iterator[Page]:
    """The IDE in a fresh browser context (its own localStorage), loaded; fails the test on any
    script error or failed load of the page. The dark theme unless the context says otherwise."""
    context = browser.new_context(**{"color_scheme": "dark", **context})
    context.add_init_script(REPORT_CSP)
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []

    def console(message) -> None:
        # Refusals and dropped WebSockets are what some tests provoke; the browser logs them.
        if message.type == "error" and not message.text.startswith(
            ("WebSocket connection", "Failed to load resource")
        ):
            problems.append(f"console: {message.text}")

    def response(answer) -> None:
        if "/static/" in answer.url and answer.status >= 400:
            problems.append(f"{answer.status} for {answer.url}")

    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("console", console)
    page.on("response", response)
    received: list[str] = []
    sent: list[str] = []

    def websocket(ws) -> None:
        ws.on("framereceived", lambda frame: received.append(str(frame)))
        ws.on("framesent", lambda frame: sent.append(frame))

    page.on("websocket", websocket)
    page.goto(server.url)
    yield page
    # What the IDE sends is the protocol's, as the API's description has it.
    for message in sent_messages(sent):
        described.check_message("SessionClientMessage", message)
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        save_failure(page, request.node.name, received)
    context.close()
    assert not problems, problems


@pytest.fixture
def page(browser: Browser, ide_server: Server, request: pytest.FixtureRequest) -> Iterator[Page]:
    with ide_page(browser, ide_server, request, viewport={"width": 1280, "height": 760}) as page:
        yield page


@pytest.fixture
def phone(playwright: Playwright, browser: Browser, ide_server: Server, request) -> Iterator[Page]:
    """The IDE on a phone as Playwright emulates one: its screen, touch, no mouse to hover."""
    device = {k: v for k, v in playwright.devices[PHONE].items() if k != "default_browser_type"}
    with ide_page(browser, ide_server, request, **device) as page:
        yield page


def save_failure(page: Page, name: str, received: list[str]) -> None:
    """What a failed test saw, as artifacts: the page, its status line, terminal and messages."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    base = os.path.join(ARTIFACTS, "failed-" + re.sub(r"[^\w.-]+", "_", name))
    page.screenshot(path=base + ".png")
    with open(base + ".txt", "w") as f:
        f.write(f"status: {page.locator('#status-text').text_content()!r}\n")
        f.write(f"terminal: {terminal_text(page)!r}\n")
        f.writelines(f"received: {frame}\n" for frame in received)


def wait_ready(page: Page) -> None:
    expect(page.locator("#status-text")).to_have_text("ready")


def terminal_text(page: Page) -> str:
    return page.evaluate("ide.terminalText()")


def wait_terminal(page: Page, text: str, timeout: float = 20_000) -> str:
    """Waits until the terminal shows text; returns all it shows."""
    try:
        page.wait_for_function("text => ide.terminalText().includes(text)", arg=text, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - say what the terminal shows instead
        raise AssertionError(f"{text!r} never appeared; the terminal shows {terminal_text(page)!r}") from exc
    return terminal_text(page)


def sent_messages(frames: list) -> list[dict]:
    return [json.loads(frame) for frame in frames if isinstance(frame, str)]


def test_interactive_run_in_the_terminal(page: Page, ide_server: Server) -> None:
    wait_ready(page)
    languages = requests.get(f"{ide_server.url}/languages", timeout=10).json()["languages"]
    options = page.eval_on_selector_all("#language option", "options => options.map(o => o.value)")
    assert options == [lang["id"] for lang in languages]
    # It opens on the example, highlighted as Python.
    assert page.evaluate("ide.code()") == EXAMPLE
    expect(page.locator("#mode")).to_have_text("Python")
    expect(page.locator(".cm-line span", has_text=re.compile("^import$")).first).to_be_visible()

    page.evaluate("code => ide.setCode(code)", EXAMPLE)
    post_of_session = re.compile(r"/session$")
    with page.expect_request(lambda r: r.method == "POST" and post_of_session.search(r.url)) as post:
        with page.expect_websocket() as opened:
            page.click("#run")
    ws = opened.value
    sent: list = []
    ws.on("framesent", lambda frame: sent.append(frame))
    body = post.value.post_data_json
    cols, rows = page.evaluate("[ide.terminal.cols, ide.terminal.rows]")
    assert body == {"language": "python", "code": EXAMPLE, "tty": True, "cols": cols, "rows": rows}
    assert cols > 40 and rows > 10

    assert wait_terminal(page, "Enter your name: ") == "Program started\nEnter your name: "
    expect(page.locator("#status-text")).to_have_text("running")
    expect(page.locator("#stop")).to_be_enabled()
    expect(page.locator("#run")).to_be_disabled()

    # Keystrokes go to the program one by one as typed; the terminal on the server echoes them.
    page.click("#terminal")
    with ws.expect_event("framesent", lambda frame: json.loads(frame) == {"type": "input", "data": "\r"}):
        page.keyboard.type("Ada")
        page.keyboard.press("Enter")
    assert [m["data"] for m in sent_messages(sent) if m["type"] == "input"] == ["A", "d", "a", "\r"]
    assert "Enter your name: Ada\nHello Ada" in wait_terminal(page, "Hello Ada")

    expect(page.locator("#status-text")).to_have_text("finished · exit code 0", timeout=30_000)
    assert wait_terminal(page, "[finished · exit code 0]") == (
        "Program started\nEnter your name: Ada\nHello Ada\n0\n1\n2\n3\n4\n[finished · exit code 0]"
    )
    elapsed = page.text_content("#elapsed")
    assert re.fullmatch(r"\d+\.\d s", elapsed) and 5 <= float(elapsed.split()[0]) < 30, elapsed
    expect(page.locator("#run")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()

    os.makedirs(ARTIFACTS, exist_ok=True)
    screenshot = os.path.join(ARTIFACTS, "ide.png")
    page.screenshot(path=screenshot)
    # The README's picture is this screenshot; refreshed on request, so runs leave git clean.
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
        shutil.copyfile(screenshot, os.path.join(ROOT, "docs", "ide.png"))


def test_ctrl_c_interrupts_the_program(page: Page) -> None:
    wait_ready(page)
    page.evaluate(
        "code => ide.setCode(code)", 'import time\nprint("waiting")\nwhile True:\n    time.sleep(0.1)\n'
    )
    with page.expect_websocket() as opened:
        page.click("#run")
    wait_terminal(page, "waiting")
    page.click("#terminal")
    with opened.value.expect_event("framesent", lambda frame: json.loads(frame).get("data") == "\x03"):
        page.keyboard.press("Control+c")
    assert "KeyboardInterrupt" in wait_terminal(page, "KeyboardInterrupt")
    # Python ends itself by SIGINT after a KeyboardInterrupt, and says so in words.
    expect(page.locator("#status-text")).to_have_text("killed by SIGINT (interrupted)")


def test_ctrl_enter_runs_and_stop_kills(page: Page) -> None:
    wait_ready(page)
    # Busy, and never silent for the idle timeout: on a loaded machine a slow browser can take
    # that long between seeing "looping" and clicking Stop.
    code = (
        'import time\nprint("looping")\nlast = time.monotonic()\nwhile True:\n'
        "    if time.monotonic() - last > 1:\n"
        '        print(".", end="", flush=True)\n'
        "        last = time.monotonic()\n"
    )
    page.evaluate("code => ide.setCode(code)", code)
    page.click(".cm-content")
    with page.expect_websocket() as opened:
        page.keyboard.press("Control+Enter")
    assert page.evaluate("ide.code()") == code, "Ctrl+Enter ran the program and did not edit it"
    wait_terminal(page, "looping")
    expect(page.locator("#status-text")).to_have_text("running")
    with opened.value.expect_event("framesent", lambda frame: json.loads(frame) == {"type": "kill"}):
        page.click("#stop")
    expect(page.locator("#status-text")).to_have_text("stopped by you")
    expect(page.locator("#run")).to_be_enabled()
    assert wait_terminal(page, "[stopped by you]").endswith("[stopped by you]")


def test_ctrl_period_stops_and_the_stop_button_says_so(page: Page) -> None:
    wait_ready(page)
    assert page.get_attribute("#stop", "title") == "Stop the program (Ctrl+.)"
    page.evaluate(
        "code => ide.setCode(code)", 'import time\nprint("waiting")\nwhile True:\n    time.sleep(0.1)\n'
    )
    with page.expect_websocket() as opened:
        page.click("#run")
    wait_terminal(page, "waiting")
    # From the terminal, where the program has the keyboard: Ctrl+. is the page's, not a byte.
    page.click("#terminal")
    with opened.value.expect_event("framesent", lambda frame: json.loads(frame) == {"type": "kill"}):
        page.keyboard.press("Control+.")
    expect(page.locator("#status-text")).to_have_text("stopped by you")


def test_terminal_follows_the_window_and_narrow_screens_stack(page: Page) -> None:
    wait_ready(page)
    code = (
        'import os\nprint("size", *os.get_terminal_size())\ninput()\nprint("size", *os.get_terminal_size())\n'
    )
    page.evaluate("code => ide.setCode(code)", code)
    with page.expect_websocket() as opened:
        page.click("#run")
    ws = opened.value
    sent: list = []
    ws.on("framesent", lambda frame: sent.append(frame))
    cols, rows = page.evaluate("[ide.terminal.cols, ide.terminal.rows]")
    assert re.search(f"^size {cols} {rows}$", wait_terminal(page, f"size {cols} {rows}"), re.M)

    with ws.expect_event("framesent", lambda frame: json.loads(frame)["type"] == "resize"):
        page.set_viewport_size({"width": 390, "height": 844})

    # On a phone the editor sits above the terminal, each the full width and usably tall.
    editor = page.locator("#editor").bounding_box()
    terminal = page.locator("#terminal").bounding_box()
    assert editor["y"] + editor["height"] <= terminal["y"]
    assert editor["width"] > 350 and terminal["width"] > 350
    assert editor["height"] > 200 and terminal["height"] > 200
    for control in ("#language", "#run", "#stop", "#status"):
        box = page.locator(control).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, control

    # The program sees the size the terminal has now, which is the last one the page sent.
    narrow = page.evaluate("[ide.terminal.cols, ide.terminal.rows]")
    assert narrow[0] < cols
    resizes = [m for m in sent_messages(sent) if m["type"] == "resize"]
    assert [resizes[-1]["cols"], resizes[-1]["rows"]] == narrow
    page.click("#terminal")
    page.keyboard.press("Enter")
    shown = wait_terminal(page, f"size {narrow[0]} {narrow[1]}")
    assert re.search(f"^size {narrow[0]} {narrow[1]}$", shown, re.M)
    expect(page.locator("#status-text")).to_have_text("finished · exit code 0")
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "ide-narrow.png"), full_page=True)


class ScriptedServer:
    """POST /session and the WebSocket, answered inside the browser from a script per run."""

    def __init__(self, page: Page) -> None:
        self.post: tuple[int, dict, dict] = (201, {}, {"sessionId": "scripted"})
        self.messages: list[dict] = []
        self.close: dict | None = None
        self.received: list[dict] = []
        page.route(re.compile(r"/session$"), self._post)
        page.route_web_socket(re.compile(r"/ws/session/scripted$"), self._socket)

    def _post(self, route) -> None:
        status, headers, body = self.post
        route.fulfill(status=status, headers=headers, content_type="application/json", body=json.dumps(body))

    def _socket(self, ws: WebSocketRoute) -> None:
        def receive(raw) -> None:
            message = json.loads(raw)
            self.received.append(message)
            if message["type"] == "resize":
                # What a server without terminal support answers.
                ws.send(json.dumps({"type": "error", "message": "unknown message type 'resize'"}))
            elif message["type"] == "kill":
                ws.send(
                    json.dumps(
                        {
                            "type": "state",
                            "state": "TERMINATED",
                            "exitCode": 137,
                            "reason": "killed",
                            "signal": "SIGKILL",
                        }
                    )
                )
                ws.close(code=1000)

        ws.on_message(receive)
        for message in self.messages:
            ws.send(json.dumps(message))
        if self.close is not None:
            ws.close(**self.close)


RUNNING = {"type": "state", "state": "RUNNING"}


def ended(state: str, reason: str, exit_code: int | None = 137, signal: str | None = "") -> list[dict]:
    """The final state; with the signal field when one is given (None: the field, null)."""
    final = {"type": "state", "state": state, "exitCode": exit_code, "reason": reason}
    if signal != "":
        final["signal"] = signal
    return [RUNNING, final]


@pytest.mark.parametrize(
    ("post", "messages", "close", "status"),
    [
        (
            (429, {"Retry-After": "7"}, {"error": {"code": "at_capacity", "message": "64 live"}}),
            [],
            None,
            "server busy, try again in 7 s",
        ),
        (
            (429, {"Retry-After": "5"}, {"error": {"code": "quota_exceeded", "message": "key at its limit"}}),
            [],
            None,
            "all the sessions your key may have are running, try again in 5 s",
        ),
        (
            (429, {"Retry-After": "42"}, {"error": {"code": "rate_limited", "message": "over its rate"}}),
            [],
            None,
            "too many requests with your key, try again in 42 s",
        ),
        (
            (403, {}, {"error": {"code": "forbidden", "message": "key 'k' needs the session scope"}}),
            [],
            None,
            "refused: key 'k' needs the session scope",
        ),
        (
            (503, {}, {"error": {"code": "runtime_unavailable", "message": "Docker is away"}}),
            [],
            None,
            "sandbox runtime unavailable",
        ),
        (
            (413, {}, {"error": {"code": "too_large", "message": "the code is over 262144 bytes"}}),
            [],
            None,
            "refused: the code is over 262144 bytes",
        ),
        (None, ended("TERMINATED", "idle_timeout"), None, "ended: no input and no output for 20 s"),
        # The page's server has the default --input-timeout, 300 s.
        (
            None,
            ended("TERMINATED", "input_timeout"),
            None,
            "ended: no input for 5 min while waiting at a prompt",
        ),
        (None, ended("TERMINATED", "timeout"), None, "time limit reached"),
        (None, ended("TERMINATED", "output_limit"), None, "output limit reached"),
        (None, ended("TERMINATED", "memory_limit"), None, "memory limit exceeded"),
        # A kill this page did not ask for: a DELETE from elsewhere.
        (None, ended("TERMINATED", "killed", None), None, "stopped"),
        (None, ended("FINISHED", "compile_error", 1), None, "compile error · exit code 1"),
        (None, ended("TERMINATED", "server_shutdown"), None, "server shutting down"),
        (None, ended("TERMINATED", "internal_error", None), None, "internal error"),
        (None, ended("TERMINATED", "some_new_reason"), None, "ended: some new reason"),
        (None, ended("FINISHED", "exited", 3), None, "finished · exit code 3"),
        (None, ended("FINISHED", "exited", 0, signal=None), None, "finished · exit code 0"),
        (None, ended("FINISHED", "exited", 139, "SIGSEGV"), None, "killed by SIGSEGV (segmentation fault)"),
        (None, ended("FINISHED", "exited", 134, "SIGABRT"), None, "killed by SIGABRT (aborted)"),
        (None, ended("FINISHED", "exited", 136, "SIGFPE"), None, "killed by SIGFPE (arithmetic error)"),
        (None, ended("FINISHED", "exited", 152, "SIGXCPU"), None, "killed by SIGXCPU (CPU time limit)"),
        (None, ended("FINISHED", "exited", 138, "SIGUSR1"), None, "killed by SIGUSR1"),
        (None, [RUNNING], {"code": 1011, "reason": "worker died"}, "connection lost: worker died"),
        (None, [RUNNING], {"code": 1001}, "connection lost (code 1001)"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_refusals_endings_and_drops_in_words(page: Page, post, messages, close, status) -> None:
    server = ScriptedServer(page)
    server.post = post or server.post
    server.messages = messages
    server.close = close
    wait_ready(page)
    page.click("#run")
    expect(page.locator("#status-text")).to_have_text(status)
    expect(page.locator("#run")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()
    # xterm.js writes asynchronously: the status line may be there before the terminal's note.
    assert wait_terminal(page, f"[{status}]").endswith(f"[{status}]")


def test_on_a_server_that_needs_a_key_the_page_asks_once_and_keeps_it(
    browser: Browser, docker_client, tmp_path_factory, request
) -> None:
    server = start_server(docker_client, tmp_path_factory, workers=2, idle_timeout=20, run_timeout=60)
    try:
        server.keys("create", "ops", "--scopes", "admin")  # so the server stays keyed once ide's is revoked
        secret = server.make_key("ide", "--scopes", "session")
        with ide_page(browser, server, request, viewport={"width": 1280, "height": 760}) as page:
            dialog = page.locator("#key-dialog")
            expect(dialog).to_be_visible()
            expect(page.locator("#key-input")).to_be_focused()
            page.fill("#key-input", secret[:-1] + "x")
            page.click("#key-save")
            # Asked again, saying why.
            expect(dialog).to_be_visible()
            expect(page.locator("#key-reason")).to_contain_text("was refused: this API key is not valid")
            page.fill("#key-input", secret)
            page.click("#key-save")
            wait_ready(page)
            expect(dialog).to_be_hidden()
            expect(page.locator("#key")).to_be_visible()
            assert page.evaluate("localStorage.getItem('sandbox-engine:api-key')") == secret
            page.evaluate("code => ide.setCode(code)", "print('hello with a key')\n")
            with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/session")) as post:
                page.click("#run")
            assert post.value.headers["authorization"] == f"Bearer {secret}"
            wait_terminal(page, "hello with a key")
            expect(page.locator("#status-text")).to_have_text("finished · exit code 0", timeout=30_000)
            # The next visit asks nothing.
            page.reload()
            wait_ready(page)
            expect(dialog).to_be_hidden()
            # A revoked key is asked for again; "Forget the key" leaves the page without one.
            assert server.keys("revoke", "ide").returncode == 0
            page.wait_for_timeout(1000)
            page.click("#run")
            expect(dialog).to_be_visible()
            expect(page.locator("#key-reason")).to_contain_text("was refused")
            page.click("#key-forget")
            expect(page.locator("#status-text")).to_have_text(
                "refused: the server needs an API key (🔑 to give one)"
            )
            assert page.evaluate("localStorage.getItem('sandbox-engine:api-key')") is None
    finally:
        shutdown(server)


def test_without_terminal_support_resize_errors_stay_quiet(page: Page) -> None:
    server = ScriptedServer(page)
    server.messages = [RUNNING, {"type": "stdout", "data": "working\r\n"}]
    wait_ready(page)
    page.click("#run")
    expect(page.locator("#status-text")).to_have_text("running")
    page.set_viewport_size({"width": 800, "height": 600})
    page.wait_for_function("() => ide.terminal.cols < 60")
    page.click("#stop")
    expect(page.locator("#status-text")).to_have_text("stopped by you")
    kinds = [m["type"] for m in server.received]
    assert kinds[-1] == "kill" and set(kinds[:-1]) == {"resize"}, kinds
    assert wait_terminal(page, "[stopped by you]") == "working\n[stopped by you]"


def test_every_language_has_the_mode_and_example_the_server_gives(page: Page, ide_server: Server) -> None:
    languages = requests.get(f"{ide_server.url}/languages", timeout=10).json()["languages"]
    # A language whose editor mode this page does not know: it is edited as plain text.
    cobol = {
        "id": "cobol",
        "name": "COBOL",
        "version": "1",
        "extensions": [".cob"],
        "editorMode": "cobol",
        "example": "DISPLAY 'Enter your name: '.\n",
    }
    page.route(
        re.compile(r"/languages$"), lambda route: route.fulfill(json={"languages": [*languages, cobol]})
    )
    page.reload()
    wait_ready(page)
    ids = [language["id"] for language in languages]
    loaded = page.evaluate(
        """async ids => Object.fromEntries(await Promise.all(ids.map(async id => {
               const mode = await ide.loadMode(id);
               return [id, {mode: ide.modeName(id), loaded: !(Array.isArray(mode) && !mode.length),
                            example: ide.example(id)}];
           })))""",
        [*ids, "cobol"],
    )
    for language in languages:
        # Every mode the server names is one the page loads, and the example is the server's.
        assert loaded[language["id"]]["loaded"], language
        assert loaded[language["id"]]["mode"] != "Plain text", language
        assert loaded[language["id"]]["example"] == language["example"], language["id"]
    assert loaded["bash"]["mode"] == "Shell"
    assert loaded["cobol"] == {"mode": "Plain text", "loaded": False, "example": cobol["example"]}

    # A language starts from its example; switching back finds the draft as it was left.
    page.select_option("#language", "ruby")
    expect(page.locator("#mode")).to_have_text("Ruby")
    ruby = next(language["example"] for language in languages if language["id"] == "ruby")
    assert page.evaluate("ide.code()") == ruby
    expect(page.locator(".cm-line span", has_text=re.compile("^print$")).first).to_be_visible()
    page.evaluate("ide.setCode('puts 42\\n')")
    page.select_option("#language", "python")
    assert page.evaluate("ide.code()") == EXAMPLE
    page.select_option("#language", "ruby")
    assert page.evaluate("ide.code()") == "puts 42\n"
    page.select_option("#language", "cobol")
    expect(page.locator("#mode")).to_have_text("Plain text")
    assert page.evaluate("ide.code()") == cobol["example"]


def run_and_greet(page: Page, name: str = "Ada") -> None:
    """Runs what the editor holds, which prompts, and answers the prompt as a user would."""
    page.click("#run")
    wait_terminal(page, "Enter your name: ", timeout=90_000)
    page.click("#terminal")
    page.keyboard.type(name)
    page.keyboard.press("Enter")


def test_a_program_runs_under_the_pages_content_security_policy(page: Page, ide_server: Server) -> None:
    """The page's policy allows no inline script or style but its own (by nonce): the editor, the
    terminal and a run of the interactive example work under it, and ide_page fails the test on
    any violation the browser reports."""
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    policy = requests.get(ide_server.url, timeout=10).headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy and "unsafe" not in policy
    page.reload()
    wait_ready(page)
    run_and_greet(page)
    assert "Hello Ada" in wait_terminal(page, "4")
    expect(page.locator("#status-text")).to_have_text(re.compile("finished"), timeout=30_000)
    assert not violations, violations


def test_the_api_docs_render_offline_under_their_policy(browser: Browser, ide_server: Server) -> None:
    """/docs: Swagger UI from the server's own bundle (every other request is refused, as on a
    machine without the Internet), rendering /openapi.json, with no console error."""
    context = browser.new_context()
    context.add_init_script(REPORT_CSP)
    page = context.new_page()
    problems: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    def only_this_server(route) -> None:
        if route.request.url.startswith(ide_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        page.route("**/*", only_this_server)
        page.goto(f"{ide_server.url}/docs")
        expect(page.locator(".information-container .title")).to_contain_text("sandbox-engine")
        # Each API's routes; the WebSocket messages among the schemas.
        expect(page.locator('a[href="#/sessions/api.create_session"]')).to_be_visible()
        expect(page.locator('a[href="#/judge0/judge0.create_submission"]')).to_be_visible()
        page.click("section.models .models-control")
        expect(page.get_by_role("button", name="SessionServerMessage", exact=True)).to_be_visible()
        assert not problems, problems
        assert not outside, outside
    finally:
        context.close()


def test_csharp_ends_without_a_blank_line(page: Page) -> None:
    # Mono's console ends with escape sequences that print nothing (keypad mode off, the palette
    # reset): the page's last line follows the program's at once, as for every language.
    wait_ready(page)
    page.select_option("#language", "csharp")
    run_and_greet(page)
    expect(page.locator("#status-text")).to_have_text("finished · exit code 0", timeout=30_000)
    assert wait_terminal(page, "[finished") == "Enter your name: Ada\nHello Ada\n[finished · exit code 0]"


def test_code_survives_a_reload_per_language_and_resets_to_the_example(page: Page) -> None:
    wait_ready(page)
    python = page.evaluate("ide.code()")
    page.click(".cm-content")
    page.keyboard.press("Control+End")
    page.keyboard.type("print('mine')\n")
    mine = python + "print('mine')\n"
    assert page.evaluate("ide.code()") == mine
    page.select_option("#language", "ruby")
    page.evaluate("ide.setCode('puts 42\\n')")
    page.reload()
    wait_ready(page)
    # The language last chosen, its draft, and the other language's draft, as they were left.
    assert page.input_value("#language") == "ruby"
    assert page.evaluate("ide.code()") == "puts 42\n"
    page.select_option("#language", "python")
    assert page.evaluate("ide.code()") == mine

    page.click("#reset")
    assert page.evaluate("ide.code()") == python
    # One step to undo, should the reset have been a slip.
    page.keyboard.press("Control+z")
    assert page.evaluate("ide.code()") == mine
    page.click("#reset")
    page.reload()
    wait_ready(page)
    assert page.evaluate("ide.code()") == python
    stored = page.evaluate("Object.keys(localStorage).filter(key => key.startsWith('sandbox-engine:code:'))")
    # A draft that is the example is not kept: the server's example shows when it changes.
    assert stored == ["sandbox-engine:code:ruby"]


def test_split_text_size_and_theme_are_the_users_and_kept(page: Page) -> None:
    wait_ready(page)
    editor = page.locator(".editor-pane").bounding_box()
    assert abs(editor["width"] - 640) < 8
    assert page.evaluate("ide.display()") == {"theme": "dark", "fontSize": 14, "split": 50}
    # Dragging the splitter to a third of the width: the editor narrows, the terminal refits.
    cols = page.evaluate("ide.terminal.cols")
    splitter = page.locator("#splitter").bounding_box()
    page.mouse.move(splitter["x"] + 3, splitter["y"] + 200)
    page.mouse.down()
    page.mouse.move(1280 / 3, splitter["y"] + 220, steps=5)
    page.mouse.up()
    assert abs(page.locator(".editor-pane").bounding_box()["width"] - 1280 / 3) < 8
    page.wait_for_function("cols => ide.terminal.cols > cols", arg=cols)
    # And from the keyboard, a step at a time.
    page.focus("#splitter")
    page.keyboard.press("ArrowRight")
    split = page.evaluate("ide.display().split")
    assert 36 < split < 40, split

    page.click("#font-larger")
    page.click("#font-larger")
    assert page.evaluate("ide.terminal.options.fontSize") == 16
    assert page.eval_on_selector(".cm-scroller", "e => getComputedStyle(e).fontSize") == "16px"
    assert page.get_attribute("#font-larger", "title") == "Larger text (16 px now)"

    assert page.get_attribute("#theme", "title") == "Light theme"
    page.click("#theme")
    assert page.get_attribute("html", "data-theme") == "light"
    assert page.evaluate("ide.terminal.options.theme.background") == "#fafafa"
    assert (
        page.eval_on_selector(".cm-editor", "e => getComputedStyle(e).backgroundColor")
        == "rgb(255, 255, 255)"
    )
    assert page.get_attribute("#theme", "title") == "Dark theme"

    page.reload()
    wait_ready(page)
    assert page.evaluate("ide.display()") == {"theme": "light", "fontSize": 16, "split": split}
    assert abs(page.locator(".editor-pane").bounding_box()["width"] - 1280 * split / 100) < 8
    assert page.evaluate("ide.terminal.options.fontSize") == 16


def test_the_theme_follows_the_system_until_chosen(browser: Browser, ide_server: Server, request) -> None:
    with ide_page(browser, ide_server, request, color_scheme="light") as page:
        wait_ready(page)
        assert page.get_attribute("html", "data-theme") == "light"
        page.click("#theme")
        page.reload()
        wait_ready(page)
        assert page.get_attribute("html", "data-theme") == "dark"


@pytest.mark.parametrize(("language", "name"), [("python", "main.py"), ("c", "main.c"), ("bash", "main.sh")])
def test_download_saves_the_file_as_its_language_names_it(page: Page, language: str, name: str) -> None:
    wait_ready(page)
    page.select_option("#language", language)
    page.evaluate("ide.setCode('the code\\n')")
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == name
    with open(download.value.path(), encoding="utf-8") as f:
        assert f.read() == "the code\n"


def terminal_rows(page: Page) -> list[dict]:
    """The terminal's rows as drawn: text, and whether the terminal wrapped it onto that row."""
    return page.evaluate(
        """() => { const b = ide.terminal.buffer.active, rows = [];
                   for (let i = 0; i < b.length; i++) {
                     const line = b.getLine(i);
                     rows.push({text: line.translateToString(true), wrapped: line.isWrapped});
                   }
                   return rows.filter(row => row.text); }"""
    )


HINT = "Press Run (Ctrl+Enter): the program's output appears here, and what you type here goes to it."


@pytest.mark.parametrize("width", [1280, 900, 700, 480])
def test_the_empty_terminals_hint_breaks_between_words(page: Page, width: int) -> None:
    wait_ready(page)
    before = page.evaluate("ide.terminal.cols")
    page.set_viewport_size({"width": width, "height": 760})
    if width != 1280:
        # Written again for the terminal's new width.
        page.wait_for_function("before => ide.terminal.cols !== before", arg=before)
    page.wait_for_function(
        "() => ide.terminal.buffer.active.getLine(0).translateToString(true).length <= ide.terminal.cols"
    )
    cols = page.evaluate("ide.terminal.cols")
    rows = terminal_rows(page)
    assert not any(row["wrapped"] for row in rows), rows
    assert all(len(row["text"]) <= cols for row in rows), (cols, rows)
    assert " ".join(row["text"].strip() for row in rows) == HINT
    assert len(rows) > 1 or len(HINT) <= cols


def test_compile_warnings_are_marked_and_the_program_runs(page: Page) -> None:
    wait_ready(page)
    page.select_option("#language", "c")
    page.evaluate(
        "code => ide.setCode(code)",
        '#include <stdio.h>\nint main(void) {\n    int unused;\n    puts("ran");\n    return 0;\n}\n',
    )
    page.click("#run")
    expect(page.locator("#status-text")).to_have_text("finished · exit code 0", timeout=60_000)
    [mark] = page.evaluate("ide.diagnostics()")
    assert (mark["line"], mark["column"], mark["text"], mark["severity"]) == (3, 9, "unused", "warning")
    assert "unused variable" in mark["message"]
    expect(page.locator(".cm-lint-marker-warning")).to_have_count(1)
    # The next run starts without the last one's marks, and a clean compile leaves none.
    page.evaluate("ide.setCode('#include <stdio.h>\\nint main(void) {\\n    puts(\"ran\");\\n}\\n')")
    page.click("#run")
    expect(page.locator("#status-text")).to_have_text("finished · exit code 0", timeout=60_000)
    assert page.evaluate("ide.diagnostics()") == []
    expect(page.locator(".cm-lint-marker-warning")).to_have_count(0)


# A compile error per compiled language, at the line and on the word a user would look for.
COMPILE_ERRORS = {
    "c": ("int main(void) {\n    return undefined_name;\n}\n", 2, 12, "undefined_name"),
    "cpp": ("int main() {\n    return undefined_name;\n}\n", 2, 12, "undefined_name"),
    "go": ("package main\n\nfunc main() {\n\tundefinedName()\n}\n", 4, 2, "undefinedName"),
    "rust": ("fn main() {\n    undefined_name();\n}\n", 2, 5, "undefined_name"),
    "java": (
        "public class Main {\n    public static void main(String[] args) {\n"
        "        undefinedName();\n    }\n}\n",
        3,
        9,
        "undefinedName",
    ),
    "csharp": (
        "class Program {\n    static void Main() {\n        UndefinedName();\n    }\n}\n",
        3,
        9,
        "UndefinedName",
    ),
    "haskell": ("main :: IO ()\nmain = do\n  undefinedName\n", 3, 3, "undefinedName"),
    "typescript": ("const x: number = 1;\nundefinedName(x);\n", 2, 1, "undefinedName"),
}


@pytest.mark.parametrize("language", list(COMPILE_ERRORS))
def test_compile_errors_are_marked_at_their_line(page: Page, language: str) -> None:
    code, line, column, word = COMPILE_ERRORS[language]
    wait_ready(page)
    page.select_option("#language", language)
    page.evaluate("code => ide.setCode(code)", code)
    page.click("#run")
    expect(page.locator("#status-text")).to_have_text(
        re.compile(r"^compile error · exit code \d+$"), timeout=90_000
    )
    marks = page.evaluate("ide.diagnostics()")
    assert [(m["line"], m["column"], m["text"], m["severity"]) for m in marks] == [
        (line, column, word, "error")
    ], marks
    assert word in marks[0]["message"] or "scope" in marks[0]["message"], marks
    expect(page.locator(".cm-lintRange-error")).to_have_text(word)
    expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    # Back to the example: the marks of another program go with it.
    page.click("#reset")
    assert page.evaluate("ide.diagnostics()") == []


def test_on_a_phone_editor_and_terminal_share_the_screen(phone: Page) -> None:
    page = phone
    wait_ready(page)
    width, height = page.evaluate("[innerWidth, innerHeight]")
    assert (width, height) == (390, 664)
    # Nothing to scroll: the terminal is on the screen below the editor, both usable.
    assert page.evaluate("document.scrollingElement.scrollHeight") <= height
    editor = page.locator("#editor").bounding_box()
    terminal = page.locator("#terminal").bounding_box()
    assert editor["y"] + editor["height"] <= terminal["y"]
    assert terminal["y"] + terminal["height"] <= height
    assert editor["height"] > 150 and terminal["height"] > 150
    for control in ("#language", "#run", "#stop", "#status", "#theme", "#download", "#reset", "#clear"):
        box = page.locator(control).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, control
        assert box["y"] + box["height"] <= height, control
    # A finger has no Ctrl+Enter: neither the Run button nor the hint offers it.
    expect(page.locator("#run kbd")).to_be_hidden()
    rows = terminal_rows(page)
    assert " ".join(row["text"].strip() for row in rows) == (
        "Press Run: the program's output appears here, and what you type here goes to it."
    )
    assert not any(row["wrapped"] for row in rows)

    page.tap("#run")
    wait_terminal(page, "Enter your name: ")
    page.tap("#terminal")
    page.keyboard.type("Ada")
    page.keyboard.press("Enter")
    expect(page.locator("#status-text")).to_have_text("finished · exit code 0", timeout=30_000)
    assert "Hello Ada" in terminal_text(page)
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "ide-phone.png"))


def test_the_bundle_comes_compressed_and_immutable(page: Page, ide_server: Server) -> None:
    wait_ready(page)
    with page.expect_response(re.compile(r"/static/dist/ide\.js\?v=\d+$")) as script:
        page.reload()
    wait_ready(page)
    headers = script.value.all_headers()
    # Chromium asks for brotli (over plain http too, for localhost), older browsers for gzip.
    assert headers["content-encoding"] in ("br", "gzip")
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["vary"] == "Accept-Encoding"
    # A fraction of the bundle's size crossed the wire, and the browser ran what it decoded.
    size = os.path.getsize(BUNDLE)
    assert int(headers["content-length"]) < size / 2
    assert len(script.value.body()) == size


def test_page_without_its_bundle_says_how_to_build_it(tmp_path) -> None:
    from fakes import FakeExecutor

    from sandbox_engine import create_app
    from sandbox_engine.config import Config

    app = create_app(Config(state_dir=str(tmp_path / "state")), executor=FakeExecutor())
    try:
        app.static_folder = str(tmp_path / "static")
        page = app.test_client().get("/").get_data(as_text=True)
        assert (
            "The IDE's JavaScript bundle is missing: run <code>make run</code> "
            "(or <code>npm ci &amp;&amp; npm run build</code>)"
        ) in page
        assert "dist/ide.js" not in page

        os.makedirs(tmp_path / "static" / "dist")
        for name in ("ide.js", "ide.css"):
            (tmp_path / "static" / "dist" / name).write_text("")
        page = app.test_client().get("/").get_data(as_text=True)
        assert re.search(r'type="module" nonce="[^"]+" src="/static/dist/ide\.js\?v=', page)
        assert "missing" not in page
    finally:
        app.extensions["sandbox_engine"].shutdown()
