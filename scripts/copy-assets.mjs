// Puts beside tsc's output what tsc leaves out (it copies only .ts), and compiles bpftrace's poll library.
// The CRI proto subset, the pause image's C source and the janitor's shell script are copied, the recording the daemon warms its JIT with
// (src/warmup.ts) is put there gzipped, and the library that makes bpftrace read its buffers on a timer
// (src/probes/bpftrace-poll.c) is compiled when a C compiler is there.
import { execFileSync } from 'node:child_process';
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const assets = /\.(proto|c|sh)$/;

function copyTree(from, to) {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory()) copyTree(source, target);
    else if (assets.test(entry.name)) cpSync(source, target);
  }
}

copyTree('src', 'dist/src');
writeFileSync(
  'dist/src/warmup.ndjson.gz',
  gzipSync(readFileSync('test/fixtures/recordings/ten-pods-envs.ndjson'), { level: 9 }),
);

// Without it podwire still traces, bpftrace woken for each event; its ready line says so.
const pollLibrary = 'dist/src/probes/bpftrace-poll.so';
rmSync(pollLibrary, { force: true });
const cc = process.env.CC ?? 'cc';
try {
  execFileSync(
    cc,
    ['-O2', '-Wall', '-shared', '-fPIC', '-o', pollLibrary, 'src/probes/bpftrace-poll.c', '-ldl'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
} catch (error) {
  const why =
    error.code === 'ENOENT'
      ? `${cc} not found`
      : String(error.stderr ?? error.message)
          .trim()
          .split('\n')[0];
  console.warn(
    `build: ${pollLibrary} not built (${why}): bpftrace will be woken for each event; apt-get install gcc libc6-dev, then npm run build`,
  );
}

// Without it `podwire trace | head -3` still ends, at the next line podwire writes (src/cli/stdout-watch.c).
const stdoutWatch = 'dist/src/cli/stdout-watch';
rmSync(stdoutWatch, { force: true });
try {
  execFileSync(cc, ['-O2', '-Wall', '-o', stdoutWatch, 'src/cli/stdout-watch.c'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
} catch (error) {
  console.warn(
    `build: ${stdoutWatch} not built (${
      error.code === 'ENOENT'
        ? `${cc} not found`
        : String(error.stderr ?? error.message)
            .trim()
            .split('\n')[0]
    }): a reader of podwire's stdout that goes away is noticed at podwire's next line`,
  );
}
