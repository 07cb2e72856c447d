// `podwire trace` as a child process for the benches that need it running: ready when it says so, stopped by its pid.
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('cannot find package.json above this script: run it as node dist/bench/...');
}

/** Root, and a build: the benches start the real CLI. */
export function requireTraceable(root: string): void {
  if (process.getuid?.() !== 0)
    throw new Error('podwire trace attaches eBPF probes: run the bench as root');
  if (!existsSync(join(root, 'dist/src/cli.js')))
    throw new Error('dist/src/cli.js is missing: run npm run build first');
}

/**
 * The arguments after `trace`. By default the CRI probes go on a private copy of the node's containerd binary:
 * uprobes belong to a file, so probing /usr/bin/containerd itself would put breakpoints into every containerd
 * running from it (the lab's, someone else's bench). The copy is inspected and probed exactly the same way.
 * TRACE_ARGS (split on spaces) replaces this, e.g. TRACE_ARGS= for plain `podwire trace`.
 */
export function traceArgs(root: string): string[] {
  const given = process.env.TRACE_ARGS;
  if (given !== undefined) return given.split(' ').filter((arg) => arg !== '');
  const binary = '/usr/bin/containerd';
  if (!existsSync(binary)) return [];
  const copy = join(root, '.cache/bench/containerd');
  mkdirSync(dirname(copy), { recursive: true });
  if (!existsSync(copy) || statSync(copy).size !== statSync(binary).size)
    copyFileSync(binary, copy);
  return ['--runtime-binary', copy];
}

export interface RunningTrace {
  child: ChildProcess;
  pid: number;
  /** From spawn to the `ready` status line, as read here. */
  readyMs: number;
  /** Every status line before ready, with the ms since spawn it was read at. */
  statuses: { ms: number; state: string; message: string }[];
}

/** Direct children of a process, from /proc (to end bpftrace and cat by pid if podwire itself had to be killed). */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return children;
}

function killTree(pid: number): void {
  for (const child of childrenOf(pid)) killTree(child);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** Spawns `node dist/src/cli.js trace ARGS`, stdout piped (read to the end and dropped), until `ready`. */
export function startTrace(
  root: string,
  args: string[],
  timeoutMs = 60_000,
): Promise<RunningTrace> {
  const started = performance.now();
  const child = spawn(process.execPath, [join(root, 'dist/src/cli.js'), 'trace', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const statuses: RunningTrace['statuses'] = [];
  const stderr: string[] = [];
  return new Promise((resolve, reject) => {
    let ready = false;
    const fail = (why: string) => {
      clearTimeout(timer);
      if (child.pid) killTree(child.pid);
      const said = statuses.map((s) => `${s.state}: ${s.message}`).concat(stderr.slice(-3));
      reject(new Error(`podwire trace ${why}${said.length > 0 ? ` (${said.join(' | ')})` : ''}`));
    };
    const timer = setTimeout(() => fail(`was not ready after ${timeoutMs / 1000} s`), timeoutMs);
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) =>
      stderr.push(line),
    );
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (ready || !line.startsWith('{"kind":"status"')) return;
      const ms = performance.now() - started;
      const status = JSON.parse(line) as { state: string; message: string };
      statuses.push({ ms, state: status.state, message: status.message });
      if (status.state !== 'ready') return;
      ready = true;
      clearTimeout(timer);
      resolve({ child, pid: child.pid as number, readyMs: ms, statuses });
    });
    child.once('error', (error) => fail(`could not start: ${error.message}`));
    child.once('exit', (code, signal) => {
      if (!ready) fail(`exited before it was ready (${signal ?? `code ${code}`})`);
    });
  });
}

/** SIGINT by pid, as a user's Ctrl-C, and waits for the exit; past the timeout the tree is killed and it says so. */
export function stopTrace(
  trace: RunningTrace,
  timeoutMs = 20_000,
): Promise<{ ms: number; clean: boolean }> {
  const started = performance.now();
  const { child } = trace;
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ ms: 0, clean: child.exitCode === 0 });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      killTree(trace.pid);
      resolve({ ms: performance.now() - started, clean: false });
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - started, clean: code === 0 });
    });
    process.kill(trace.pid, 'SIGINT');
  });
}

/** The live (not zombie) processes among `pids`. */
export function alive(pids: number[]): number[] {
  return pids.filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] !== 'Z';
    } catch {
      return false;
    }
  });
}

/** What of daemon `pid` is still in tracefs: its uprobe events and trace instances. */
export function inTracefs(pid: number): { events: number; instances: number } {
  const tracefs = '/sys/kernel/tracing';
  const group = new RegExp(`^p:podwire_${pid}_\\d+/`, 'm');
  const events = readFileSync(join(tracefs, 'uprobe_events'), 'utf8')
    .split('\n')
    .filter((line) => group.test(line)).length;
  const instances = readdirSync(join(tracefs, 'instances')).filter((name) =>
    name.startsWith(`podwire_${pid}_`),
  ).length;
  return { events, instances };
}
