// The compiler's messages that point at a line of the program, read from a compile's output so
// that the editor can mark them there. The forms the compilers of GET /languages print, in a pipe
// or (colours and all) on a terminal:
//   gcc, g++, go, ghc, tsc on a terminal   main.c:5:12: error: ...   main.ts:2:7 - error TS2322: ...
//   mcs, tsc in a pipe                     main.cs(3,17): error CS0029: ...
//   javac                                  Main.java:3: error: ...   (its column: the caret line)
//   rustc                                  error[E0308]: ...   then   --> main.rs:3:18

import { stripEscapes } from "./ansi.js";

const SEVERITY = /^(?<severity>fatal error|error|warning|note)(?:\[[^\]]*\])?(?:\s+[A-Z]+\d+)?:\s*(?<message>.*)$/;
const COLON = /^(?<file>[^\s:()]+):(?:(?<line>\d+):(?<column>\d+)(?:-\d+)?|\((?<line2>\d+),(?<column2>\d+)\)-\(\d+,\d+\))(?::\s*| - )(?<rest>.*)$/;
const PARENS = /^(?<file>[^\s:()]+)\((?<line>\d+),(?<column>\d+)\):\s*(?<rest>.*)$/;
const JAVAC = /^(?<file>[^\s:()]+\.java):(?<line>\d+):\s*(?<rest>.*)$/;
const RUSTC = /^(?<severity>error|warning)(?:\[\w+\])?:\s*(?<message>.*)$/;
const ARROW = /^\s*--> (?<file>[^\s:]+):(?<line>\d+):(?<column>\d+)/;
// Only the program's own file: main.c, ./main.go, Main.java, not a library's header.
const SOURCE = /(?:^|\/)(?:main|Main)\.\w+$/;

/** The output's text without escape sequences (gcc's colours and links), lines ended by \n. */
export function plainText(output) {
  return stripEscapes(output).replace(/\r\n?/g, "\n");
}

function severityOf(rest) {
  const match = SEVERITY.exec(rest);
  if (!match) return { severity: "error", message: rest.trim() };
  const severity = match.groups.severity === "fatal error" ? "error" : match.groups.severity;
  return { severity, message: match.groups.message.trim() };
}

// GHC puts its message on the lines after the location, indented; its source excerpt ("  |",
// "4 |") ends it.
function followingMessage(lines, i) {
  const message = [];
  for (let j = i + 1; j < lines.length && /^\s+\S/.test(lines[j]) && !/^\s*\d*\s*\|/.test(lines[j]); j++) {
    message.push(lines[j].trim());
  }
  return message.join(" ");
}

/**
 * The diagnostics in a compile's output: [{line, column (null when the compiler gives none),
 * severity ("error" or "warning"), message}], in the order printed, each once. Notes are left out:
 * they explain a diagnostic, usually at another place.
 */
export function parseDiagnostics(output) {
  const lines = plainText(output).split("\n");
  const found = [];
  const seen = new Set();
  const add = (file, line, column, severity, message) => {
    if (!SOURCE.test(file) || severity === "note") return;
    const key = `${line}:${column}:${message}`;
    if (seen.has(key)) return;
    seen.add(key);
    found.push({ line: Number(line), column: column ? Number(column) : null, severity, message });
  };
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i];
    let match = COLON.exec(text) || PARENS.exec(text);
    if (match) {
      const { file, rest } = match.groups;
      const line = match.groups.line ?? match.groups.line2;
      const column = match.groups.column ?? match.groups.column2;
      let { severity, message } = severityOf(rest);
      if (!message) message = followingMessage(lines, i);
      add(file, line, column, severity, message);
      continue;
    }
    match = JAVAC.exec(text);
    if (match) {
      const { severity, message } = severityOf(match.groups.rest);
      // javac prints the source line, then a caret under the column, then what it means
      // ("symbol: method undefinedName()", "location: class Main").
      const caret = /^(\s*)\^\s*$/.exec(lines[i + 2] ?? "");
      const details = [];
      for (let j = i + 3; caret && /^\s+(symbol|location|required|found|reason):/.test(lines[j] ?? ""); j++) {
        details.push(lines[j].trim().replace(/\s+/g, " "));
      }
      const full = [message, ...details].join("; ");
      add(match.groups.file, match.groups.line, caret ? caret[1].length + 1 : null, severity, full);
      continue;
    }
    match = RUSTC.exec(text);
    if (match) {
      const arrow = ARROW.exec(lines[i + 1] ?? "");
      if (arrow) {
        const { file, line, column } = arrow.groups;
        add(file, line, column, match.groups.severity, match.groups.message.trim());
      }
    }
  }
  return found;
}

/** The diagnostics as CodeMirror's lint wants them, on this document: each from its column to the
 * end of the word there (the whole line without a column); lines past the end are dropped. */
export function toCodeMirror(doc, diagnostics) {
  return diagnostics
    .filter((d) => d.line >= 1 && d.line <= doc.lines)
    .map((d) => {
      const line = doc.line(d.line);
      let from = line.from;
      let to = line.to;
      if (d.column !== null) {
        from = Math.min(line.from + d.column - 1, line.to);
        const word = /^[\w$]+/.exec(line.text.slice(from - line.from));
        to = word ? from + word[0].length : Math.min(from + 1, line.to);
      }
      return { from, to, severity: d.severity, message: d.message, source: `line ${d.line}` };
    });
}
