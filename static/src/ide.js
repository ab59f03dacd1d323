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
import { askReattach, keepSession, keptSession } from "./attached.js";
import { nonce, withStyleNonce } from "./csp.js";
import { parseDiagnostics, toCodeMirror } from "./diagnostics.js";
import { askForKey, fetchWithKey, hasKey, withKey } from "./key.js";
import { loadMode, modeName } from "./languages.js";
import { backoff, gapText, isNew, resumable, socketURL } from "./reconnect.js";
import { createWatchLink, showShareDialog } from "./share.js";
import { dropText, formatElapsed, outcome, refusalText } from "./status.js";
import { recall, remember } from "./store.js";
import { editorTheme, terminalTheme, THEMES } from "./themes.js";

const $ = (id) => document.getElementById(id);
const picker = $("language");
const runButton = $("run");
const stopButton = $("stop");
const shareButton = $("share");
const watchersBadge = $("watchers");
const statusLine = $("status");
const statusText = $("status-text");
const elapsedText = $("elapsed");
const seconds = (value) => parseFloat(value) || null;
const idleTimeout = seconds(document.body.dataset.idleTimeout);
const inputTimeout = seconds(document.body.dataset.inputTimeout);
// How long the server keeps a program whose client dropped: the page stops reconnecting a while
// after that, when the program is surely gone.
const reconnectGrace = parseFloat(document.body.dataset.reconnectGrace);
const giveUpAfter = ((Number.isFinite(reconnectGrace) ? reconnectGrace : 60) + 30) * 1000;
// A watch page (/watch/<id>?token=...) is this page, read-only, one level below the IDE's root.
const watchPath = location.pathname.match(/\/watch\/([^/]+)$/);
const watching = watchPath
  ? { id: decodeURIComponent(watchPath[1]), token: new URLSearchParams(location.search).get("token") ?? "" }
  : null;
const root = watching ? new URL("../", location.href).href : document.baseURI;
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
  // A watch page shows, and changes nothing.
  watching ? [EditorState.readOnly.of(true), EditorView.editable.of(false)] : [],
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

// The one live session, or null. Besides its id and WebSocket: whether it was ever attached, its
// final state, whether Stop was asked, its clock, the compiler's output while it compiles, the
// last seq shown, its phase (COMPILING, RUNNING), whether what arrives is a replay (until `live`),
// the watch token on a watch page, and its reconnection: whether the next connection is a resume,
// the attempt, its timer, when the connection was lost and whether to take over.
let session = null;
// A watch page's first connection refused: a WebSocket's refusal shows the page no status.
const WATCH_REFUSED = "cannot follow this run: the link was revoked, or the run is over";

function newSession(fields = {}) {
  return {
    id: null,
    ws: null,
    opened: false,
    final: null,
    kill: false,
    startedAt: null,
    timer: null,
    compiling: false,
    compiled: "",
    lastSeq: 0,
    phase: null,
    replaying: false,
    watch: null,
    resume: false,
    attempt: 0,
    retryTimer: null,
    lostAt: null,
    takeover: false,
    // The terminal size the server was last given (null: not known to this page).
    size: null,
    ...fields,
  };
}

function send(s, message) {
  if (s.ws && s.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify(message));
}

function setBusy(busy) {
  runButton.disabled = busy || !picker.value || watching !== null;
  stopButton.disabled = !busy || watching !== null;
  picker.disabled = busy || watching !== null;
  shareButton.hidden = !busy || watching !== null;
}

function tick(s) {
  elapsedText.textContent = s.startedAt === null ? "" : formatElapsed(performance.now() - s.startedAt);
}

// since: when the run started (performance.now()'s clock), known before its first state message
// when a reload re-attaches.
function startClock(s, since = performance.now()) {
  // A watcher does not know when the run started, only when it began to follow it.
  if (s.timer !== null || s.watch) return;
  s.startedAt ??= since;
  s.timer = setInterval(() => tick(s), 100);
  tick(s);
}

// What the page keeps in the tab for a reload to re-attach (attached.js).
function keep(s) {
  if (s.watch || s.final) return;
  const startedAt = s.startedAt === null ? null : Date.now() - (performance.now() - s.startedAt);
  keepSession({ id: s.id, lastSeq: s.lastSeq, tty: true, language: s.language, startedAt });
}

async function run() {
  if (session || !picker.value || watching) return;
  const s = newSession({ language: picker.value });
  session = s;
  setBusy(true);
  saveDraft();
  clearDiagnostics();
  resetTerminal();
  // The size the program starts with: the terminal's once refitted.
  s.size = size();
  setStatus("busy", "starting…");
  let response;
  let body = null;
  try {
    response = await fetchWithKey(new URL("session", root), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        language: picker.value,
        code: code(),
        tty: true,
        ...s.size,
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
    deleteSession(id);
    return finish(s, "ended", "stopped by you");
  }
  s.id = id;
  keep(s);
  connect(s);
}

function resetTerminal() {
  hintShown = false;
  term.reset();
  atLineStart = true;
  elapsedText.textContent = "";
  showWatchers(0);
  fit();
}

function deleteSession(id) {
  fetch(new URL(`session/${id}`, root), { method: "DELETE", headers: withKey() }).catch(() => {});
}

// A connection to the session: the first attach, a resume (from the last seq shown, the server
// replaying what came since), or a watch page's read-only stream.
function connect(s) {
  let url;
  if (s.watch) url = socketURL(root, `ws/session/${s.id}/watch`, { token: s.watch, from: "start" });
  else if (s.resume) {
    url = socketURL(root, `ws/session/${s.id}`, { resume: s.lastSeq, takeover: s.takeover ? 1 : null });
  } else url = socketURL(root, `ws/session/${s.id}`);
  if (s.lostAt === null) setStatus("busy", s.watch ? "watching…" : "connecting…");
  const ws = new WebSocket(url);
  let opened = false;
  s.ws = ws;
  ws.onopen = () => {
    opened = true;
    s.opened = true;
    // What comes first on a resume or a watch is a replay, up to the server's `live`.
    s.replaying = s.resume || s.watch !== null;
    s.resume = true;
    s.attempt = 0;
    s.lostAt = null;
    s.takeover = false;
    showPhase(s);
    if (s.kill) send(s, { type: "kill" });
    // The terminal may have changed size while away (a re-attach's page has its own).
    else if (!s.watch) resize(s);
  };
  ws.onmessage = (event) => {
    if (s.ws !== ws) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    receive(s, message);
  };
  ws.onclose = (event) => {
    if (s.ws !== ws || s.final || session !== s) return;
    s.replaying = false;
    // Lost a race with this page's own earlier connection, which the server still counts.
    if (event.code === 4409) s.takeover = true;
    // Once attached, a drop is mended by a resume; while reconnecting (or re-attaching after a
    // reload), an attempt refused before it opened is looked into and tried again.
    if (opened ? resumable(event) : s.lostAt !== null) lost(s, opened);
    else if (s.watch && !s.opened) finish(s, "error", WATCH_REFUSED);
    else finish(s, "error", dropText(event, s.opened));
  };
}

// The connection went: try again, with a growing wait, until the server takes the resume, says
// the session is over, or it has been away longer than it keeps a program without its client.
async function lost(s, wasOpen) {
  s.lostAt ??= performance.now();
  setStatus("busy", "reconnecting…");
  if (!wasOpen) {
    // A refused WebSocket shows the page no status: the session's record says which refusal.
    const record = await sessionRecord(s);
    if (session !== s) return;
    if (record === "gone") return finish(s, "error", "connection lost: the session is gone");
    if (record && record.ended && s.takeover) {
      // Over, and past the time its ending is replayed: its record says how it ended.
      note("[the output since the connection was lost is no longer held]", "33");
      const { tone, text } = outcome(record, { idleTimeout, inputTimeout, stoppedByUser: s.kill });
      return finish(s, tone, text);
    }
    // Most likely the server has not yet noticed the old connection's loss (409): the session is
    // this page's own, so the next attempt takes it over.
    s.takeover = true;
  }
  if (performance.now() - s.lostAt > giveUpAfter) {
    return finish(s, "error", "connection lost: could not reconnect");
  }
  clearTimeout(s.retryTimer);
  s.retryTimer = setTimeout(() => {
    s.retryTimer = null;
    if (session === s) connect(s);
  }, backoff(s.attempt++));
}

// GET /session/<id>: the record ({ended, state, exitCode, reason, signal}), "gone" when the server
// knows no such session, null when it cannot say (unreachable, or a watcher without a key).
async function sessionRecord(s) {
  try {
    const response = await fetch(new URL(`session/${s.id}`, root), { headers: withKey() });
    if (response.status === 404) return "gone";
    if (!response.ok) return null;
    const record = await response.json();
    return { ...record, ended: record.state === "FINISHED" || record.state === "TERMINATED" };
  } catch {
    return null;
  }
}

// The status line for the phase the run is in, once (re)connected.
function showPhase(s) {
  if (s.phase === "RUNNING") setStatus("running", "running");
  else if (s.phase === "COMPILING") setStatus("busy", "compiling");
  else setStatus("busy", s.watch ? "watching…" : "connecting…");
}

function receive(s, message) {
  // A resume's replay may hold what this page has shown already.
  if (!isNew(message, s.lastSeq)) return;
  if (typeof message.seq === "number") s.lastSeq = message.seq;
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
        s.phase = message.state;
        s.compiling = true;
        setStatus("busy", "compiling");
        keep(s);
      } else if (message.state === "RUNNING") {
        startClock(s);
        s.phase = message.state;
        // A compile that succeeded may have warned.
        if (s.compiling) markDiagnostics(s.compiled);
        s.compiling = false;
        setStatus("running", "running");
        if (!s.watch) term.focus();
        keep(s);
      } else if (message.state === "FINISHED" || message.state === "TERMINATED") {
        s.final = message;
        if (s.compiling && message.reason === "compile_error") markDiagnostics(s.compiled);
        s.compiling = false;
        const { tone, text } = outcome(message, { idleTimeout, inputTimeout, stoppedByUser: s.kill });
        finish(s, tone, text);
      }
      break;
    case "gap":
      if (message.to > s.lastSeq) {
        note(gapText({ from: Math.max(message.from, s.lastSeq + 1), to: message.to }), "33");
        s.lastSeq = message.to;
      }
      break;
    case "live": {
      // The replay is over once the terminal has parsed it (xterm.js writes asynchronously):
      // until then a query in it (a cursor position request) would be answered as input.
      const ws = s.ws;
      term.write("", () => {
        if (s.ws === ws) s.replaying = false;
      });
      break;
    }
    case "watchers":
      showWatchers(message.count);
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
  clearTimeout(s.retryTimer);
  tick(s);
  if (!s.watch) keepSession(null);
  setStatus(tone, text);
  note(`[${text}]`, tone === "error" ? "31" : "2");
  term.write("\x1b[?25l");
  setBusy(false);
  if (s.ws && s.ws.readyState <= WebSocket.OPEN) s.ws.close(1000);
}

function stop() {
  const s = session;
  if (!s || s.kill || s.watch) return;
  s.kill = true;
  setStatus("busy", "stopping…");
  // While reconnecting there is no socket to say it on: the server hears it as a DELETE, and the
  // resume replays the ending.
  if (s.lostAt !== null) deleteSession(s.id);
  send(s, { type: "kill" });
}

// The program's terminal takes this one's size, when the server does not have it yet.
function resize(s) {
  const now = size();
  if (!(s.ws && s.ws.readyState === WebSocket.OPEN)) return; // said once (re)connected
  if (s.size && s.size.cols === now.cols && s.size.rows === now.rows) return;
  s.size = now;
  send(s, { type: "resize", ...now });
}

// How many follow the run through a share link, beside the status line.
function showWatchers(count) {
  watchersBadge.hidden = !(count > 0);
  watchersBadge.textContent = `👁 ${count}`;
  watchersBadge.title = `${count} watching this run`;
}

// A link that opens this run read-only elsewhere (POST /session/<id>/watchers), copied to the
// clipboard and shown, for a browser that does not let the page copy.
async function share() {
  const s = session;
  if (!s || !s.id || s.watch) return;
  let link;
  try {
    link = await createWatchLink(root, s.id);
  } catch (err) {
    return showShareDialog(null, `No link: ${err.message}`);
  }
  let copied = false;
  try {
    await navigator.clipboard.writeText(link);
    copied = true;
  } catch {
    // No clipboard permission: the dialog shows the link, selected, to copy by hand.
  }
  showShareDialog(link, copied ? "Copied to the clipboard." : "Copy this link:");
}

// Offered after a reload while a program this tab ran goes on (attached.js): accepting replays
// it from the start into the empty terminal and carries on live; declining forgets it (the
// server ends it after its reconnect grace).
async function offerReattach() {
  const kept = keptSession();
  if (!kept) return;
  if (!(await askReattach(kept))) return keepSession(null);
  reattach(kept);
}

function reattach(kept) {
  if (session) return;
  if (languages.has(kept.language) && kept.language !== currentLanguage) {
    picker.value = kept.language;
    selectLanguage(kept.language);
  }
  const s = newSession({ id: kept.id, language: kept.language, resume: true, lostAt: performance.now() });
  session = s;
  setBusy(true);
  resetTerminal();
  setStatus("busy", "re-attaching…");
  if (Number.isFinite(kept.startedAt)) startClock(s, performance.now() - (Date.now() - kept.startedAt));
  connect(s);
}

// A watch page (/watch/<id>?token=...): the run, read-only, from its start.
function watch() {
  const s = newSession({ id: watching.id, watch: watching.token });
  session = s;
  setBusy(true);
  resetTerminal();
  term.write("\x1b[?25l");
  connect(s);
}

// Every keystroke goes to the program as it is typed, Ctrl-C as the raw byte "\x03": the session
// runs on a terminal whose line discipline echoes, edits lines and turns ^C into SIGINT. Not
// while a replay is being written: what xterm.js says then answers the replay's queries.
term.onData((data) => {
  if (session && !session.watch && !session.replaying) send(session, { type: "input", data });
});
term.onResize(() => {
  if (session && !session.watch) resize(session);
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
shareButton.addEventListener("click", share);
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
// A draft typed just before the page goes is not lost to the save's delay. A run goes on without
// the page (a reload offers to re-attach): the browser's close frame would end it, a detach first
// keeps it for the server's reconnect grace.
window.addEventListener("pagehide", () => {
  saveDraft();
  const s = session;
  if (s && s.id && !s.watch && !s.final) {
    send(s, { type: "detach" });
    keep(s);
  }
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") saveDraft();
});

async function loadLanguages() {
  setStatus("busy", "loading languages…");
  try {
    const response = await fetchWithKey(new URL("languages", root));
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
if (watching) {
  // Nothing to choose or run here, and no key needed: the token is the link's capability.
  document.body.dataset.watching = "";
  $("brand-mode").textContent = "watching · read-only";
  picker.replaceChildren(new Option("watching", ""));
  $("reset").disabled = true;
  setCode("The code stays with the one who shared this run: the terminal follows it, read-only.\n");
  watch();
} else {
  loadLanguages().then(offerReattach);
}

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
  share,
  status: () => statusText.textContent,
  // The session this page follows: its id, the last seq shown, whether a replay is being written.
  session: () => session && { id: session.id, lastSeq: session.lastSeq, replaying: session.replaying },
  // The marks in the editor: [{line, column, text, severity, message}].
  diagnostics,
  parseDiagnostics,
  display: () => ({ theme: currentTheme, fontSize, split }),
};
