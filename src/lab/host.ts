// The host facts and actions the lab needs: processes by pid, mounts, links and namespaces, through /proc and `ip`.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Runs a command; a failure becomes one line with the command and its stderr. */
export async function command(file: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(file, args, { maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string; code?: string };
    if (e.code === 'ENOENT')
      throw new Error(`${file} not found: run npm run setup (it installs the Debian packages)`);
    const why = (e.stderr ?? '').trim().split('\n').pop() || e.message;
    throw new Error(`${file} ${args.join(' ')} failed: ${why}`);
  }
}

/** A process's start time in clock ticks since boot (field 22 of /proc/PID/stat): tells a reused pid apart. */
export function processStartTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = Number(fields[19]);
    return Number.isFinite(start) ? start : null;
  } catch {
    return null;
  }
}

export function processCmdline(pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((arg) => arg !== '');
  } catch {
    return null;
  }
}

export function processAlive(pid: number, startTime?: number): boolean {
  const start = processStartTime(pid);
  if (start === null) return false;
  // A zombie has exited: it only waits for its parent to reap it.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return false;
  } catch {
    return false;
  }
  return startTime === undefined || start === startTime;
}

/** Every pid whose command line satisfies `match`; used to find the lab's own shims by their unique socket. */
export function findProcesses(match: (argv: string[]) => boolean): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const argv = processCmdline(pid);
    if (argv && argv.length > 0 && match(argv)) pids.push(pid);
  }
  return pids;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Ends one process by pid: SIGTERM, then SIGKILL after `graceMs`. The start time guards against a pid
 * that was reused by an unrelated process since it was recorded.
 */
export async function stopProcess(pid: number, startTime: number, graceMs = 10_000): Promise<void> {
  if (!processAlive(pid, startTime)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!processAlive(pid, startTime)) return;
    await sleep(50);
  }
  if (processAlive(pid, startTime)) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && processAlive(pid, startTime); i++) await sleep(50);
}

export interface Mount {
  mountPoint: string;
  fsType: string;
  source: string;
}

/** Unescapes the octal escapes (\040 for a space) that mountinfo uses in paths. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(Number.parseInt(octal, 8)),
  );
}

export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [left, right] = line.split(' - ');
    const leftFields = left?.split(' ') ?? [];
    const rightFields = right?.split(' ') ?? [];
    const mountPoint = leftFields[4];
    if (mountPoint === undefined) continue;
    mounts.push({
      mountPoint: unescapeMountPath(mountPoint),
      fsType: rightFields[0] ?? '',
      source: rightFields[1] ?? '',
    });
  }
  return mounts;
}

export function mounts(): Mount[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

export interface Link {
  ifname: string;
  ifindex: number;
  master?: string;
  link_type?: string;
  operstate?: string;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

export async function links(args: string[] = []): Promise<Link[]> {
  const out = await command('ip', ['-j', '-d', 'link', 'show', ...args]);
  return out.trim() === '' ? [] : (JSON.parse(out) as Link[]);
}

export async function linkExists(name: string): Promise<boolean> {
  try {
    await command('ip', ['link', 'show', 'dev', name]);
    return true;
  } catch {
    return false;
  }
}

export interface Route {
  dst: string;
  dev?: string;
}

export async function routes(): Promise<Route[]> {
  const out = await command('ip', ['-j', '-4', 'route', 'show', 'table', 'all']);
  return out.trim() === '' ? [] : (JSON.parse(out) as Route[]);
}

/** `ip netns list-id`: the namespace id the host uses for a pinned namespace, so that a veth's peer can be found. */
export async function netnsIds(): Promise<Map<number, string>> {
  const out = await command('ip', ['netns', 'list-id']);
  const ids = new Map<number, string>();
  for (const line of out.split('\n')) {
    const match = /^nsid (\d+) \(iproute2 netns name: (.+)\)$/.exec(line.trim());
    if (match?.[1] && match[2]) ids.set(Number(match[1]), match[2]);
  }
  return ids;
}
