// The session this tab is attached to, kept in the tab's sessionStorage so that a reload can offer
// to re-attach: its id, the last seq shown, that it is a terminal session, its language and when
// it started. sessionStorage rather than localStorage: another tab of the same browser must not
// be offered (and take over) the session this one still shows.
const KEY = "sandbox-engine:attached";

/** The kept session ({id, lastSeq, tty, language, startedAt}) or null. */
export function keptSession() {
  try {
    const entry = JSON.parse(sessionStorage.getItem(KEY));
    return entry && typeof entry.id === "string" ? entry : null;
  } catch {
    return null;
  }
}

/** Keeps the session's entry; null forgets it (the session ended, or the user let it go). */
export function keepSession(entry) {
  try {
    if (entry === null) sessionStorage.removeItem(KEY);
    else sessionStorage.setItem(KEY, JSON.stringify(entry));
  } catch {
    // Not kept: a reload then offers nothing, and the program ends after the server's grace.
  }
}

/** Asks whether to re-attach to the kept session; resolves to true for "Re-attach". */
export function askReattach(kept) {
  const dialog = document.getElementById("reattach-dialog");
  document.getElementById("reattach-id").textContent = kept.id;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "reattach"), { once: true });
    dialog.showModal();
  });
}
