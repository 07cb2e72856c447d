// Composes podwire's bpftrace program from the fragments in probes/, with the node's own paths filled in.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The kernel-side families, in the order they share maps: cni.bt defines @cni, the others read it. */
export const kernelFragments = ['cni', 'netns', 'rtnetlink', 'sandbox'] as const;

/** probes/ next to package.json, found from this module both under src/ and dist/src/. */
export function probesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'probes', 'cni.bt'))) return join(dir, 'probes');
    dir = dirname(dir);
  }
  throw new Error(
    'podwire cannot find its probes/ directory: reinstall podwire (npm ci && npm run build)',
  );
}

/** A bpftrace string literal: paths come from the node, so quote them safely. */
function literal(text: string): string {
  if (!/^[\w./+-]+$/.test(text))
    throw new Error(`path "${text}" has characters podwire will not put in a probe filter`);
  return `"${text}"`;
}

/** `strncmp(str(uptr(ARG)), "/dir/", N) == 0 || ...`: an in-kernel prefix filter on a user string. */
export function prefixFilter(argument: string, prefixes: string[]): string {
  if (prefixes.length === 0) return '0';
  return prefixes
    .map((prefix) => `strncmp(str(uptr(${argument})), ${literal(prefix)}, ${prefix.length}) == 0`)
    .join(' || ');
}

/** Printed once every probe is attached (bpftrace fires BEGIN after attaching): the runner's ready signal. */
export const readyLine = 'podwire_ready';
const readyProbe = `BEGIN { printf("${readyLine}\\n"); }`;

export interface KernelProgramOptions {
  cniBinDirs: string[];
  netnsDirs: string[];
}

const withSlash = (dir: string) => (dir.endsWith('/') ? dir : `${dir}/`);

export function kernelProgram(options: KernelProgramOptions): string {
  const dir = probesDir();
  const binDirs = options.cniBinDirs.map(withSlash);
  const netnsDirs = options.netnsDirs.map(withSlash);
  const program = kernelFragments
    .map((name) => readFileSync(join(dir, `${name}.bt`), 'utf8'))
    .join('\n');
  // END clears every map so that bpftrace does not print what is left of them when it stops.
  const maps = [...new Set([...program.matchAll(/@(\w+)\[/g)].map((m) => m[1]))];
  const endProbe = `END {\n${maps.map((map) => `  clear(@${map});`).join('\n')}\n}`;
  return `${program}\n${readyProbe}\n${endProbe}\n`
    .replaceAll('{{CNI_BIN_FILTER}}', prefixFilter('args->filename', binDirs))
    .replaceAll('{{NETNS_DIR_FILTER_MOUNT}}', prefixFilter('args->dir_name', netnsDirs))
    .replaceAll('{{NETNS_DIR_FILTER_UMOUNT}}', prefixFilter('args->name', netnsDirs));
}

/** Where runtimes pin pod namespaces: containerd and CRI-O use /var/run/netns (seen also as /run/netns). */
export const defaultNetnsDirs = ['/var/run/netns', '/run/netns'];
/** Where CNI plugins live: Debian's package, the upstream default, and common distributions. */
export const defaultCniBinDirs = ['/usr/lib/cni', '/opt/cni/bin', '/usr/libexec/cni'];
