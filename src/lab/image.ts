// The lab's pause image, built here since no registry is reachable: pause.c as an OCI tar for `ctr images import`.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export interface ImageFile {
  path: string;
  mode: number;
  content: Buffer;
}

export interface OciArchive {
  tar: Buffer;
  manifestDigest: string;
  configDigest: string;
  layerDigest: string;
  reference: string;
}

/** Where pause.c is, both from src/ (vitest) and from dist/src/ (the build copies src/lab/*.c next to the JS). */
export const pauseSourcePath: string = fileURLToPath(new URL('./pause.c', import.meta.url));

const MEDIA_TYPE = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const;

// containerd names an imported image after this annotation and only falls back to
// ref.name (behind ctr's "import-<date>" prefix) when it is missing: containerd 1.6 import.go, imageName().
const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';
const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/**
 * Pure: builds an OCI image-layout tar (oci-layout, index.json, blobs/sha256/...) for one
 * linux/amd64 image with one uncompressed layer holding `files`. Deterministic: same input,
 * same bytes (mtime 0, uid/gid 0, sorted entries).
 */
export function buildOciArchive(
  files: ImageFile[],
  options: { reference: string; entrypoint: string[]; architecture?: string },
): OciArchive {
  const tag = referenceTag(options.reference);
  const architecture = options.architecture ?? 'amd64';

  const layer = writeTar(layerEntries(files));
  const layerDescriptor = describe(MEDIA_TYPE.layer, layer);
  const config = json({
    architecture,
    os: 'linux',
    config: { Entrypoint: options.entrypoint },
    // The layer is stored uncompressed, so its diff_id is its own digest.
    rootfs: { type: 'layers', diff_ids: [layerDescriptor.digest] },
  });
  const configDescriptor = describe(MEDIA_TYPE.config, config);
  const manifest = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.manifest,
    config: configDescriptor,
    layers: [layerDescriptor],
  });
  const manifestDescriptor = describe(MEDIA_TYPE.manifest, manifest);
  const index = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.index,
    manifests: [
      {
        ...manifestDescriptor,
        platform: { architecture, os: 'linux' },
        annotations: {
          [ANNOTATION_IMAGE_NAME]: options.reference,
          [ANNOTATION_REF_NAME]: tag,
        },
      },
    ],
  });

  const blobs = [layer, config, manifest].map(
    (content): TarEntry => ({ path: `blobs/sha256/${sha256(content)}`, mode: 0o644, content }),
  );
  const tar = writeTar([
    { path: 'oci-layout', mode: 0o644, content: json({ imageLayoutVersion: '1.0.0' }) },
    { path: 'index.json', mode: 0o644, content: index },
    { path: 'blobs', mode: 0o755 },
    { path: 'blobs/sha256', mode: 0o755 },
    ...blobs,
  ]);
  return {
    tar,
    manifestDigest: manifestDescriptor.digest,
    configDigest: configDescriptor.digest,
    layerDigest: layerDescriptor.digest,
    reference: options.reference,
  };
}

/**
 * Compiles pause.c (gcc -static -O2 -s) into a temp dir under `workDir` and returns the archive
 * with /pause (0755) as its entrypoint. Throws an Error with a one-line message naming what is
 * missing if compilation fails.
 */
export async function buildPauseImage(options: {
  reference: string;
  workDir: string;
  cc?: string;
}): Promise<OciArchive> {
  const cc = options.cc ?? 'gcc';
  await access(pauseSourcePath).catch(() => {
    throw new Error(
      `pause.c not found at ${pauseSourcePath}: run npm run build, which copies src/lab/*.c next to the compiled JS`,
    );
  });
  const buildDir = await mkdtemp(join(options.workDir, 'pause-build-')).catch((err: Error) => {
    throw new Error(`cannot create a build directory in ${options.workDir}: ${err.message}`);
  });
  try {
    const binary = join(buildDir, 'pause');
    await compile(cc, pauseSourcePath, binary);
    const content = await readFile(binary);
    return buildOciArchive([{ path: '/pause', mode: 0o755, content }], {
      reference: options.reference,
      entrypoint: ['/pause'],
      architecture: hostArchitecture(),
    });
  } finally {
    await rm(buildDir, { recursive: true, force: true });
  }
}

async function compile(cc: string, source: string, output: string): Promise<void> {
  try {
    await promisify(execFile)(cc, ['-static', '-O2', '-s', '-o', output, source]);
  } catch (err) {
    throw new Error(compileFailure(cc, source, err as NodeJS.ErrnoException & { stderr?: string }));
  }
}

function compileFailure(
  cc: string,
  source: string,
  err: NodeJS.ErrnoException & { stderr?: string },
): string {
  // EACCES from spawn: a PATH entry could not be searched (an unprivileged user's PATH naming root's dirs).
  if (err.code === 'ENOENT' || (err.code === 'EACCES' && err.syscall?.startsWith('spawn'))) {
    return `${cc} not found: apt-get install gcc libc6-dev`;
  }
  const stderr = err.stderr ?? '';
  if (/cannot find -lc\b/.test(stderr)) {
    return `static libc not found (${cc} -static: cannot find -lc): apt-get install libc6-dev`;
  }
  if (/\.h: No such file or directory/.test(stderr)) {
    return `C headers not found (${cc} cannot include them): apt-get install libc6-dev`;
  }
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  const firstError = lines.find((line) => /error/i.test(line)) ?? lines[0] ?? err.message;
  return `compiling ${source} with ${cc} failed: ${firstError.trim()}`;
}

/** The OCI (Go) name of the architecture the host compiler builds for. */
function hostArchitecture(): string {
  const goArch: Partial<Record<NodeJS.Architecture, string>> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  return goArch[process.arch] ?? process.arch;
}

/** The tag of `registry/name:tag`; CRI looks images up by their full tagged name, so one is required. */
function referenceTag(reference: string): string {
  const name = reference.slice(reference.lastIndexOf('/') + 1);
  const colon = name.indexOf(':');
  const tag = colon === -1 ? '' : name.slice(colon + 1);
  if (reference.includes('@') || !/^\w[\w.-]{0,127}$/.test(tag)) {
    throw new Error(
      `image reference ${reference} must be name:tag, e.g. localhost/podwire/pause:lab`,
    );
  }
  return tag;
}

/** Layer entries for `files`, with the parent directories a tar extractor expects to see first. */
function layerEntries(files: ImageFile[]): TarEntry[] {
  const entries = new Map<string, TarEntry>();
  for (const file of files) {
    const path = file.path.replace(/^(\.?\/)+/, '');
    const parts = path.split('/');
    if (path === '' || parts.some((part) => part === '' || part === '.' || part === '..')) {
      throw new Error(`image file path ${file.path} must be a plain path such as /pause`);
    }
    if (entries.has(path)) throw new Error(`image file ${file.path} is given twice`);
    for (let depth = 1; depth < parts.length; depth++) {
      const dir = parts.slice(0, depth).join('/');
      if (!entries.has(dir)) entries.set(dir, { path: dir, mode: 0o755 });
    }
    entries.set(path, { path, mode: file.mode, content: file.content });
  }
  return [...entries.values()];
}

function describe(mediaType: string, content: Buffer): Descriptor {
  return { mediaType, digest: `sha256:${sha256(content)}`, size: content.length };
}

function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

/** A regular file, or a directory when `content` is absent. */
interface TarEntry {
  path: string;
  mode: number;
  content?: Buffer;
}

const BLOCK = 512;

/** A POSIX ustar archive of `entries` sorted by path, owned by root, dated the epoch. */
function writeTar(entries: TarEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const blocks: Buffer[] = [];
  for (const entry of sorted) {
    const size = entry.content?.length ?? 0;
    blocks.push(tarHeader(entry, size));
    if (entry.content) {
      blocks.push(entry.content, Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK));
    }
  }
  blocks.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(blocks);
}

function tarHeader(entry: TarEntry, size: number): Buffer {
  const isDir = entry.content === undefined;
  const [prefix, name] = splitTarPath(isDir ? `${entry.path}/` : entry.path);
  const header = Buffer.alloc(BLOCK);
  header.write(name, 0, 100, 'utf8');
  header.write(octal(entry.mode & 0o7777, 8), 100, 'ascii');
  header.write(octal(0, 8), 108, 'ascii'); // uid
  header.write(octal(0, 8), 116, 'ascii'); // gid
  header.write(octal(size, 12), 124, 'ascii');
  header.write(octal(0, 12), 136, 'ascii'); // mtime
  header.write(' '.repeat(8), 148, 'ascii'); // checksum counts as spaces while summing
  header.write(isDir ? '5' : '0', 156, 'ascii');
  header.write('ustar\u000000', 257, 'ascii');
  header.write('root', 265, 'ascii');
  header.write('root', 297, 'ascii');
  header.write(prefix, 345, 155, 'utf8');
  let checksum = 0;
  for (const byte of header) checksum += byte;
  header.write(`${checksum.toString(8).padStart(6, '0')}\u0000 `, 148, 'ascii');
  return header;
}

/** ustar keeps 100 bytes of name and 155 of prefix, joined by a slash. */
function splitTarPath(path: string): [prefix: string, name: string] {
  if (Buffer.byteLength(path) <= 100) return ['', path];
  for (let slash = path.indexOf('/'); slash !== -1; slash = path.indexOf('/', slash + 1)) {
    const prefix = path.slice(0, slash);
    const name = path.slice(slash + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name !== '') {
      return [prefix, name];
    }
  }
  throw new Error(`path ${path} is too long for a ustar archive`);
}

/** A NUL-terminated octal field of `width` bytes. */
function octal(value: number, width: number): string {
  const digits = value.toString(8);
  if (digits.length > width - 1) throw new Error(`${value} does not fit a ${width}-byte tar field`);
  return `${digits.padStart(width - 1, '0')}\u0000`;
}
