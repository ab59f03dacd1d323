// The API key the page sends, on a server that needs one: asked for once, when the server first
// answers 401, and kept in the browser (localStorage) for the next visits. The session's WebSocket
// needs none: its id, which only a request with the key gets, is its capability.
import { recall, remember } from "./store.js";

const STORED = "api-key";
const $ = (id) => document.getElementById(id);

/** The headers with the key, if the page has one. */
export function withKey(headers = {}) {
  const key = recall(STORED);
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

/** Whether the page holds a key. */
export function hasKey() {
  return Boolean(recall(STORED));
}

// One dialog at a time: a second caller waits for the answer the first gets.
let asking = null;

/**
 * Asks the user for a key (why: the server's words), keeps it, and resolves to it; to null when
 * the user cancels. An empty key forgets the one kept.
 */
export function askForKey(why) {
  if (asking) return asking;
  const dialog = $("key-dialog");
  const input = $("key-input");
  $("key-reason").textContent = why || "This server needs an API key.";
  $("key-forget").hidden = !hasKey();
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        asking = null;
        const value = input.value.trim();
        if (dialog.returnValue === "forget") {
          remember(STORED, null);
          resolve(null);
        } else if (dialog.returnValue === "save" && value) {
          remember(STORED, value);
          resolve(value);
        } else {
          resolve(null);
        }
        input.value = "";
      },
      { once: true },
    );
  });
  dialog.showModal();
  input.focus();
  return asking;
}

/**
 * fetch() with the key; on a 401, asks for a key and tries again with it, until the server takes
 * one or the user cancels (then the 401 is the answer).
 */
export async function fetchWithKey(url, options = {}) {
  for (;;) {
    const response = await fetch(url, { ...options, headers: withKey(options.headers) });
    if (response.status !== 401) return response;
    const body = await response
      .clone()
      .json()
      .catch(() => null);
    const words = body && body.error && body.error.message;
    const why = hasKey() ? `The key kept in this browser was refused: ${words || "unauthorized"}.` : null;
    if (!(await askForKey(why))) return response;
  }
}
