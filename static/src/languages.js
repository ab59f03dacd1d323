// The editor modes this page can load, by the id GET /languages gives a language as its
// "editorMode": each a CodeMirror mode, loaded on first use so the page does not download fifteen
// grammars up front, and the name the editor's title shows. Which mode a language uses, and the
// program it starts from, are the server's word.
import { StreamLanguage } from "@codemirror/language";

const legacy = (load) => async () => StreamLanguage.define(await load());

const MODES = {
  python: { name: "Python", load: async () => (await import("@codemirror/lang-python")).python() },
  javascript: {
    name: "JavaScript",
    load: async () => (await import("@codemirror/lang-javascript")).javascript(),
  },
  typescript: {
    name: "TypeScript",
    load: async () => (await import("@codemirror/lang-javascript")).javascript({ typescript: true }),
  },
  c: { name: "C", load: async () => (await import("@codemirror/lang-cpp")).cpp() },
  cpp: { name: "C++", load: async () => (await import("@codemirror/lang-cpp")).cpp() },
  go: { name: "Go", load: async () => (await import("@codemirror/lang-go")).go() },
  rust: { name: "Rust", load: async () => (await import("@codemirror/lang-rust")).rust() },
  java: { name: "Java", load: async () => (await import("@codemirror/lang-java")).java() },
  php: { name: "PHP", load: async () => (await import("@codemirror/lang-php")).php() },
  ruby: { name: "Ruby", load: legacy(async () => (await import("@codemirror/legacy-modes/mode/ruby")).ruby) },
  perl: { name: "Perl", load: legacy(async () => (await import("@codemirror/legacy-modes/mode/perl")).perl) },
  lua: { name: "Lua", load: legacy(async () => (await import("@codemirror/legacy-modes/mode/lua")).lua) },
  shell: { name: "Shell", load: legacy(async () => (await import("@codemirror/legacy-modes/mode/shell")).shell) },
  csharp: {
    name: "C#",
    load: legacy(async () => (await import("@codemirror/legacy-modes/mode/clike")).csharp),
  },
  haskell: {
    name: "Haskell",
    load: legacy(async () => (await import("@codemirror/legacy-modes/mode/haskell")).haskell),
  },
};

/** The name of an editor mode, "Plain text" for one this page does not know (or none). */
export function modeName(mode) {
  return Object.hasOwn(MODES, mode) ? MODES[mode].name : "Plain text";
}

/** The CodeMirror extension of an editor mode: the mode, or [] (plain text) if unknown or unloadable. */
export async function loadMode(mode) {
  if (!Object.hasOwn(MODES, mode)) return [];
  try {
    return await MODES[mode].load();
  } catch (err) {
    console.warn(`no syntax highlighting for ${mode}:`, err);
    return [];
  }
}
