// The IDE page: a CodeMirror editor, an xterm.js terminal bound to one session at a time, and the
// session protocol of README.md (POST /session, then the WebSocket /ws/session/<id>).
import "@xterm/xterm/css/xterm.css";
import "./ide.css";

import { indentWithTab, isolateHistory } from "@codemirror/commands";
import { forEachDiagnostic, lintGutter, setDiagnostics } from "@codemirror/lint";
import { Compartment, EditorState } from "@codemirror/state";
import { keymap } from "@codemirror/view";
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { basicSetup, EditorView } from "codemirror";

import { stripEscapes, wrapWords } from "./ansi.js";
import { nonce, withStyleNonce } from "./csp.js";
import { parseDiagnostics, toCodeMirror } from "./diagnostics.js";
import { askForKey, fetchWithKey, hasKey, withKey } from "./key.js";
import { loadMode, modeName } from "./languages.js";
import { dropText, formatElapsed, outcome, refusalText } from "./status.js";
import { recall, remember } from "./store.js";
import { editorTheme, terminalTheme, THEMES } from "./themes.js";

const $ = (id) => document.getElementById(id);
const picker = $("language");
const runButton = $("run");
const stopButton = $("stop");
const statusLine = $("status");
const statusText = $("status-text");
const elapsedText = $("elapsed");
const seconds = (value) => parseFloat(value) || null;
const idleTimeout = seconds(document.body.dataset.idleTimeout);
const inputTimeout = seconds(document.body.dataset.inputTimeout);
// A phone or a tablet: no keyboard shortcuts to offer.
const touch = matchMedia("(hover: none) and (pointer: coarse)").matches;
const mac = /Mac|iPhone|iPad/.test(navigator.platform);
const clamp = (n, least, most) => Math.min(Math.max(n, least), most);

// ---- editor -------------------------------------------------------------------------------------

const language = new Compartment();
const theme = new Compartment();
let currentTheme = THEMES.includes(document.documentElement.dataset.theme)
  ? document.documentElement.dataset.theme
  : "dark";
const extensions = [
  EditorView.cspNonce.of(nonce),
  basicSetup,
  keymap.of([indentWithTab]),
  theme.of(editorTheme(currentTheme)),
  language.of([]),
  lintGutter(),
  EditorView.updateListener.of((update) => {
    if (update.docChanged) scheduleSave();
  }),
];
const editor = new EditorView({ parent: $("editor"), state: EditorState.create({ extensions }) });
// The languages as GET /languages describes them, by id: each its editor mode and example.
let languages = new Map();
// Each language's draft: kept here while the page is open and in the browser across reloads.
const drafts = new Map();
let currentLanguage = null;

const exampleOf = (id) => languages.get(id)?.example ?? "";
const modeOf = (id) => languages.get(id)?.editorMode;

function draftOf(id) {
  return drafts.get(id) ?? recall(`code:${id}`) ?? exampleOf(id);
}

// Saved a moment after the typing stops, and at once when the language changes or the page goes.
let saveTimer = null;
function scheduleSave() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(saveDraft, 300);
}

function saveDraft() {
  clearTimeout(saveTimer);
  saveTimer = null;
  if (currentLanguage === null) return;
  const text = code();
  drafts.set(currentLanguage, text);
  // A draft that is the example is not kept: the page then follows the server's example.
  remember(`code:${currentLanguage}`, text === exampleOf(currentLanguage) ? null : text);
}

async function selectLanguage(id) {
  if (currentLanguage !== null) saveDraft();
  const previous = currentLanguage;
  currentLanguage = id;
  remember("language", id);
  if (previous !== id) {
    // A state of its own: no undoing into another language's code, no marks from its compile.
    editor.setState(EditorState.create({ doc: draftOf(id), extensions }));
    editor.dispatch({ effects: theme.reconfigure(editorTheme(currentTheme)) });
  }
  $("mode").textContent = modeName(modeOf(id));
  const mode = await loadMode(modeOf(id));
  // A quicker later choice wins over a slow load.
  if (currentLanguage === id) editor.dispatch({ effects: language.reconfigure(mode) });
}

function code() {
  return editor.state.doc.toString();
}

function setCode(text) {
  editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: text } });
}

// A step of its own in the history, so Ctrl+Z brings the draft back.
function resetToExample() {
  if (currentLanguage === null) return;
  editor.dispatch({
    changes: { from: 0, to: editor.state.doc.length, insert: exampleOf(currentLanguage) },
    annotations: isolateHistory.of("full"),
  });
  clearDiagnostics();
  saveDraft();
  editor.focus();
}

// The file as it is in the editor, named as the language's source file.
function download() {
  const lang = languages.get(currentLanguage);
  if (!lang) return;
  const name = lang.sourceFile || `main${lang.extensions?.[0] ?? ".txt"}`;
  const url = URL.createObjectURL(new Blob([code()], { type: "text/plain;charset=utf-8" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// The compiler's errors and warnings, marked at their lines.
function markDiagnostics(output) {
  const found = toCodeMirror(editor.state.doc, parseDiagnostics(output));
  editor.dispatch(setDiagnostics(editor.state, found));
  return found.length;
}

function clearDiagnostics() {
  editor.dispatch(setDiagnostics(editor.state, []));
}

function diagnostics() {
  const found = [];
  forEachDiagnostic(editor.state, (d, from, to) => {
    const line = editor.state.doc.lineAt(from);
    found.push({
      line: line.number,
      column: from - line.from + 1,
      text: editor.state.sliceDoc(from, to),
      severity: d.severity,
      message: d.message,
    });
  });
  return found;
}

// ---- terminal -----------------------------------------------------------------------------------

const FONT_SIZE = { least: 10, most: 24, usual: 14 };
let fontSize = clamp(parseInt(recall("font-size"), 10) || FONT_SIZE.usual, FONT_SIZE.least, FONT_SIZE.most);

const term = new Terminal({
  cursorBlink: true,
  fontFamily: '"DejaVu Sans Mono", "Liberation Mono", ui-monospace, Menlo, Consolas, monospace',
  fontSize,
  // Room below the baseline: at 1.0 the DOM renderer clips underscores.
  lineHeight: 1.2,
  scrollback: 5000,
  theme: terminalTheme(currentTheme),
});
const fitAddon = new FitAddon();
term.loadAddon(fitAddon);
withStyleNonce(() => term.open($("terminal")));

let fitQueued = false;
function fit() {
  fitQueued = false;
  try {
    fitAddon.fit();
  } catch {
    // Hidden or zero-sized pane: keep the last size.
  }
}
new ResizeObserver(() => {
  if (!fitQueued) {
    fitQueued = true;
    requestAnimationFrame(fit);
  }
}).observe($("terminal"));
fit();

// The terminal's size as the server accepts it: its limits come with the page.
const maxCols = parseInt(document.body.dataset.maxCols, 10) || 80;
const maxRows = parseInt(document.body.dataset.maxRows, 10) || 24;
function size() {
  return { cols: clamp(term.cols, 1, maxCols), rows: clamp(term.rows, 1, maxRows) };
}

// Whether the cursor is at the start of a line: what the program printed last decides, not the
// escape sequences after it (Mono's console ends with some, which print nothing).
let atLineStart = true;
function write(text) {
  if (!text) return;
  term.write(text);
  const visible = stripEscapes(text);
  if (visible) atLineStart = /[\r\n]$/.test(visible);
}

// A line from the page itself (not the program), dimmed or coloured, on a line of its own, broken
// between words to fit the terminal.
function note(text, colour = "2") {
  const lines = wrapWords(text, Math.max(term.cols, 20)).join("\r\n");
  write(`${atLineStart ? "" : "\r\n"}\x1b[${colour}m${lines}\x1b[0m\r\n`);
}

// The empty terminal says what it is for; written again when its width changes until a run.
let hintShown = false;
function showHint() {
  term.reset();
  atLineStart = true;
  const keys = touch ? "" : ` (${runButton.querySelector("kbd").textContent})`;
  note(`Press Run${keys}: the program's output appears here, and what you type here goes to it.`);
  // Nothing listens until a run starts: no cursor inviting to type (a run's reset shows it).
  term.write("\x1b[?25l");
  hintShown = true;
}

// The terminal's text, wrapped lines joined; the cursor's line keeps its trailing blanks, so that a
// prompt such as "Enter your name: " reads as the program wrote it.
function terminalText() {
  const buffer = term.buffer.active;
  const cursorRow = buffer.baseY + buffer.cursorY;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) {
    const line = buffer.getLine(i);
    let text = line.translateToString(true);
    if (i === cursorRow) text = line.translateToString(false, 0, Math.max(text.length, buffer.cursorX));
    if (line.isWrapped && lines.length) lines[lines.length - 1] += text;
    else lines.push(text);
  }
  return lines.join("\n").replace(/\n+$/, "");
}

// ---- display: theme, text size, split -----------------------------------------------------------

const themeButton = $("theme");
function setTheme(name, keep) {
  currentTheme = name;
  document.documentElement.dataset.theme = name;
  editor.dispatch({ effects: theme.reconfigure(editorTheme(name)) });
  term.options.theme = terminalTheme(name);
  const other = name === "dark" ? "light" : "dark";
  themeButton.textContent = other === "light" ? "☀" : "☾";
  themeButton.title = `${other === "light" ? "Light" : "Dark"} theme`;
  themeButton.setAttribute("aria-label", themeButton.title);
  if (keep) remember("theme", name);
}

function setFontSize(n) {
  fontSize = clamp(n, FONT_SIZE.least, FONT_SIZE.most);
  document.documentElement.style.setProperty("--code-size", `${fontSize}px`);
  term.options.fontSize = fontSize;
  $("font-smaller").disabled = fontSize <= FONT_SIZE.least;
  $("font-larger").disabled = fontSize >= FONT_SIZE.most;
  $("font-smaller").title = `Smaller text (${fontSize} px now)`;
  $("font-larger").title = `Larger text (${fontSize} px now)`;
  remember("font-size", fontSize === FONT_SIZE.usual ? null : fontSize);
  editor.requestMeasure();
  fit();
}

// The editor's share of the page in percent: of the width side by side, of the height stacked.
const panes = $("panes");
const splitter = $("splitter");
const stacked = matchMedia("(max-width: 760px)");
const SPLIT = { least: 15, most: 85, usual: 50, step: 5 };
let split = SPLIT.usual;
function setSplit(percent, keep) {
  split = Math.round(clamp(percent, SPLIT.least, SPLIT.most) * 10) / 10;
  panes.style.setProperty("--split", `${split}%`);
  splitter.setAttribute("aria-valuenow", String(Math.round(split)));
  splitter.setAttribute("aria-orientation", stacked.matches ? "horizontal" : "vertical");
  if (keep) remember("split", split === SPLIT.usual ? null : split);
}

splitter.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  splitter.setPointerCapture(event.pointerId);
  splitter.classList.add("dragging");
  const move = (e) => {
    const box = panes.getBoundingClientRect();
    const share = stacked.matches ? (e.clientY - box.top) / box.height : (e.clientX - box.left) / box.width;
    setSplit(share * 100, false);
  };
  const done = () => {
    splitter.classList.remove("dragging");
    splitter.removeEventListener("pointermove", move);
    splitter.removeEventListener("pointerup", done);
    splitter.removeEventListener("pointercancel", done);
    setSplit(split, true);
  };
  splitter.addEventListener("pointermove", move);
  splitter.addEventListener("pointerup", done);
  splitter.addEventListener("pointercancel", done);
});
splitter.addEventListener("keydown", (event) => {
  const steps = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1 };
  if (event.key in steps) setSplit(split + steps[event.key] * SPLIT.step, true);
  else if (event.key === "Home") setSplit(SPLIT.least, true);
  else if (event.key === "End") setSplit(SPLIT.most, true);
  else return;
  event.preventDefault();
});
stacked.addEventListener("change", () => setSplit(split, false));

// ---- status line --------------------------------------------------------------------------------

function setStatus(tone, text) {
  statusLine.dataset.tone = tone;
  statusText.textContent = text;
}

// ---- sessions -----------------------------------------------------------------------------------

// The one live session, or null: { ws, opened, final, kill, startedAt, timer, compiling, compiled }.
let session = null;

function send(s, message) {
  if (s.ws && s.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify(message));
}

function setBusy(busy) {
  runButton.disabled = busy || !picker.value;
  stopButton.disabled = !busy;
  picker.disabled = busy;
}

function tick(s) {
  elapsedText.textContent = s.startedAt === null ? "" : formatElapsed(performance.now() - s.startedAt);
}

function startClock(s) {
  if (s.startedAt !== null) return;
  s.startedAt = performance.now();
  s.timer = setInterval(() => tick(s), 100);
  tick(s);
}

async function run() {
  if (session || !picker.value) return;
  const s = {
    ws: null,
    opened: false,
    final: null,
    kill: false,
    startedAt: null,
    timer: null,
    // The compiler's output, while it runs: its errors are marked in the editor.
    compiling: false,
    compiled: "",
  };
  session = s;
  setBusy(true);
  saveDraft();
  clearDiagnostics();
  hintShown = false;
  term.reset();
  atLineStart = true;
  elapsedText.textContent = "";
  fit();
  setStatus("busy", "starting…");
  let response;
  let body = null;
  try {
    response = await fetchWithKey(new URL("session", document.baseURI), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        language: picker.value,
        code: code(),
        tty: true,
        ...size(),
      }),
    });
    body = await response.json().catch(() => null);
  } catch {
    return finish(s, "error", "cannot reach the server");
  }
  showKeyButton();
  if (!response.ok) {
    return finish(s, "error", refusalText(response.status, body, response.headers.get("Retry-After")));
  }
  const id = body && body.sessionId;
  if (!id) return finish(s, "error", "the server answered without a session id");
  if (s.kill) {
    // Stopped before it started: nothing ran, so just let the server know.
    fetch(new URL(`session/${id}`, document.baseURI), { method: "DELETE", headers: withKey() }).catch(() => {});
    return finish(s, "ended", "stopped by you");
  }
  attach(s, id);
}

function attach(s, id) {
  const url = new URL(`ws/session/${id}`, document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  setStatus("busy", "connecting…");
  const ws = new WebSocket(url);
  s.ws = ws;
  ws.onopen = () => {
    s.opened = true;
    if (s.kill) send(s, { type: "kill" });
  };
  ws.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    receive(s, message);
  };
  ws.onclose = (event) => {
    if (!s.final && session === s) finish(s, "error", dropText(event, s.opened));
  };
}

function receive(s, message) {
  switch (message.type) {
    case "stdout":
      if (s.compiling) s.compiled += message.data;
      write(message.data);
      break;
    case "stderr":
      if (s.compiling) s.compiled += message.data;
      write(`\x1b[31m${message.data}\x1b[39m`);
      break;
    case "state":
      if (message.state === "COMPILING") {
        startClock(s);
        s.compiling = true;
        setStatus("busy", "compiling");
      } else if (message.state === "RUNNING") {
        startClock(s);
        // A compile that succeeded may have warned.
        if (s.compiling) markDiagnostics(s.compiled);
        s.compiling = false;
        setStatus("running", "running");
        term.focus();
      } else if (message.state === "FINISHED" || message.state === "TERMINATED") {
        s.final = message;
        if (s.compiling && message.reason === "compile_error") markDiagnostics(s.compiled);
        s.compiling = false;
        const { tone, text } = outcome(message, { idleTimeout, inputTimeout, stoppedByUser: s.kill });
        finish(s, tone, text);
      }
      break;
    case "error":
      // The server answers messages it does not know with an error and carries on: a server
      // without tty support does so for resize and signal, which need no word to the user.
      if (/\b(resize|signal)\b/.test(message.message)) console.debug("server:", message.message);
      else note(`[server: ${message.message}]`, "33");
      break;
  }
}

function finish(s, tone, text) {
  if (session !== s) return;
  session = null;
  clearInterval(s.timer);
  tick(s);
  setStatus(tone, text);
  note(`[${text}]`, tone === "error" ? "31" : "2");
  term.write("\x1b[?25l");
  setBusy(false);
  if (s.ws && s.ws.readyState <= WebSocket.OPEN) s.ws.close(1000);
}

function stop() {
  const s = session;
  if (!s || s.kill) return;
  s.kill = true;
  setStatus("busy", "stopping…");
  send(s, { type: "kill" });
}

// Every keystroke goes to the program as it is typed, Ctrl-C as the raw byte "\x03": the session
// runs on a terminal whose line discipline echoes, edits lines and turns ^C into SIGINT.
term.onData((data) => {
  if (session) send(session, { type: "input", data });
});
term.onResize(() => {
  if (session) send(session, { type: "resize", ...size() });
  else if (hintShown) showHint();
});

// ---- controls -----------------------------------------------------------------------------------

if (mac) {
  runButton.querySelector("kbd").textContent = "⌘↩";
  runButton.title = "Run (⌘+Enter)";
  stopButton.title = "Stop the program (⌘+.)";
}
runButton.addEventListener("click", run);
stopButton.addEventListener("click", stop);
picker.addEventListener("change", () => selectLanguage(picker.value));
$("clear").addEventListener("click", () => {
  term.clear();
  term.focus();
});
$("reset").addEventListener("click", resetToExample);
$("download").addEventListener("click", download);
$("font-smaller").addEventListener("click", () => setFontSize(fontSize - 1));
$("font-larger").addEventListener("click", () => setFontSize(fontSize + 1));
themeButton.addEventListener("click", () => setTheme(currentTheme === "dark" ? "light" : "dark", true));
// The key button: on a server that needs a key, to give another one or forget the one kept.
const keyButton = $("key");
function showKeyButton(needed = false) {
  keyButton.hidden = !(needed || hasKey());
}
keyButton.addEventListener("click", async () => {
  const kept = "This browser keeps a key for this server: give another one, or forget it.";
  await askForKey(hasKey() ? kept : null);
  showKeyButton(true);
  if (!languages.size) loadLanguages();
});
// Ctrl/Cmd+Enter runs and Ctrl/Cmd+. stops from anywhere, taken before the editor or the terminal
// sees the key (Ctrl-C stays the program's: it interrupts it in the terminal).
window.addEventListener(
  "keydown",
  (event) => {
    if (!(event.ctrlKey || event.metaKey)) return;
    if (event.key === "Enter") run();
    else if (event.key === ".") stop();
    else return;
    event.preventDefault();
    event.stopPropagation();
  },
  true,
);
// A draft typed just before the page goes is not lost to the save's delay.
window.addEventListener("pagehide", saveDraft);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") saveDraft();
});

async function loadLanguages() {
  setStatus("busy", "loading languages…");
  try {
    const response = await fetchWithKey(new URL("languages", document.baseURI));
    showKeyButton(response.status === 401);
    if (response.status === 401) throw new Error("the server needs an API key (🔑 to give one)");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const list = (await response.json()).languages;
    languages = new Map(list.map((lang) => [lang.id, lang]));
    picker.replaceChildren(
      ...list.map((lang) => new Option(`${lang.name} ${lang.version}`.trim(), lang.id)),
    );
    const first = languages.get(recall("language")) || languages.get("python") || list[0];
    if (!first) throw new Error("the server offers no language");
    picker.value = first.id;
    await selectLanguage(first.id);
    setStatus("idle", "ready");
    showHint();
  } catch (err) {
    picker.replaceChildren();
    setStatus("error", `cannot load the languages: ${err.message}`);
    term.write("\x1b[?25l");
  }
  setBusy(false);
}

setTheme(currentTheme, false);
showKeyButton();
setFontSize(fontSize);
setSplit(parseFloat(recall("split")) || SPLIT.usual, false);
loadLanguages();

// Hooks for tests and for the curious, from the browser console.
window.ide = {
  editor,
  terminal: term,
  code,
  setCode,
  terminalText,
  selectLanguage: (id) => {
    picker.value = id;
    return selectLanguage(id);
  },
  // By language id, as the page uses them: its editor mode's name, that mode, its example.
  modeName: (id) => modeName(modeOf(id)),
  loadMode: (id) => loadMode(modeOf(id)),
  example: exampleOf,
  run,
  stop,
  status: () => statusText.textContent,
  // The marks in the editor: [{line, column, text, severity, message}].
  diagnostics,
  parseDiagnostics,
  display: () => ({ theme: currentTheme, fontSize, split }),
};
