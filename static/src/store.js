// What the page remembers in the browser (localStorage): each language's draft, the language, the
// theme, the font size and the split. A browser that refuses storage (private mode, a full
// quota) gets a page that forgets, never one that fails.
const PREFIX = "sandbox-engine:";

/** The value remembered under key, or null. */
export function recall(key) {
  try {
    return localStorage.getItem(PREFIX + key);
  } catch {
    return null;
  }
}

/** Remembers value under key; null forgets it. */
export function remember(key, value) {
  try {
    if (value === null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, String(value));
  } catch {
    // Not remembered: the page works on without it.
  }
}
