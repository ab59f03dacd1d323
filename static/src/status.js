// What the status line says: a run's outcome and the server's refusals, in words.

// What the signal that ended a program means; the CLI has the same words (sandbox_engine/client.py).
const SIGNALS = {
  SIGSEGV: "segmentation fault",
  SIGABRT: "aborted",
  SIGFPE: "arithmetic error",
  SIGKILL: "killed",
  SIGILL: "illegal instruction",
  SIGBUS: "bus error",
  SIGTERM: "terminated",
  SIGINT: "interrupted",
  SIGPIPE: "broken pipe",
  SIGXCPU: "CPU time limit",
};

/** A number of seconds as a person says it: "30 s", "2.5 s", "5 min". */
export function duration(value) {
  const n = Number(value);
  if (n >= 60 && n % 60 === 0) return `${n / 60} min`;
  return Number.isInteger(n) ? `${n} s` : `${n.toFixed(1)} s`;
}

/** "killed by SIGSEGV (segmentation fault)"; a signal without words here is named alone. */
export function signalText(name) {
  const meaning = Object.hasOwn(SIGNALS, name) ? SIGNALS[name] : null;
  return meaning ? `killed by ${name} (${meaning})` : `killed by ${name}`;
}

const join = (...parts) => parts.filter(Boolean).join(" · ");

/**
 * The tone and the words of a final state message ({state, exitCode, reason, signal}).
 * context: the server's idleTimeout and inputTimeout in seconds (or null), and stoppedByUser.
 */
export function outcome(message, context = {}) {
  const { state, reason, exitCode, signal } = message;
  const code = Number.isInteger(exitCode) ? `exit code ${exitCode}` : "";
  const { idleTimeout, inputTimeout, stoppedByUser } = context;
  switch (reason) {
    case "exited":
      // A program killed by a signal says which, not 128+N.
      if (signal) return { tone: "ended", text: signalText(signal) };
      return { tone: exitCode === 0 ? "ok" : "ended", text: join("finished", code) };
    case "compile_error":
      return { tone: "error", text: join("compile error", code) };
    case "killed":
      return { tone: "ended", text: stoppedByUser ? "stopped by you" : "stopped" };
    case "idle_timeout":
      return {
        tone: "ended",
        text: `ended: no input and no output for ${idleTimeout ? duration(idleTimeout) : "too long"}`,
      };
    case "input_timeout":
      return {
        tone: "ended",
        text: `ended: no input for ${inputTimeout ? duration(inputTimeout) : "too long"} while waiting at a prompt`,
      };
    case "timeout":
      return { tone: "ended", text: "time limit reached" };
    case "output_limit":
      return { tone: "ended", text: "output limit reached" };
    case "memory_limit":
      return { tone: "ended", text: "memory limit exceeded" };
    case "server_shutdown":
      return { tone: "ended", text: "server shutting down" };
    case "internal_error":
      return { tone: "error", text: "internal error" };
    case "client_disconnected":
      return { tone: "ended", text: "disconnected" };
    default:
      if (state === "FINISHED") return { tone: exitCode === 0 ? "ok" : "ended", text: join("finished", code) };
      return { tone: "ended", text: reason ? `ended: ${String(reason).replaceAll("_", " ")}` : "ended" };
  }
}

/** Words for a POST /session that was refused: status, parsed JSON body (or null), Retry-After. */
export function refusalText(status, body, retryAfter) {
  const code = body && body.error && body.error.code;
  if (status === 429) {
    const wait = parseInt(retryAfter, 10);
    const when = Number.isFinite(wait) ? `try again in ${wait} s` : "try again shortly";
    // The key's own limits, else the server's.
    if (code === "quota_exceeded") return `all the sessions your key may have are running, ${when}`;
    if (code === "rate_limited") return `too many requests with your key, ${when}`;
    return `server busy, ${when}`;
  }
  if (status === 401) return "refused: the server needs an API key (🔑 to give one)";
  if (status === 503) return "sandbox runtime unavailable";
  const message = body && body.error && body.error.message;
  return message ? `refused: ${message}` : `refused: HTTP ${status}`;
}

/** Elapsed time: tenths of a second for the first minute, then m:ss. */
export function formatElapsed(ms) {
  const s = Math.max(0, ms) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const whole = Math.floor(s);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** Words for a WebSocket that closed before the run's final state. */
export function dropText(event, opened) {
  const why = event.reason ? `: ${event.reason}` : ` (code ${event.code})`;
  return opened ? `connection lost${why}` : `could not attach to the session${why}`;
}
