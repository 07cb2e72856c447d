// tsc copies only .ts: the CRI proto subset and the pause image's C source travel next to the compiled JS, and the
// recording the daemon warms its JIT with (src/warmup.ts) is put there gzipped.
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const assets = /\.(proto|c)$/;

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
  gzipSync(readFileSync('test/fixtures/recordings/ten-pods-plugin-uprobes.ndjson'), { level: 9 }),
);
