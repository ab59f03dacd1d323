// The page's two themes as the editor and the terminal take them; the page's own colours are CSS
// variables (ide.css, :root[data-theme]).
import { oneDark } from "@codemirror/theme-one-dark";
import { EditorView } from "@codemirror/view";

export const THEMES = ["dark", "light"];

// basicSetup brings a light highlight style for any editor without a dark theme; this sets the
// rest of the light editor's colours to match the page.
const light = EditorView.theme(
  {
    "&": { backgroundColor: "#ffffff", color: "#24292f" },
    ".cm-gutters": { backgroundColor: "#f6f8fa", color: "#8c959f", borderRight: "1px solid #d8dee4" },
    ".cm-activeLineGutter": { backgroundColor: "#eaeef2" },
    ".cm-activeLine": { backgroundColor: "#f6f8fa" },
  },
  { dark: false },
);

/** The CodeMirror extension of a theme. */
export function editorTheme(name) {
  return name === "light" ? light : oneDark;
}

// One Dark and One Light, as the editor: the ANSI colours programs print in stay readable on each.
const TERMINAL = {
  dark: {
    background: "#1b1e24",
    foreground: "#d7dae0",
    cursor: "#528bff",
    selectionBackground: "#3e4451",
  },
  light: {
    background: "#fafafa",
    foreground: "#383a42",
    cursor: "#526fff",
    cursorAccent: "#fafafa",
    selectionBackground: "#d0d7e2",
    black: "#383a42",
    red: "#e45649",
    green: "#50a14f",
    yellow: "#c18401",
    blue: "#4078f2",
    magenta: "#a626a4",
    cyan: "#0184bc",
    white: "#a0a1a7",
    brightBlack: "#696c77",
    brightRed: "#ca1243",
    brightGreen: "#3e953a",
    brightYellow: "#986801",
    brightBlue: "#2f5af3",
    brightMagenta: "#950095",
    brightCyan: "#0997b3",
    brightWhite: "#383a42",
  },
};

/** xterm.js's theme of a theme. */
export function terminalTheme(name) {
  return TERMINAL[name] ?? TERMINAL.dark;
}
