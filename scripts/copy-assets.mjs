// tsc copies only .ts: the CRI proto subset and the pause image's C source travel next to the compiled JS.
import { cpSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

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
