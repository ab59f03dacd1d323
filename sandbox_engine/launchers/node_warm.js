// The program's process in a JavaScript sandbox, started by launchers/fork_launcher.pl before the
// program arrives, as `node -e <this> <source>`: Node boots, then waits on fd 3 for the go, then
// runs the source as `node <source>` would (process.argv, require.main). The options held back
// until the go (NODE_OPTIONS, whose --require of stdin.js would take stdin at start-up: the
// launcher still reads the header from it) are given back now, as Node would have applied them.
const fs = require('fs');
const path = require('path');
// Node makes process.stdout and process.stderr on their first use (4 ms of a sandbox's): made now,
// before the go. Not a terminal's: its size comes with the header (the launcher's stty).
if (!require('tty').isatty(1)) {
  void process.stdout;
  void process.stderr;
}
const go = Buffer.alloc(1);
let got;
for (;;) {
  try {
    got = fs.readSync(3, go, 0, 1, null);
    break;
  } catch (error) {
    if (error.code !== 'EAGAIN' && error.code !== 'EINTR') throw error;
  }
}
fs.closeSync(3);
if (got === 0) process.exit(0);
const held = process.env.SANDBOX_HELD_NODE_OPTIONS;
delete process.env.SANDBOX_HELD_NODE_OPTIONS;
if (held !== undefined) {
  process.env.NODE_OPTIONS = held;
  const words = held.split(/\s+/);
  for (let i = 0; i < words.length - 1; i++) {
    if (words[i] === '--require' || words[i] === '-r') require(words[i + 1]);
  }
}
// As `node <source>`: no -e among the options a child_process.fork() passes on.
process.execArgv = [];
process.argv = [process.argv[0], path.resolve(process.argv[1])];
require('module').runMain();
