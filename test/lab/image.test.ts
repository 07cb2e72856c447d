// The pause image as containerd sees it: a valid tar, an OCI layout true to its blobs, a static /pause that behaves.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOciArchive, buildPauseImage, type OciArchive } from '../../src/lab/image.js';

const run = promisify(execFile);
const reference = 'localhost/podwire/pause:lab';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string };
  annotations?: Record<string, string>;
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'podwire-image-test-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** Writes `tar` to disk and extracts it with the system tar, as a user inspecting it would. */
async function extract(tar: Buffer): Promise<{ dir: string; tarPath: string }> {
  const dir = tempDir();
  const tarPath = join(dir, 'image.tar');
  writeFileSync(tarPath, tar);
  mkdirSync(join(dir, 'layout'));
  await run('tar', ['-xf', tarPath, '-C', join(dir, 'layout')]);
  return { dir: join(dir, 'layout'), tarPath };
}

/** Reads a blob by its descriptor and checks that digest and size are those of the bytes on disk. */
function blob(layoutDir: string, descriptor: Descriptor): Buffer {
  const [algorithm, hex] = descriptor.digest.split(':');
  expect(algorithm).toBe('sha256');
  const content = readFileSync(join(layoutDir, 'blobs', 'sha256', hex ?? ''));
  expect(`sha256:${createHash('sha256').update(content).digest('hex')}`).toBe(descriptor.digest);
  expect(content.length).toBe(descriptor.size);
  return content;
}

function parse<T>(content: Buffer): T {
  return JSON.parse(content.toString('utf8')) as T;
}

describe('buildOciArchive', () => {
  const files = [
    { path: '/pause', mode: 0o755, content: Buffer.from('#!/bin/true\n') },
    { path: '/etc/motd', mode: 0o644, content: Buffer.from('x'.repeat(513)) },
  ];
  const archive = buildOciArchive(files, { reference, entrypoint: ['/pause'] });

  it('is an OCI image layout whose descriptors match their blobs, index to layer', async () => {
    const { dir } = await extract(archive.tar);
    expect(parse(readFileSync(join(dir, 'oci-layout')))).toEqual({ imageLayoutVersion: '1.0.0' });

    const index = parse<{ schemaVersion: number; mediaType: string; manifests: Descriptor[] }>(
      readFileSync(join(dir, 'index.json')),
    );
    expect(index.schemaVersion).toBe(2);
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.manifests).toHaveLength(1);
    const [manifestDescriptor] = index.manifests;
    if (!manifestDescriptor) throw new Error('index.json lists no manifest');
    expect(manifestDescriptor.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(manifestDescriptor.digest).toBe(archive.manifestDigest);
    expect(manifestDescriptor.platform).toEqual({ architecture: 'amd64', os: 'linux' });
    expect(manifestDescriptor.annotations).toEqual({
      'io.containerd.image.name': reference,
      'org.opencontainers.image.ref.name': 'lab',
    });

    const manifest = parse<{ schemaVersion: number; config: Descriptor; layers: Descriptor[] }>(
      blob(dir, manifestDescriptor),
    );
    expect(manifest.schemaVersion).toBe(2);
    expect(manifest.config.mediaType).toBe('application/vnd.oci.image.config.v1+json');
    expect(manifest.config.digest).toBe(archive.configDigest);
    expect(manifest.layers.map((layer) => layer.mediaType)).toEqual([
      'application/vnd.oci.image.layer.v1.tar',
    ]);
    expect(manifest.layers[0]?.digest).toBe(archive.layerDigest);

    const config = parse<{
      architecture: string;
      os: string;
      config: { Entrypoint: string[] };
      rootfs: { type: string; diff_ids: string[] };
    }>(blob(dir, manifest.config));
    expect(config.architecture).toBe('amd64');
    expect(config.os).toBe('linux');
    expect(config.config.Entrypoint).toEqual(['/pause']);
    expect(config.rootfs).toEqual({ type: 'layers', diff_ids: [archive.layerDigest] });

    for (const layer of manifest.layers) blob(dir, layer);
  });

  it('has a layer with the files at their modes, parents first', async () => {
    const { dir } = await extract(archive.tar);
    const layerPath = join(dir, 'blobs', 'sha256', archive.layerDigest.replace('sha256:', ''));
    const { stdout } = await run('tar', ['-tvf', layerPath, '--numeric-owner']);
    const entries = stdout
      .trim()
      .split('\n')
      .map((line) => {
        const [mode, owner, size, , , name] = line.split(/\s+/);
        return { mode, owner, size, name };
      });
    expect(entries).toEqual([
      { mode: 'drwxr-xr-x', owner: '0/0', size: '0', name: 'etc/' },
      { mode: '-rw-r--r--', owner: '0/0', size: '513', name: 'etc/motd' },
      { mode: '-rwxr-xr-x', owner: '0/0', size: '12', name: 'pause' },
    ]);

    const rootfs = tempDir();
    await run('tar', ['-xf', layerPath, '-C', rootfs]);
    expect(statSync(join(rootfs, 'pause')).mode & 0o7777).toBe(0o755);
    expect(readFileSync(join(rootfs, 'pause'), 'utf8')).toBe('#!/bin/true\n');
  });

  it('is a tar the system tar lists entry by entry, dated the epoch and owned by root', async () => {
    const { tarPath } = await extract(archive.tar);
    const { stdout } = await run('tar', ['-tvf', tarPath, '--numeric-owner', '--full-time']);
    const lines = stdout.trim().split('\n');
    const blobName = (digest: string) => `blobs/sha256/${digest.replace('sha256:', '')}`;
    expect(lines.map((line) => line.split(/\s+/).at(-1))).toEqual(
      [
        'blobs/',
        'blobs/sha256/',
        blobName(archive.layerDigest),
        blobName(archive.configDigest),
        blobName(archive.manifestDigest),
        'index.json',
        'oci-layout',
      ].sort(),
    );
    for (const line of lines) {
      expect(line).toMatch(/^[-d]rw[-x]r-[-x]r-[-x] 0\/0 +\d+ 1970-01-01 00:00:00 /);
    }
    expect(archive.tar.length % 512).toBe(0);
    expect(archive.tar.subarray(-1024).every((byte) => byte === 0)).toBe(true);
  });

  it('is deterministic: same files, same bytes', () => {
    const again = buildOciArchive(
      files.map((file) => ({ ...file, content: Buffer.from(file.content) })),
      { reference, entrypoint: ['/pause'] },
    );
    expect(again.tar.equals(archive.tar)).toBe(true);
    expect(again.manifestDigest).toBe(archive.manifestDigest);
    const reordered = buildOciArchive([...files].reverse(), { reference, entrypoint: ['/pause'] });
    expect(reordered.tar.equals(archive.tar)).toBe(true);
  });

  it('labels another architecture in both the config and the index', async () => {
    const arm = buildOciArchive(files, {
      reference,
      entrypoint: ['/pause'],
      architecture: 'arm64',
    });
    const { dir } = await extract(arm.tar);
    const index = parse<{ manifests: Descriptor[] }>(readFileSync(join(dir, 'index.json')));
    expect(index.manifests[0]?.platform).toEqual({ architecture: 'arm64', os: 'linux' });
    const config = parse<{ architecture: string }>(
      blob(dir, {
        mediaType: '',
        digest: arm.configDigest,
        size: statSync(join(dir, 'blobs', 'sha256', arm.configDigest.slice(7))).size,
      }),
    );
    expect(config.architecture).toBe('arm64');
  });

  it('refuses references containerd could not name the image by', () => {
    for (const bad of ['localhost/podwire/pause', 'localhost:5000/pause', 'pause@sha256:00']) {
      expect(() => buildOciArchive(files, { reference: bad, entrypoint: ['/pause'] })).toThrow(
        /must be name:tag/,
      );
    }
    expect(() =>
      buildOciArchive([{ path: '/../pause', mode: 0o755, content: Buffer.alloc(0) }], {
        reference,
        entrypoint: ['/pause'],
      }),
    ).toThrow(/plain path/);
  });
});

/** The ELF program header types of a 64-bit little-endian binary. */
function programHeaderTypes(elf: Buffer): number[] {
  expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
  expect(elf[4]).toBe(2); // ELFCLASS64
  expect(elf[5]).toBe(1); // little-endian
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  return Array.from({ length: phnum }, (_, i) => elf.readUInt32LE(phoff + i * phentsize));
}

const PT_DYNAMIC = 2;
const PT_INTERP = 3;

/** Resolves once the process has installed a handler for `signo` (bit signo-1 of SigCgt). */
async function handlerInstalled(pid: number, signo: number): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    if (caught && (BigInt(`0x${caught}`) >> BigInt(signo - 1)) & 1n) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`pid ${pid} never installed a handler for signal ${signo}`);
}

describe('buildPauseImage', () => {
  let archive: OciArchive;
  let pause: string;

  beforeAll(async () => {
    const workDir = tempDir();
    archive = await buildPauseImage({ reference, workDir });
    const { dir } = await extract(archive.tar);
    const rootfs = tempDir();
    await run('tar', [
      '-xf',
      join(dir, 'blobs', 'sha256', archive.layerDigest.slice(7)),
      '-C',
      rootfs,
    ]);
    pause = join(rootfs, 'pause');
  }, 60_000);

  it('packs a static /pause with mode 0755 as the entrypoint', () => {
    expect(archive.reference).toBe(reference);
    expect(statSync(pause).mode & 0o7777).toBe(0o755);
    const types = programHeaderTypes(readFileSync(pause));
    expect(types).not.toContain(PT_INTERP);
    expect(types).not.toContain(PT_DYNAMIC);
  });

  it('prints its version on -v', async () => {
    const { stdout } = await run(pause, ['-v']);
    expect(stdout).toMatch(/^podwire-pause \d+\.\d+\.\d+\n$/);
  });

  it('waits until SIGTERM, then exits 0, ignoring extra arguments', async () => {
    const child = spawn(pause, ['--some', 'app', 'args'], { stdio: 'ignore' });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    const pid = child.pid;
    if (pid === undefined) throw new Error('pause did not start');
    await handlerInstalled(pid, 15);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(child.exitCode).toBeNull();
    process.kill(pid, 'SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
  });

  it('exits 0 on SIGINT too', async () => {
    const child = spawn(pause, [], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const pid = child.pid;
    if (pid === undefined) throw new Error('pause did not start');
    await handlerInstalled(pid, 2);
    process.kill(pid, 'SIGINT');
    expect(await exited).toBe(0);
  });

  it('says which compiler is missing', async () => {
    await expect(
      buildPauseImage({ reference, workDir: tempDir(), cc: 'podwire-no-such-cc' }),
    ).rejects.toThrow(/^podwire-no-such-cc not found: apt-get install gcc libc6-dev$/);
  });
});
