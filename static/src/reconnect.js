// How the page keeps a session through a dropped network (README: "Sessions that survive the
// network"): which closes are worth a resume, how long to wait before each attempt, the URLs.

// The first wait, its growth and its ceiling, in ms; each wait gets up to a quarter more at
// random, so that the pages of a classroom behind one lost Wi-Fi do not all come back at once.
const FIRST = 250;
const MOST = 8000;

/** How long to wait before reconnect attempt number `attempt` (0, 1, 2, ...). */
export function backoff(attempt, random = Math.random) {
  const wait = Math.min(FIRST * 2 ** attempt, MOST);
  return Math.round(wait * (1 + random() / 4));
}

/**
 * Whether a WebSocket close that came before the run's final state is one a resume can mend:
 * a connection lost without a close frame (1006: the server keeps the program for its reconnect
 * grace) or a lost race with the page's own earlier connection (4409, already attached).
 * Anything else the server closed with on purpose (4408 taken over, 1011 its worker gone, ...)
 * is an answer, not a drop.
 */
export function resumable(event) {
  return event.code === 1006 || event.code === 4409;
}

/** The ws: or wss: URL of `path` under the page's root, with the query's non-null params. */
export function socketURL(root, path, params = {}) {
  const url = new URL(path, root);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) url.searchParams.set(name, String(value));
  }
  return url;
}

/**
 * Whether an incoming message is one the page has not shown yet: a message with a seq at or
 * below the last one seen is a replay of what it already has. Messages without one (error,
 * gap, live, watchers) always count.
 */
export function isNew(message, lastSeq) {
  return typeof message.seq !== "number" || message.seq > lastSeq;
}

/** The words a lost stretch of output gets in the terminal. */
export function gapText(gap) {
  const count = gap.to - gap.from + 1;
  return `[${count} message${count === 1 ? "" : "s"} of output lost here: the server no longer held them]`;
}
