// Child processes that would write straight to the worker's own stdout/stderr: `stdio:
// 'inherit'` (also `[0, 1, 2]`, or process.stdout/process.stderr in the stdio array) of
// spawn, fork, spawnSync, execSync and execFileSync. The worker's fds 1/2 are not the
// execution's output (the server discards fd 1 and keeps fd 2 only to tell why a worker
// died), so that output was lost. Those slots become pipes whose text is the execution's
// stdout/stderr: streamed for spawn and fork, told when the call returns for the
// synchronous ones, which return (and throw) what they would with 'inherit' (no stdout).
// Any other stdio is Node's own, untouched.

import childProcess from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import { StringDecoder } from 'node:string_decoder';

import {
  ArrayIsArray,
  ArrayPrototypeJoin,
  ArrayPrototypeSlice,
  ErrorCtor,
  ObjectAssign,
  process,
  ReflectApply,
  StringCtor,
} from './intrinsics.mjs';
import { emitText } from './output.mjs';

const STREAMS = ['stdin', 'stdout', 'stderr'];

// Which of fds 1 and 2 `stdio` sends to the worker's own: {stdio, to: [type of 1, of 2]}
// with those slots made pipes, or null when none does.
function redirected(stdio) {
  const slots = stdio === 'inherit' ? ['inherit', 'inherit', 'inherit'] : stdio;
  if (!ArrayIsArray(slots)) return null;
  let copy = null;
  const to = [null, null];
  for (let fd = 1; fd <= 2; fd++) {
    const slot = slots[fd];
    let type = null;
    if (slot === 'inherit') type = STREAMS[fd];
    else if (slot === 1 || slot === process.stdout) type = 'stdout';
    else if (slot === 2 || slot === process.stderr) type = 'stderr';
    if (type === null) continue;
    copy ??= ArrayPrototypeSlice(slots);
    copy[fd] = 'pipe';
    to[fd - 1] = type;
  }
  return copy === null ? null : { stdio: copy, to };
}

// The options argument of a call (the first object after the command and its args).
function optionsIndex(args) {
  for (let i = 1; i < args.length && i <= 2; i++) {
    const a = args[i];
    if (a !== null && typeof a === 'object' && !ArrayIsArray(a)) return i;
  }
  return -1;
}

function withPipes(args, fork) {
  const at = optionsIndex(args);
  const options = at >= 0 ? args[at] : undefined;
  let stdio = options?.stdio;
  if (fork && stdio === undefined && !options?.silent) stdio = 'inherit';
  if (fork && typeof stdio === 'string') stdio = [stdio, stdio, stdio, 'ipc'];
  const plan = redirected(stdio);
  if (plan === null) return null;
  const copy = ArrayPrototypeSlice(args);
  const changed = { ...options, stdio: plan.stdio };
  copy[at >= 0 ? at : ArrayIsArray(copy[1]) ? 2 : 1] = changed;
  return { args: copy, to: plan.to, options: changed };
}

function emitBytes(type, bytes) {
  if (bytes === null || bytes === undefined) return;
  emitText(type, typeof bytes === 'string' ? bytes : new StringDecoder('utf8').end(bytes));
}

function forward(stream, type) {
  if (!stream || type === null) return;
  const decoder = new StringDecoder('utf8');
  stream.on('data', (chunk) => emitText(type, decoder.write(chunk)));
  stream.on('end', () => emitText(type, decoder.end()));
}

function asyncWrapper(original, fork) {
  return {
    [original.name](...args) {
      const plan = withPipes(args, fork);
      if (plan === null) return ReflectApply(original, this, args);
      const child = ReflectApply(original, this, plan.args);
      forward(child.stdout, plan.to[0]);
      forward(child.stderr, plan.to[1]);
      return child;
    },
  }[original.name];
}

// spawnSync's result or execSync's/execFileSync's error: the piped output is told and
// taken out, as 'inherit' would have left it.
function tell(result, to) {
  if (result === null || typeof result !== 'object') return;
  for (let i = 0; i < 2; i++) {
    if (to[i] === null) continue;
    const key = STREAMS[i + 1];
    emitBytes(to[i], result[key]);
    result[key] = null;
    if (ArrayIsArray(result.output)) result.output[i + 1] = null;
  }
}

function spawnSyncWrapper(original) {
  return function spawnSync(...args) {
    const plan = withPipes(args, false);
    if (plan === null) return ReflectApply(original, this, args);
    const result = ReflectApply(original, this, plan.args);
    tell(result, plan.to);
    return result;
  };
}

// execSync and execFileSync write a child's stderr to process.stderr only when no stdio
// was given, so with pipes of ours they are run as Node runs them: through spawnSync,
// throwing a failure as they do.
function execWrapper(original, spawnSync, shell) {
  return {
    [original.name](...args) {
      const plan = withPipes(args, false);
      if (plan === null) return ReflectApply(original, this, args);
      let command = StringCtor(args[0]);
      if (!shell && ArrayIsArray(args[1]) && args[1].length) {
        command += ` ${ArrayPrototypeJoin(args[1], ' ')}`;
      }
      let spawnArgs = plan.args;
      if (shell) {
        const { options } = plan;
        const shellName = typeof options.shell === 'string' ? options.shell : true;
        spawnArgs = [args[0], { ...options, shell: shellName }];
      }
      const result = ReflectApply(spawnSync, childProcess, spawnArgs);
      tell(result, plan.to);
      if (result.error) throw ObjectAssign(result.error, result);
      if (result.status !== 0) {
        let message = `Command failed: ${command}`;
        if (result.stderr && result.stderr.length > 0) message += `\n${result.stderr}`;
        throw ObjectAssign(new ErrorCtor(message), result);
      }
      return result.stdout;
    },
  }[original.name];
}

export function installChildOutput() {
  childProcess.spawn = asyncWrapper(childProcess.spawn, false);
  childProcess.fork = asyncWrapper(childProcess.fork, true);
  const { spawnSync } = childProcess;
  childProcess.spawnSync = spawnSyncWrapper(spawnSync);
  childProcess.execSync = execWrapper(childProcess.execSync, spawnSync, true);
  childProcess.execFileSync = execWrapper(childProcess.execFileSync, spawnSync, false);
  syncBuiltinESMExports();
}
