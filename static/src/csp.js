// The page's Content-Security-Policy (sandbox_engine/headers.py) applies a <style> element only
// when it carries the page's nonce, which the server puts on the page's own scripts.
export const nonce = document.querySelector("script[nonce]")?.nonce ?? "";

// xterm.js writes <style> elements and takes no nonce: those made while `build` runs (opening
// the terminal makes them all) get the page's. CodeMirror takes it as EditorView.cspNonce.
export function withStyleNonce(build) {
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function createElement(name, options) {
    const element = create.call(this, name, options);
    if (String(name).toLowerCase() === "style") element.nonce = nonce;
    return element;
  };
  try {
    return build();
  } finally {
    Document.prototype.createElement = create;
  }
}
