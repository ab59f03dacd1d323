// What the status line says: a run's outcome and the server's refusals, in words.

function seconds(value) {
  const n = Number(value);
  return Number.isInteger(n) ? `${n} s` : `${n.toFixed(1)} s`;
}

/** Words for the reason of a final state; idleTimeout is the server's --idle-timeout in seconds. */
export function reasonText(state, reason, idleTimeout) {
  switch (reason) {
    case "exited":
      return "finished";
    case "idle_timeout":
      return idleTimeout ? `stopped: no output for ${seconds(idleTimeout)}` : "stopped: no output for too long";
    case "timeout":
      return "time limit reached";
    case "output_limit":
      return "output limit reached";
    case "memory_limit":
      return "memory limit exceeded";
    case "killed":
      return "stopped";
    case "compile_error":
      return "compile error";
    case "server_shutdown":
      return "server shutting down";
    case "internal_error":
      return "internal error";
    case "client_disconnected":
      return "disconnected";
    default:
      if (state === "FINISHED") return "finished";
      return reason ? `ended: ${String(reason).replaceAll("_", " ")}` : "ended";
  }
}

/** Words for a POST /session that was refused: status, parsed JSON body (or null), Retry-After. */
export function refusalText(status, body, retryAfter) {
  if (status === 429) {
    const wait = parseInt(retryAfter, 10);
    return Number.isFinite(wait) ? `server busy, try again in ${wait} s` : "server busy, try again shortly";
  }
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
