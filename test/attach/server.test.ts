// The live view's socket with the real sinks: what viewers get, and what they cannot do to the daemon.
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { findSocket, openStream, type StreamLine } from '../../src/attach/client.js';
import type { AttachHello } from '../../src/attach/protocol.js';
import { AttachServer, type AttachServerOptions } from '../../src/attach/server.js';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { type StatusEvent, status } from '../../src/events.js';
import { NdjsonSink, type Sink } from '../../src/sinks/ndjson.js';
import { readRecording, replay } from '../correlate/recordings.js';
import { isRoot, rootReason } from '../lab/node.js';
import { until } from '../until.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(repo, 'dist/src/cli.js');

/** The handshakes and teardowns of ten real pods. */
const { header, lines: recorded } = readRecording('ten-pods-envs.ndjson');
const records: HandshakeRecord[] = replay(header, recorded);

/** A daemon's sinks: NDJSON as on stdout (kept as text) and the socket, fed as the Tracer feeds them. */
class Daemon {
  readonly stdout: string[] = [];
  readonly sinks: Sink[] = [];
  private partial = '';

  constructor(readonly server: AttachServer) {
    const stream = new PassThrough();
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const lines = (this.partial + chunk).split('\n');
      this.partial = lines.pop() ?? '';
      this.stdout.push(...lines);
    });
    this.sinks.push(new NdjsonSink(stream), server);
  }

  static async start(dir: string, options: Partial<AttachServerOptions> = {}): Promise<Daemon> {
    let daemon: Daemon | null = null;
    const started = await AttachServer.start({
      dir,
      exportState: 'traces to http://collector:4318 (http/protobuf)',
      status: (event) => daemon?.emit(event),
      ...options,
    });
    if ('error' in started) throw new Error(started.error);
    daemon = new Daemon(started);
    return daemon;
  }

  emit(record: HandshakeRecord | StatusEvent): void {
    for (const sink of this.sinks) sink.write(record);
  }

  async stop(): Promise<void> {
    this.emit(status('stopped', 'podwire stopped'));
    for (const sink of this.sinks) await sink.close();
  }
}

/** A viewer through the client `podwire attach` uses, keeping what it read. */
class Viewer {
  hello: AttachHello | null = null;
  readonly lines: string[] = [];
  end: { stopped: boolean; error: string | null } | null = null;

  constructor(path: string) {
    openStream(path, {
      hello: (hello) => {
        this.hello = hello;
      },
      line: (text) => this.lines.push(text),
      end: (end) => {
        this.end = end;
      },
    });
  }

  parsed(): StreamLine[] {
    return this.lines.map((line) => JSON.parse(line) as StreamLine);
  }
}

let scratch = '';
let daemons: Daemon[] = [];
const dirOf = () => join(scratch, 'podwire');

beforeAll(() => {
  if (!existsSync(cli))
    throw new Error(`${cli} is missing: the tests run on the build (npm run build)`);
});

afterEach(async () => {
  for (const daemon of daemons) await daemon.server.close();
  daemons = [];
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

async function daemonIn(options: Partial<AttachServerOptions> = {}): Promise<Daemon> {
  scratch = mkdtempSync(join(tmpdir(), 'podwire-attach-'));
  // Others may enter the scratch dir: what keeps them out is the socket dir's and the socket's own mode.
  chmodSync(scratch, 0o755);
  const daemon = await Daemon.start(dirOf(), options);
  daemons.push(daemon);
  return daemon;
}

const ready = status('ready', '2 probe programs attached', { programs: ['kernel', 'cri:x'] });

describe('podwire attach: the stream a viewer reads', () => {
  it('opens with who serves it and the backlog, then the live lines, exactly as --json writes them', async () => {
    const daemon = await daemonIn();
    daemon.emit(status('runtime-found', 'containerd 1.6.20', { binary: '/usr/bin/containerd' }));
    daemon.emit(ready);
    for (const record of records.slice(0, 5)) daemon.emit(record);
    const viewer = new Viewer(daemon.server.path);
    await until('the backlog', () => viewer.lines.length === 7);
    expect(viewer.hello).toMatchObject({
      kind: 'attach',
      pid: process.pid,
      version: '0.1.0',
      socket: join(dirOf(), `attach-${process.pid}.sock`),
      exportState: 'traces to http://collector:4318 (http/protobuf)',
      backlog: { records: 5, statuses: 2 },
    });
    expect(viewer.lines).toEqual(daemon.stdout);
    for (const record of records.slice(5)) daemon.emit(record);
    await daemon.stop();
    await until('the end of the stream', () => viewer.end !== null);
    expect(viewer.end).toEqual({ stopped: true, error: null });
    // Every line the daemon's stdout got, in its order, and nothing else.
    expect(viewer.lines).toEqual(daemon.stdout);
    expect(viewer.parsed().filter((l) => l.kind !== 'status')).toHaveLength(records.length);
    // Its socket is gone with it, and the directory it made too.
    expect(existsSync(dirOf())).toBe(false);
  });

  it('keeps a bounded backlog: the last records, the start statuses and the recent ones', async () => {
    const daemon = await daemonIn({ backlogRecords: 10 });
    daemon.emit(ready);
    for (let round = 0; round < 3; round++) for (const record of records) daemon.emit(record);
    daemon.emit(status('events-lost', 'kernel: bpftrace lost 3 events', { lost: 3, lostTotal: 3 }));
    const viewer = new Viewer(daemon.server.path);
    await until('the backlog', () => viewer.lines.length === 12);
    expect(viewer.hello?.backlog).toEqual({ records: 10, statuses: 2 });
    const got = viewer.parsed();
    expect(got[0]).toMatchObject({ kind: 'status', state: 'ready' });
    expect(got.slice(1, 11).map((l) => (l as HandshakeRecord).sandboxId)).toEqual(
      records.slice(-10).map((r) => r.sandboxId),
    );
    expect(got[11]).toMatchObject({ state: 'events-lost' });
  });

  it('gives several viewers the same lines as the daemon’s own stdout', async () => {
    const daemon = await daemonIn();
    const viewers = [1, 2, 3].map(() => new Viewer(daemon.server.path));
    await until('three viewers', () => daemon.server.viewerCount === 3);
    for (const record of records) daemon.emit(record);
    await daemon.stop();
    await until('every stream to end', () => viewers.every((v) => v.end !== null));
    for (const viewer of viewers) expect(viewer.lines).toEqual(daemon.stdout);
    expect(daemon.stdout).toHaveLength(records.length + 1);
  });
});

describe('podwire attach: viewers cost the daemon nothing', () => {
  it('disconnects a viewer that stops reading at the bound; the others and stdout get every line', async () => {
    const bound = 256 * 1024;
    const daemon = await daemonIn({ maxUnsentBytes: bound });
    // A viewer that reads its hello and then nothing more (a suspended `podwire attach`).
    const stuckLines: string[] = [];
    let stuckEnd: { stopped: boolean; error: string | null } | null = null;
    const stuck = openStream(daemon.server.path, {
      hello: () => stuck.pause(),
      line: (text) => stuckLines.push(text),
      end: (end) => {
        stuckEnd = end;
      },
    });
    await until('the stuck viewer', () => daemon.server.viewerCount === 1);
    const reader = new Viewer(daemon.server.path);
    await until('both viewers', () => daemon.server.viewerCount === 2);
    // About 8 MB of records, far past what the stuck viewer's socket buffers and the bound hold, each round read
    // by the other viewer before the next (the daemon and this viewer share the test's event loop).
    const rounds = Math.ceil(8e6 / records.reduce((n, r) => n + JSON.stringify(r).length, 0));
    let writeNs = 0n;
    for (let round = 0; round < rounds; round++) {
      const started = process.hrtime.bigint();
      for (const record of records) daemon.emit(record);
      writeNs += process.hrtime.bigint() - started;
      await until('the reader to keep up', () => reader.lines.length === daemon.stdout.length);
    }
    expect(daemon.server.dropped).toBe(1);
    expect(daemon.server.viewerCount).toBe(1);
    // The stuck viewer, reading again, finds its connection closed, and whole lines only (the last was cut).
    stuck.resume();
    await until('the stuck viewer to see its end', () => stuckEnd !== null);
    expect(stuckEnd).toEqual({ stopped: false, error: null });
    expect(stuckLines.length).toBeLessThan(daemon.stdout.length);
    expect(stuckLines).toEqual(daemon.stdout.slice(0, stuckLines.length));
    await until('the status line', () => daemon.stdout.some((l) => l.includes('viewer-dropped')));
    const said = JSON.parse(
      daemon.stdout.find((l) => l.includes('viewer-dropped')) as string,
    ) as StatusEvent;
    expect(said).toMatchObject({ state: 'viewer-dropped', reason: 'fell behind', droppedTotal: 1 });
    expect(said.unsentBytes as number).toBeGreaterThan(bound);
    expect(said.unsentBytes as number).toBeLessThan(bound + 64 * 1024);
    await daemon.stop();
    await until('the reader to end', () => reader.end !== null, 30_000);
    expect(reader.end).toEqual({ stopped: true, error: null });
    // The reader and stdout: every record, the drop's status line, the stop.
    expect(daemon.stdout).toHaveLength(rounds * records.length + 2);
    expect(reader.lines).toEqual(daemon.stdout);
    console.log(
      `${rounds * records.length} records to stdout and 2 viewers (one stuck): ${(Number(writeNs) / 1e6).toFixed(0)} ms in the sinks`,
    );
  }, 30_000);

  it('a viewer that sends data is disconnected and changes nothing', async () => {
    const daemon = await daemonIn();
    daemon.emit(ready);
    for (const record of records.slice(0, 4)) daemon.emit(record);
    const before = new Viewer(daemon.server.path);
    await until('the backlog', () => before.lines.length === 5);
    const sent = [...before.lines];
    const writer = connect(daemon.server.path);
    let closed = false;
    writer.on('close', () => {
      closed = true;
    });
    writer.on('error', () => {});
    writer.on('data', () => {});
    await until('the writer connected', () => daemon.server.viewerCount === 2);
    // What a viewer might try: a command, a record of its own, a status.
    writer.write('stop\n');
    writer.write(`${JSON.stringify(records[9])}\n`);
    writer.write(`${JSON.stringify(status('stopped', 'podwire stopped'))}\n`);
    await until('the writer cut', () => closed);
    await until('the status line', () => daemon.stdout.some((l) => l.includes('viewer-dropped')));
    expect(daemon.server.viewerCount).toBe(1);
    // The daemon's lines and what a new viewer is sent are the same as before, but the drop's own status line.
    const after = new Viewer(daemon.server.path);
    await until('the backlog', () => after.lines.length === 6);
    expect(after.lines.slice(0, 5)).toEqual(sent);
    expect(JSON.parse(after.lines[5] as string)).toMatchObject({
      state: 'viewer-dropped',
      reason: 'sent data',
    });
    expect(daemon.stdout.filter((l) => !l.includes('viewer-dropped'))).toEqual(sent);
    // The other viewer is still there, and got the status line too.
    expect(before.end).toBeNull();
    expect(before.lines).toEqual(after.lines);
  });

  it('a viewer that vanishes is just closed: no status, tracing goes on', async () => {
    const daemon = await daemonIn();
    const gone = connect(daemon.server.path);
    await new Promise((resolve) => gone.once('data', resolve));
    gone.destroy();
    await until('the viewer forgotten', () => daemon.server.viewerCount === 0);
    for (const record of records) daemon.emit(record);
    expect(daemon.server.dropped).toBe(0);
    expect(daemon.stdout).toHaveLength(records.length);
  });

  it('says so to one viewer more than it serves, and serves the others', async () => {
    const daemon = await daemonIn({ maxViewers: 2 });
    const served = [new Viewer(daemon.server.path), new Viewer(daemon.server.path)];
    await until('two viewers', () => daemon.server.viewerCount === 2);
    const third = new Viewer(daemon.server.path);
    await until('the third refused', () => third.end !== null);
    expect(third.end?.error).toMatch(/refused: 2 viewers are attached already/);
    daemon.emit(ready);
    await until('the others read on', () => served.every((v) => v.lines.length === 1));
  });
});

describe.skipIf(!isRoot)(
  `podwire attach: only root can open the socket${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    it('makes the directory 0700 and the socket 0600, root’s, and fixes a directory made 0755', async () => {
      scratch = mkdtempSync(join(tmpdir(), 'podwire-attach-'));
      mkdirSync(dirOf(), { mode: 0o755 });
      chmodSync(dirOf(), 0o755);
      const daemon = await Daemon.start(dirOf());
      daemons.push(daemon);
      const dir = lstatSync(dirOf());
      const socket = lstatSync(daemon.server.path);
      expect(dir.mode & 0o777).toBe(0o700);
      expect(socket.isSocket()).toBe(true);
      expect(socket.mode & 0o777).toBe(0o600);
      expect([dir.uid, socket.uid]).toEqual([0, 0]);
      // A directory it did not make stays at its stop (the DaemonSet's hostPath), without the socket.
      await daemon.server.close();
      expect(readdirSync(dirOf())).toEqual([]);
    });

    it('refuses a directory another user owns', async () => {
      scratch = mkdtempSync(join(tmpdir(), 'podwire-attach-'));
      mkdirSync(dirOf());
      chownSync(dirOf(), 65534, 65534);
      const started = await AttachServer.start({
        dir: dirOf(),
        exportState: null,
        status: () => {},
      });
      expect(started).toEqual({
        error: expect.stringMatching(
          /belongs to uid 65534.*another user could replace its sockets/,
        ),
      });
    });

    it('a user other than root cannot connect: not through the directory, not to the socket itself', async () => {
      const daemon = await daemonIn();
      const asNobody = () =>
        spawnSync(
          'setpriv',
          [
            '--reuid=65534',
            '--regid=65534',
            '--clear-groups',
            process.execPath,
            cli,
            'attach',
            '--json',
            '--socket',
            daemon.server.path,
          ],
          { encoding: 'utf8', timeout: 20_000 },
        );
      let run = asNobody();
      expect(run.status, run.stderr).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(
        /^podwire attach: cannot open .* \(EACCES\): podwire attach needs root/,
      );
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      // With the directory opened up by a mistake, the socket's own mode still keeps others out.
      chmodSync(dirOf(), 0o755);
      run = asNobody();
      expect(run.status, run.stderr).toBe(2);
      expect(run.stderr).toMatch(/cannot open .* \(EACCES\)/);
      expect(daemon.server.served).toBe(0);
    });
  },
);

describe('podwire attach: finding the daemon', () => {
  it('with none: one line naming the fix', async () => {
    scratch = mkdtempSync(join(tmpdir(), 'podwire-attach-'));
    expect(await findSocket(dirOf())).toEqual({
      error: expect.stringMatching(/does not exist; start podwire trace .* or pass --socket PATH/),
    });
    mkdirSync(dirOf());
    expect(await findSocket(dirOf())).toEqual({
      error: expect.stringMatching(/no socket in .*; start podwire trace/),
    });
  });

  it('removes the socket of a daemon that was killed -9, and finds the live one', async () => {
    const daemon = await daemonIn();
    // A daemon of its own that dies without removing its socket.
    const dead = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createServer } from 'node:net'; createServer().listen(${JSON.stringify(join(dirOf(), 'attach-1.sock'))}, () => console.log('listening'));`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise((resolve) => dead.stdout.once('data', resolve));
    process.kill(dead.pid as number, 'SIGKILL');
    await new Promise((resolve) => dead.once('exit', resolve));
    expect(readdirSync(dirOf()).sort()).toEqual(['attach-1.sock', `attach-${process.pid}.sock`]);
    expect(await findSocket(dirOf())).toEqual({ path: daemon.server.path });
    expect(readdirSync(dirOf())).toEqual([`attach-${process.pid}.sock`]);
  });

  it('with several live daemons: lists them and asks for --socket', async () => {
    await daemonIn();
    const other = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createServer } from 'node:net'; createServer().listen(${JSON.stringify(join(dirOf(), 'attach-2.sock'))}, () => console.log('listening'));`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise((resolve) => other.stdout.once('data', resolve));
      expect(await findSocket(dirOf())).toEqual({
        error: `2 podwire daemons serve a live view here (pids 2, ${process.pid}): choose one with --socket, e.g. --socket ${join(dirOf(), 'attach-2.sock')}`,
      });
    } finally {
      other.kill('SIGTERM');
      await new Promise((resolve) => other.once('exit', resolve));
    }
  });
});

describe('podwire attach --json', () => {
  it('prints the stream as NDJSON and ends when the daemon stops', async () => {
    const daemon = await daemonIn();
    daemon.emit(ready);
    const child = spawn(
      process.execPath,
      [cli, 'attach', '--json', '--socket', daemon.server.path],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await until('the viewer', () => daemon.server.viewerCount === 1);
    for (const record of records) daemon.emit(record);
    await daemon.stop();
    expect(await exited, stderr).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(JSON.parse(lines[0] as string)).toMatchObject({ kind: 'attach', pid: process.pid });
    expect(lines.slice(1)).toEqual(daemon.stdout);
    expect(stderr).toBe(`podwire attach: podwire (pid ${process.pid}) stopped\n`);
  });
});
