// Runs inside a TypeScript sandbox as `node -e <this> -- <tsc arguments>`, started by the sh
// launcher before the program arrives (launch.typescript_prelude): a warm TypeScript compiler.
// It loads the compiler, parses and binds the standard library and @types/node once with the
// language's own tsc arguments, then waits on the FIFO DIR/req. The compile stage's client
// (launch.TSC_CLIENT, run by the engine as any compile stage) writes `pretty` or `plain` there;
// this compiles the language's files exactly as `tsc <arguments>` would (tsc's own reporting and
// exit code), answers on DIR/res with tsc's output, SEPARATOR and the exit code, and exits.
//
// Why this is sound: it never runs the user's code (the type checker only reads it), it starts
// before the header with its nonce is read, and it reuses only files it read before the code
// arrived (the image's own, read-only), so a session finds no trace of another. It takes nothing
// from the client but one word, so the compile stage cannot give it other arguments.
// DIR and SEPARATOR are defined before this code by launch.tsc_server, in strict mode.
const fs = require('fs');
const path = require('path');
const ts = require('typescript');

const args = process.argv.slice(1);
const line = ts.parseCommandLine(args);
const cwd = process.cwd();
// Files read while warming, by absolute name: none is the user's (they are not there yet).
const warm = new Map();
let warming = true;

function host() {
  const compilerHost = ts.createCompilerHost(line.options);
  const read = compilerHost.getSourceFile;
  compilerHost.getSourceFile = (name, target, onError, create) => {
    const key = path.resolve(cwd, name);
    const known = warm.get(key);
    if (known !== undefined) return known;
    const file = read.call(compilerHost, name, target, onError, create);
    if (warming && file !== undefined) warm.set(key, file);
    return file;
  };
  return compilerHost;
}

function warmUp() {
  // A program of the same options whose one root is a file of our own: the libraries it pulls in
  // (lib.es2022*.d.ts, @types/node) are parsed and bound here, and the checker's and emitter's
  // code paths are compiled by V8 before they are needed.
  const root = path.join(DIR, 'warm.ts');
  fs.writeFileSync(root, 'export const greeting: string = `${process.argv.length}`;\nconsole.log(greeting);\n');
  const program = ts.createProgram([root], { ...line.options, outDir: DIR }, host());
  ts.getPreEmitDiagnostics(program);
  program.emit();
  warming = false;
}

function compile(pretty) {
  let out = '';
  const sys = Object.create(ts.sys);
  sys.write = (text) => {
    out += text;
  };
  sys.writeOutputIsTTY = () => pretty;
  const report = ts.createDiagnosticReporter(sys, pretty);
  if (line.errors.length > 0) {
    line.errors.forEach(report);
    return [out, ts.ExitStatus.DiagnosticsPresent_OutputsSkipped];
  }
  const program = ts.createProgram(line.fileNames, line.options, host());
  // What tsc's performCompilation does after it made its program, with tsc's own functions.
  const summary = pretty
    ? (count, files) => sys.write(ts.getErrorSummaryText(count, files, sys.newLine, sys))
    : undefined;
  const status = ts.emitFilesAndReportErrorsAndGetExitStatus(
    program,
    report,
    (text) => sys.write(text + sys.newLine),
    summary,
  );
  return [out, status];
}

function answer(text, status) {
  // Written, but not closed: the client reads to the end of the FIFO, which comes when this
  // process has exited and its memory is freed, so the run's lower limits never meet it.
  const fd = fs.openSync(path.join(DIR, 'res'), 'w');
  fs.writeSync(fd, text + SEPARATOR + status);
}

try {
  // A sandbox started for code that is here already (no pool) gains nothing from warming first:
  // the compile parses the same libraries once.
  if (line.fileNames.every((name) => fs.existsSync(name))) warming = false;
  else warmUp();
} catch (error) {
  // A warm-up that failed leaves the compile to the client's plain tsc: it finds this gone.
  process.stderr.write(`tsc_server: warm-up failed: ${error && error.stack}\n`);
  process.exit(1);
}
// Blocks until the client writes its word and closes: a sandbox compiles once.
const word = fs.readFileSync(path.join(DIR, 'req'), 'utf8').trim();
let result;
try {
  result = compile(word === 'pretty');
} catch (error) {
  result = [`tsc_server: ${error && error.stack}\n`, 1];
}
answer(result[0], result[1]);
process.exit(0);
