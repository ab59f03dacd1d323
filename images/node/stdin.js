// Loaded before every program (NODE_OPTIONS=--require): a paused stdin stops keeping the
// process alive. On a pipe, Node keeps a paused stdin's handle referenced, so a program that
// read its last line and closed its readline would wait for an EOF the session never sends,
// where on a terminal it exits. Resuming references the handle again.
'use strict';
const stdin = process.stdin;
const pause = stdin.pause;
stdin.pause = function () {
  const result = pause.apply(this, arguments);
  // After the pause has settled: readline pauses, then may resume within the same tick.
  setImmediate(() => {
    if (this.isPaused() && this._handle) this._handle.unref();
  });
  return result;
};
const resume = stdin.resume;
stdin.resume = function () {
  if (this._handle) this._handle.ref();
  return resume.apply(this, arguments);
};
