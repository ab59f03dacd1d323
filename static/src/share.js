// Share links: POST /session/<id>/watchers makes one (a watch token inside an absolute URL of the
// page /watch/<id>), and a dialog shows it.
import { fetchWithKey } from "./key.js";

/** The URL of a new read-only link to the session; throws with the server's words if refused. */
export async function createWatchLink(root, id) {
  const response = await fetchWithKey(new URL(`session/${id}/watchers`, root), { method: "POST" });
  const body = await response.json().catch(() => null);
  if (!response.ok || !body || !body.url) {
    throw new Error(body?.error?.message ?? `HTTP ${response.status}`);
  }
  return body.url;
}

/** Shows the link (selected, to copy by hand) or, with link null, why there is none. */
export function showShareDialog(link, words) {
  const dialog = document.getElementById("share-dialog");
  const input = document.getElementById("share-url");
  document.getElementById("share-note").textContent = words;
  input.value = link ?? "";
  input.hidden = link === null;
  dialog.showModal();
  if (link !== null) input.select();
}
