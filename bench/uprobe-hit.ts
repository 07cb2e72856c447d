// What one uprobe hit costs the probed process, by where the probe sits and whether it prints a line.
// On a Go-like function's first instruction (a CMP, which the kernel single-steps after the breakpoint trap) or on the
// conditional jump after it (which the kernel emulates: one trap), silent or printing a line (bpftrace woken for it,
// or reading on a timer as podwire has it do). Interleaved rounds of a C loop (bench/uprobe-hit.c) with bpftrace
// attached one way or not at all; medians of ns per call, and per hit (minus the loop without probes).
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findSymbol, parseElf, vaddrToFileOffset } from '../src/binaries/elf.js';
import { pollLibrary } from '../src/probes/runner.js';
import { compiledC } from './c-program.js';
import { median } from './median.js';
import { projectRoot } from './podwire-trace.js';

const rounds = Number(process.env.ROUNDS ?? 5);
/** The jump with a line per hit, bpftrace reading its buffers on a timer (bpftrace-poll.so, as podwire runs it). */
const polled = 'jump, a line per hit, bpftrace-poll';
const calls = Number(process.env.CALLS ?? 50_000);

/**
 * Each variant's bpftrace program (null: no probe). `@never` holds only pid 0: the filter is a map lookup that
 * fails, like podwire's `@cni[pid]` for a process that is not a plugin.
 */
const variants: Record<string, ((at: Sites) => string) | null> = {
  none: null,
  'entry (cmp, single-stepped)': (at) => `${at.entry} / @never[pid] / { printf("hit\\n"); }`,
  'jump (jbe, emulated)': (at) => `${at.jump} / @never[pid] / { printf("hit\\n"); }`,
  'jump, printing a line per hit': (at) => `${at.jump} { printf("hit %d\\n", pid); }`,
  [polled]: (at) => `${at.jump} { printf("hit %d\\n", pid); }`,
};

interface Sites {
  entry: string;
  jump: string;
}

/**
 * The two attach points, by address as podwire gives them (bpftrace 0.17 takes no `function+offset` without its
 * disassembler). In this PIE binary an address in .text is also its file offset, whichever bpftrace reads it as.
 */
function sites(binary: string): Sites {
  const elf = parseElf(readFileSync(binary));
  if (typeof elf === 'string') throw new Error(`${binary}: ${elf}`);
  const entry = findSymbol(elf, 'go_like_entry')?.value;
  const jump = findSymbol(elf, 'go_like_jump')?.value;
  if (entry === undefined || jump === undefined) throw new Error(`${binary}: no go_like_* symbols`);
  for (const address of [entry, jump])
    if (vaddrToFileOffset(elf, address) !== address)
      throw new Error(`${binary}: address 0x${address.toString(16)} is not its file offset`);
  return {
    entry: `uprobe:${binary}:0x${entry.toString(16)}`,
    jump: `uprobe:${binary}:0x${jump.toString(16)}`,
  };
}

/** bpftrace with the probe, its output in a file; resolves once BEGIN has printed (every probe attached). */
async function attach(
  program: string,
  out: string,
  preload: string | null,
): Promise<() => Promise<void>> {
  const fd = openSync(out, 'w');
  const child = spawn(
    'bpftrace',
    ['--unsafe', '-e', `${program} BEGIN { @never[0] = 1; printf("ready\\n"); }`],
    {
      stdio: ['ignore', fd, fd],
      env: preload ? { ...process.env, LD_PRELOAD: preload } : process.env,
    },
  );
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let waited = 0; !readFileSync(out, 'utf8').includes('ready'); waited += 100) {
    if (child.exitCode !== null || waited > 30_000)
      throw new Error(
        `bpftrace did not attach ${program}: ${readFileSync(out, 'utf8').trim().split('\n').slice(-2).join(' | ')}`,
      );
    await sleep(100);
  }
  return async () => {
    child.kill('SIGINT');
    await exited;
  };
}

function measure(binary: string): number {
  const ns = Number(execFileSync(binary, [String(calls)], { encoding: 'utf8' }).trim());
  if (!Number.isFinite(ns)) throw new Error('uprobe-hit printed no number');
  return ns;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('uprobes need root: run the bench as root');
  const root = projectRoot();
  if (!existsSync(pollLibrary)) throw new Error(`${pollLibrary} is not built: npm run build`);
  const binary = compiledC(root, 'uprobe-hit');
  const at = sites(binary);
  const out = join(root, '.cache/bench/uprobe-hit.out');
  console.log(
    `uprobe-hit: ${rounds} interleaved rounds of ${calls} calls per variant; machine: ${cpus().length} CPUs, kernel ${release()}`,
  );
  const names = Object.keys(variants);
  const results = new Map<string, number[]>(names.map((name) => [name, []]));
  measure(binary);
  for (let round = 0; round < rounds; round++) {
    for (const name of round % 2 === 0 ? names : [...names].reverse()) {
      const program = variants[name];
      const detach = program
        ? await attach(program(at), out, name === polled ? pollLibrary : null)
        : null;
      try {
        results.get(name)?.push(measure(binary));
      } finally {
        await detach?.();
      }
    }
  }
  const base = median(results.get('none') ?? []);
  console.log(`${'variant'.padEnd(32)} ${'ns/call'.padStart(9)} ${'ns/hit'.padStart(9)}  runs`);
  for (const name of names) {
    const runs = results.get(name) ?? [];
    const med = median(runs);
    console.log(
      `${name.padEnd(32)} ${med.toFixed(0).padStart(9)} ${(name === 'none' ? '' : (med - base).toFixed(0)).padStart(9)}  ${runs.map((r) => r.toFixed(0)).join(' ')}`,
    );
  }
}

main().catch((error: unknown) => {
  console.error(`uprobe-hit: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
});
