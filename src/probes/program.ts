// Composes podwire's bpftrace program from the fragments in probes/, with the node's own paths filled in.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { isProbeSafePath, type PluginHook, type PluginSurvey } from '../binaries/plugins.js';
import { installFile } from '../install.js';

/** The kernel-side families, in the order they share maps: cni.bt defines @cni, the others read it. */
export const kernelFragments = ['cni', 'netns', 'rtnetlink', 'sandbox', 'tick'] as const;
/** What the plugins send, read and print: in their own code (uprobes), or at the system-wide syscalls. */
export const pluginIoFragments = { uprobes: 'plugin-io', syscalls: 'plugin-io-syscalls' } as const;

/** probes/ next to package.json, found from this module both under src/ and dist/src/. */
export function probesDir(): string {
  const fragment = installFile('probes/cni.bt');
  if (fragment) return dirname(fragment);
  throw new Error(
    'podwire cannot find its probes/ directory: reinstall podwire (npm ci && npm run build)',
  );
}

/** A path as podwire puts it into a probe. */
export function literalPath(text: string): string {
  if (!isProbeSafePath(text))
    throw new Error(`path "${text}" has characters podwire will not put in a probe`);
  return text;
}

const literal = (text: string) => `"${literalPath(text)}"`;

/** `strncmp(str(uptr(ARG)), "/dir/", N) == 0 || ...`: an in-kernel prefix filter on a user string. */
export function prefixFilter(argument: string, prefixes: string[]): string {
  if (prefixes.length === 0) return '0';
  return prefixes
    .map((prefix) => `strncmp(str(uptr(${argument})), ${literal(prefix)}, ${prefix.length}) == 0`)
    .join(' || ');
}

/** Printed once every probe is attached (bpftrace fires BEGIN after attaching): the runner's ready signal. */
export const readyLine = 'podwire_ready';
/**
 * The one BEGIN a program may have: bpftrace's own pid, which BEGIN runs in, for tick.bt (@podwire_self); then the
 * ready line.
 */
export const beginProbe = `BEGIN { @podwire_self[0] = pid; printf("${readyLine}\\n"); }`;

export interface KernelProgramOptions {
  cniBinDirs: string[];
  netnsDirs: string[];
  /** Where to probe the plugins' I/O; absent: at the syscalls. */
  plugins?: Pick<PluginSurvey, 'mode' | 'plugins'>;
  /** The pid whose getpriority calls ask for a tick (tick.bt); this process by default. */
  daemonPid?: number;
}

const placeholders: Record<PluginHook, string> = {
  send: '{{SEND_UPROBES}}',
  receive: '{{RECEIVE_UPROBES}}',
  write: '{{WRITE_UPROBES}}',
};

/**
 * plugin-io.bt with its attach points: each placeholder line becomes the uprobes of that hook in every plugin,
 * and a probe whose list is empty is left out (bpftrace refuses a probe without attach points).
 */
export function pluginIoProgram(fragment: string, plugins: PluginSurvey['plugins']): string {
  const blocks = withWords(fragment).split(/\n(?=\{\{\w+_UPROBES\}\}\n)/);
  return blocks
    .map((block) => {
      const hook = (Object.keys(placeholders) as PluginHook[]).find((h) =>
        block.startsWith(placeholders[h]),
      );
      if (!hook) return block;
      const points = plugins.flatMap((plugin) =>
        plugin.offsets[hook].map(
          (offset) => `uprobe:${literalPath(plugin.path)}:0x${offset.toString(16)}`,
        ),
      );
      if (points.length === 0) return '';
      // The block runs to the first closing brace at the start of a line; what follows is the next block's.
      const end = block.indexOf('\n}\n') + 3;
      return `${points.join(',\n')}${block.slice(placeholders[hook].length, end)}${block.slice(end)}`;
    })
    .join('\n');
}

const withSlash = (dir: string) => (dir.endsWith('/') ? dir : `${dir}/`);

export function kernelProgram(options: KernelProgramOptions): string {
  const dir = probesDir();
  const binDirs = options.cniBinDirs.map(withSlash);
  const netnsDirs = options.netnsDirs.map(withSlash);
  const mode = options.plugins?.mode ?? 'syscalls';
  const pluginIo = readFileSync(join(dir, `${pluginIoFragments[mode]}.bt`), 'utf8');
  const program = [
    ...kernelFragments.map((name) => readFileSync(join(dir, `${name}.bt`), 'utf8')),
    mode === 'uprobes' ? pluginIoProgram(pluginIo, options.plugins?.plugins ?? []) : pluginIo,
  ].join('\n');
  // END clears every map so that bpftrace does not print what is left of them when it stops.
  const maps = [...new Set([...program.matchAll(/@(\w+)\[/g)].map((m) => m[1]))];
  const endProbe = `END {\n${maps.map((map) => `  clear(@${map});`).join('\n')}\n}`;
  return withWords(`${program}\n${beginProbe}\n${endProbe}\n`)
    .replaceAll('{{CNI_BIN_FILTER}}', prefixFilter('args->filename', binDirs))
    .replaceAll('{{NETNS_DIR_FILTER_MOUNT}}', prefixFilter('args->dir_name', netnsDirs))
    .replaceAll('{{NETNS_DIR_FILTER_UMOUNT}}', prefixFilter('args->name', netnsDirs))
    .replaceAll('{{DAEMON_PID}}', String(Math.trunc(options.daemonPid ?? process.pid)));
}

/**
 * A buffer printed as little-endian 64-bit words in hex, space-separated (`{{WORDS_FORMAT n}}` in the printf,
 * `{{WORDS n address}}` as its arguments): bpftrace 0.17 formats integers far faster than it escapes a buf() with
 * %r or %rx, and the probes print dozens of buffers a pod (bench/README.md).
 */
export function withWords(fragment: string): string {
  return fragment
    .replace(/\{\{WORDS_FORMAT (\d+)\}\}/g, (_, bytes: string) => wordsFormat(Number(bytes)))
    .replace(/\{\{WORDS (\d+) ([^}]+)\}\}/g, (_, bytes: string, address: string) =>
      wordsArgs(Number(bytes), address),
    );
}

function wordsFormat(bytes: number): string {
  return Array.from({ length: Math.ceil(bytes / 8) }, () => '%llx').join(' ');
}

function wordsArgs(bytes: number, address: string): string {
  return Array.from(
    { length: Math.ceil(bytes / 8) },
    (_, i) => `*(uint64 *)uptr(${address.trim()}${i ? ` + ${i * 8}` : ''})`,
  ).join(', ');
}

/** Where runtimes pin pod namespaces: containerd and CRI-O use /var/run/netns (seen also as /run/netns). */
export const defaultNetnsDirs = ['/var/run/netns', '/run/netns'];
/** Where CNI plugins live: Debian's package, the upstream default, and common distributions. */
export const defaultCniBinDirs = ['/usr/lib/cni', '/opt/cni/bin', '/usr/libexec/cni'];
