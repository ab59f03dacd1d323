// Terminal text as a person reads it: without escape sequences, and lines that break between words.

// CSI (colours, cursor, modes), OSC (titles, links, palette resets; to BEL or ST), and the
// two-byte ones (keypad modes "\x1b=" and "\x1b>", charsets).
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()*+#][ -~]|[ -~])|\x07/g;

/** The text without its escape sequences (and bells), which print nothing. */
export function stripEscapes(text) {
  return text.replace(ESCAPES, "");
}

/** The text in lines of at most `width` characters, broken between words; a longer word stands
 * alone on its line (and the terminal wraps it). */
export function wrapWords(text, width) {
  const lines = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  lines.push(line);
  return lines;
}
