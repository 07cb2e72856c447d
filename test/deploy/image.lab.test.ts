// The image as an operator gets it from scripts/build-image.sh: podwire runs in it with Debian trixie's bpftrace 0.23
// and what doctor needs of the image itself, and neither a compiler nor a dev dependency came along.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, rootReason } from '../lab/node.js';

const run = promisify(execFile);
const packageJson = JSON.parse(readFileSync('package.json', 'utf8'));
const image = `podwire:${packageJson.version}`;
// A cold build (no base image, no cached layer) takes about five minutes; a warm one seconds.
const buildTimeoutMs = 15 * 60_000;

let container = '';

/** A command in a container of the image, with no network, as `docker run --network none` runs it. */
async function inImage(...command: string[]): Promise<string> {
  const { stdout } = await run(
    'buildah',
    ['run', '--network', 'none', container, '--', ...command],
    {
      encoding: 'utf8',
    },
  );
  return stdout;
}

describe.skipIf(!isRoot)(`the image${isRoot ? '' : ` (skipped: ${rootReason})`}`, () => {
  let printed = '';

  beforeAll(async () => {
    ({ stdout: printed } = await run('bash', ['scripts/build-image.sh'], {
      encoding: 'utf8',
      timeout: buildTimeoutMs,
    }));
    container = (await run('buildah', ['from', '--pull=never', image])).stdout.trim();
  }, buildTimeoutMs);

  afterAll(async () => {
    if (container) await run('buildah', ['rm', container]);
  });

  it('is built as podwire:<version>, its size printed', () => {
    const version = packageJson.version.replaceAll('.', '\\.');
    expect(printed).toMatch(new RegExp(`^podwire:${version} \\d+(\\.\\d+)? (kB|MB|GB)\\n$`));
  });

  it('starts podwire trace', async () => {
    const { stdout } = await run('buildah', ['inspect', '--type', 'image', image]);
    expect(JSON.parse(stdout).OCIv1.config.Entrypoint).toEqual(['podwire', 'trace']);
  });

  it("has Debian trixie's bpftrace 0.23", async () => {
    expect(await inImage('bpftrace', '--version')).toMatch(/^bpftrace v0\.23\.\d+/);
  });

  it('runs podwire: --version, --help, and its probes found', async () => {
    expect((await inImage('podwire', '--version')).trim()).toBe(packageJson.version);
    expect(await inImage('podwire', '--help')).toMatch(/^\s+trace \[options\]/m);
    const found = await inImage(
      'node',
      '--input-type=module',
      '-e',
      "import('/opt/podwire/dist/src/probes/program.js').then((m) => console.log(m.probesDir()))",
    );
    expect(found.trim()).toBe('/opt/podwire/probes');
  });

  it('gives doctor what the image must bring: bpftrace, objdump, the poll library', async () => {
    // Unprivileged and without tracefs, doctor says tracing cannot work and exits 1: its checks are what matters.
    const doctor = await run(
      'buildah',
      ['run', '--network', 'none', container, '--', 'podwire', 'doctor'],
      {
        encoding: 'utf8',
      },
    ).then(
      () => {
        throw new Error('podwire doctor exited 0 in an unprivileged container without tracefs');
      },
      (error: { stdout?: string }) => error.stdout ?? '',
    );
    expect(doctor).toMatch(/^ok\s+bpftrace\s+bpftrace v0\.23/m);
    expect(doctor).toMatch(/^ok\s+objdump\s/m);
    expect(doctor).toMatch(/^ok\s+bpftrace poll\s/m);
  });

  it('has no compiler, no npm and no dev dependency, and its production ones', async () => {
    const tools = ['cc', 'gcc', 'c++', 'clang', 'tcc', 'tsc', 'npm', 'npx'];
    const found = await inImage(
      'sh',
      '-c',
      `for t in ${tools.join(' ')}; do command -v $t; done; true`,
    );
    expect(found).toBe('');
    const present = async (names: string[]) =>
      (
        await inImage(
          'sh',
          '-c',
          'cd /opt/podwire/node_modules && for m in "$@"; do [ -e "$m" ] && echo "$m"; done; true',
          'sh',
          ...names,
        )
      )
        .split('\n')
        .filter(Boolean);
    // What the lock file marks dev-only (vitest, typescript, biome and theirs); @types/node is not: protobufjs needs it.
    const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
    const dev = Object.entries(lock.packages as Record<string, { dev?: boolean }>)
      .filter(([path, entry]) => entry.dev && path.lastIndexOf('node_modules/') === 0)
      .map(([path]) => path.slice('node_modules/'.length));
    expect(dev).toContain('vitest');
    const production = Object.keys(packageJson.dependencies);
    expect(await present(dev)).toEqual([]);
    expect(await present(production)).toEqual(production);
  });

  it('keeps no apt lists', async () => {
    expect(await inImage('find', '/var/lib/apt/lists', '-type', 'f')).toBe('');
  });
});
