// A worker program for `supervisor --worker-cmd 'node worker.js'`, in
// Node's standard library only: serve(fn) speaks the worker protocol
// (version 1, docs/worker-protocol.md). fn gets each task's input line and
// returns its output (anything JSON.stringify takes, or a Promise of it);
// a throw is the task's error. Run alone, this file is the conformance
// echo worker (the input back; the input "fail" is an error):
//
//   supervisor worker-conformance 'node clients/node/outlast_worker.js'
'use strict';

const readline = require('readline');

const PROTOCOL = 1;

function serve(fn) {
  const write = (frame) => process.stdout.write(JSON.stringify(frame) + '\n');
  // console.log in user code goes to stderr: stdout carries frames only.
  console.log = (...args) => console.error(...args);
  write({ hello: 'outlast', protocol: PROTOCOL });
  const lines = readline.createInterface({ input: process.stdin, terminal: false });
  // One task at a time: the next line comes once this one is answered.
  let chain = Promise.resolve();
  lines.on('line', (line) => {
    if (!line.trim()) return;
    chain = chain.then(async () => {
      const task = JSON.parse(line);
      try {
        write({ id: task.id, output: await fn(task.input) });
      } catch (error) {
        write({ id: task.id, error: String(error && error.stack ? error.stack : error) });
      }
    });
  });
  lines.on('close', () => chain.then(() => process.exit(0)));
}

module.exports = { serve, PROTOCOL };

if (require.main === module) {
  serve((input) => {
    if (input === 'fail') throw new Error('asked to fail');
    return input;
  });
}
