// Probe lines to events: chunked strings and buffers joined as the probes printed them (lines from a real recording).
import { describe, expect, it } from 'vitest';
import { Assembler } from '../../src/decode/assemble.js';
import { parseBpftraceLine, parseProbeLine } from '../../src/decode/lines.js';
import { decodeNetlink } from '../../src/decode/rtnetlink.js';
import type { ProbeEvent } from '../../src/events.js';
import { printfData, readRecording } from '../correlate/recordings.js';
import { prng } from '../prng.js';

/** The lines through one assembler; `flush` false leaves out what only the end of input would give. */
function assemble(datas: string[], flush = true): { events: ProbeEvent[]; problems: string[] } {
  const assembler = new Assembler();
  const events: ProbeEvent[] = [];
  const problems: string[] = [];
  for (const data of datas) {
    const line = parseProbeLine(data);
    if (typeof line === 'string') throw new Error(line);
    const out = assembler.push(line);
    events.push(...out.events);
    problems.push(...out.problems);
  }
  const rest = flush ? assembler.flush() : { events: [], problems: [] };
  return { events: [...events, ...rest.events], problems: [...problems, ...rest.problems] };
}

const kernelData = (recording: string) =>
  readRecording(recording)
    .lines.filter((line) => line.src === 'kernel')
    .flatMap((line) => printfData(line) ?? [])
    // Ticks never reach the assembler: the pipeline takes them.
    .filter((data) => !data.startsWith('tick\t'));

// ten-pods.ndjson was recorded with buffers as bpftrace's %rx and %r print them (read upgraded to words),
// ten-pods-words.ndjson as words,
// ten-pods-envs.ndjson the CNI variables in slots (cni_envs_w).
describe.each(['ten-pods.ndjson', 'ten-pods-words.ndjson', 'ten-pods-envs.ndjson'])(
  'assembling recorded probe lines (%s)',
  (recording) => {
    const { events, problems } = assemble(kernelData(recording));

    it('reads every line of the recording without a problem', () => {
      expect(problems).toEqual([]);
      expect(events.length).toBeGreaterThan(500);
    });

    it('gives CNI_ARGS whole, from its 199-byte chunks or its slot', () => {
      const args = events.filter((e) => e.kind === 'cni_env' && e.name === 'CNI_ARGS');
      expect(args.length).toBeGreaterThan(0);
      for (const event of args) {
        if (event.kind !== 'cni_env') continue;
        const pairs = event.value.split(';').sort();
        expect(pairs.map((p) => p.split('=')[0])).toEqual(
          [
            'IgnoreUnknown',
            'K8S_POD_INFRA_CONTAINER_ID',
            'K8S_POD_NAME',
            'K8S_POD_NAMESPACE',
            'K8S_POD_UID',
          ].sort(),
        );
        expect(event.value).toMatch(/K8S_POD_INFRA_CONTAINER_ID=[0-9a-f]{64}(;|$)/);
      }
    });

    it('keeps a short variable whole and drops what the probe read past its end', () => {
      const commands = events.filter((e) => e.kind === 'cni_env' && e.name === 'CNI_COMMAND');
      expect(new Set(commands.map((e) => (e.kind === 'cni_env' ? e.value : '')))).toEqual(
        new Set(['ADD', 'DEL']),
      );
    });

    it('keeps the first 128 bytes of a long netlink reply, marked truncated, and decodes them', () => {
      const long = events.find((e) => e.kind === 'nl_recv' && e.length > 128);
      expect(long?.kind).toBe('nl_recv');
      if (long?.kind !== 'nl_recv') return;
      expect(long.bytes.length).toBe(128);
      const [reply] = decodeNetlink(long.bytes, long.length);
      expect(reply?.typeName).toBe('RTM_NEWLINK');
      expect(reply?.truncated).toBe(true);
      expect(reply?.link?.ifname).toMatch(/^(pwlab0|eth0|lo|veth[0-9a-f]{8})$/);
    });

    it('cuts the plugin stdout at the length written and keeps the JSON whole', () => {
      const outputs = events.filter((e) => e.kind === 'cni_out');
      expect(outputs.length).toBeGreaterThan(0);
      for (const event of outputs) {
        if (event.kind !== 'cni_out') continue;
        expect(event.bytes.length).toBe(Math.min(event.length, 768));
        if (event.length <= 768)
          expect(() => JSON.parse(Buffer.from(event.bytes).toString())).not.toThrow();
      }
    });

    it("splits shim and runc argv, with the sandbox id as runc create's last argument", () => {
      const creates = events.filter((e) => e.kind === 'sb_exec' && e.argv.includes('create'));
      expect(creates).toHaveLength(10);
      for (const event of creates)
        if (event.kind === 'sb_exec') expect(event.argv.at(-1)).toMatch(/^[0-9a-f]{64}$/);
    });
  },
);

describe('CNI_ARGS printed only as far as it reaches (real recording ten-pods-ticks.ndjson)', () => {
  const recorded = readRecording('ten-pods-ticks.ndjson')
    .lines.filter((line) => line.src === 'kernel')
    .flatMap((line) => printfData(line) ?? []);
  const env = recorded.filter((data) => data.startsWith('cni_env\t'));

  it("prints past a value's end (the runtime's other variables) only where Go's layout gives no bound: rarely", () => {
    let previous: string[] = [];
    let pastTheEnd = 0;
    for (const data of env) {
      const fields = data.replace(/\n$/, '').split('\t');
      if (fields[5] !== '0' && (previous[6] ?? '').length < 199) pastTheEnd++;
      previous = fields;
    }
    const values = env.filter((data) => /^CNI_ARGS=/.test(data.split('\t')[6] ?? '')).length;
    expect(values).toBe(90);
    expect(pastTheEnd).toBeLessThan(values / 10);
  });

  it('gives each value as soon as it ends, whole, without waiting for chunks that will not come', () => {
    const { events, problems } = assemble(env, false);
    const values = events.flatMap((e) =>
      e.kind === 'cni_env' && e.name === 'CNI_ARGS' ? [e.value] : [],
    );
    expect(problems).toEqual([]);
    expect(values).toHaveLength(90);
    for (const value of values)
      expect(value.split(';').sort()).toEqual([
        'IgnoreUnknown=1',
        expect.stringMatching(/^K8S_POD_INFRA_CONTAINER_ID=[0-9a-f]{64}$/),
        expect.stringMatching(/^K8S_POD_NAME=lab-[a-z0-9]{5}$/),
        'K8S_POD_NAMESPACE=default',
        expect.stringMatching(/^K8S_POD_UID=[0-9a-f-]{36}$/),
      ]);
  });
});

describe('the CNI variables in slots (cni_envs_w)', () => {
  const dataOf = (recording: string) =>
    readRecording(recording)
      .lines.filter((line) => line.src === 'kernel')
      .flatMap((line) => printfData(line) ?? []);
  const variables = ['CNI_ARGS', 'CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_NETNS'];
  /**
   * For each plugin process (cni_exec), the names of the CNI variables it was seen with. In file order, which is
   * bpftrace's, one CPU's buffer after another: a process's exec can come after its later lines.
   */
  const namesByPlugin = (events: ProbeEvent[]) => {
    const names = new Map<number, string[]>();
    const plugins = new Set<number>();
    for (const event of events) {
      if (event.kind === 'cni_exec') plugins.add(event.pid);
      if (event.kind === 'cni_env')
        names.set(event.pid, [...(names.get(event.pid) ?? []), event.name]);
    }
    return [...plugins].map((pid) => [...(names.get(pid) ?? [])].sort());
  };

  it('gives every plugin of ten real pods its five variables, two lines for each exec instead of seven', () => {
    const data = dataOf('ten-pods-envs.ndjson');
    const { events, problems } = assemble(data.filter((d) => !d.startsWith('tick\t')));
    expect(problems).toEqual([]);
    const plugins = namesByPlugin(events);
    expect(plugins).toHaveLength(90);
    for (const names of plugins) expect(names).toEqual(variables);
    expect(data.filter((d) => d.startsWith('cni_envs_w\t'))).toHaveLength(2 * 90);
    expect(data.filter((d) => d.startsWith('cni_env\t'))).toEqual([]);
    const ids = events.flatMap((e) =>
      e.kind === 'cni_env' && e.name === 'CNI_CONTAINERID' ? [e.value] : [],
    );
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{64}$/);
    const netns = events.flatMap((e) =>
      e.kind === 'cni_env' && e.name === 'CNI_NETNS' ? [e.value] : [],
    );
    // Empty in the second DEL (RemovePodSandbox), which containerd makes once the netns is gone.
    for (const path of netns) expect(path).toMatch(/^(\/var\/run\/netns\/cni-[0-9a-f-]{36})?$/);
    expect(netns.filter((path) => path !== '').length).toBeGreaterThanOrEqual(60);
  });

  it('prints a CNI_ARGS too long for its slot on its own, in chunks, whole (real pods with 146-character names)', () => {
    const data = dataOf('long-names.ndjson');
    const { events, problems } = assemble(data.filter((d) => !d.startsWith('tick\t')));
    expect(problems).toEqual([]);
    for (const names of namesByPlugin(events)) expect(names).toEqual(variables);
    const args = events.flatMap((e) =>
      e.kind === 'cni_env' && e.name === 'CNI_ARGS' ? [e.value] : [],
    );
    expect(args).toHaveLength(18);
    for (const value of args) {
      expect(value.length).toBeGreaterThan(384);
      expect(value).toMatch(/(^|;)K8S_POD_NAME=long-pod-name-x{126}-[a-z0-9]{5}(;|$)/);
      expect(value).toMatch(/(^|;)K8S_POD_NAMESPACE=long-namespace-y{45}(;|$)/);
    }
  });

  // Corners the real stack does not produce (cni.bt puts a variable in a slot only when it fits, NUL included):
  // hand-written lines.
  it('skips a slot of zeros and reports one without its NUL, keeping the others', () => {
    const words = (text: string, count: number) => {
      const bytes = Buffer.alloc(count * 8);
      bytes.write(text);
      return Array.from({ length: count }, (_, i) =>
        bytes.readBigUInt64LE(i * 8).toString(16),
      ).join(' ');
    };
    const { events, problems } = assemble([
      `cni_envs_w\t5\t7\t7\t${words('CNI_COMMAND=ADD', 3)}\t0 0 0 0\t${words('CNI_CONTAINERID=0123456789abcdef', 3)}`,
    ]);
    expect(events).toEqual([
      { ns: 5n, pid: 7, tid: 7, kind: 'cni_env', name: 'CNI_COMMAND', value: 'ADD' },
    ]);
    expect(problems).toEqual([
      // Three words of it: 24 bytes, no NUL among them.
      'cni_envs_w of pid 7: a slot without its NUL: "CNI_CONTAINERID=01234567"',
    ]);
  });
});

describe('lines that do not fit', () => {
  it('reports a chunk that arrives without the ones before it', () => {
    const { events, problems } = assemble(['nl_send_w\t5\t1\t1\t3\t300\t4026531833\t1\t100']);
    expect(events).toEqual([]);
    expect(problems).toEqual(['nl_send_w chunk 1 of pid 1 arrived without the chunks before it']);
  });

  it('emits a cut buffer when the next one starts on the same thread (its tail was lost)', () => {
    const { events } = assemble([
      'nl_send_w\t5\t1\t1\t3\t300\t4026531833\t0\t10',
      'nl_send_w\t6\t1\t1\t3\t20\t4026531833\t0\t14',
    ]);
    expect(events.map((e) => e.ns)).toEqual([5n, 6n]);
  });

  it('knows only the lines the probes print today (older recordings are upgraded as they are read)', () => {
    for (const old of ['nl_send', 'nl_recv', 'cni_out', 'sb_exec', 'cni_exit'])
      expect(assemble([`${old}\t5\t1\t1\t0`]).problems).toEqual([`unknown probe line "${old}"`]);
  });

  it('says what is wrong with an unreadable bpftrace line instead of throwing', () => {
    expect(parseBpftraceLine('not json')).toMatchObject({ type: 'malformed', why: 'not JSON' });
    expect(parseBpftraceLine('{"type": "printf", "data": "x\\t1"}')).toMatchObject({
      type: 'malformed',
    });
    expect(
      parseBpftraceLine('{"type": "printf", "data": "cni_gone\\tabc\\t1\\t1\\t0"}'),
    ).toMatchObject({
      type: 'malformed',
      why: 'cni_gone: timestamp "abc" is not a number',
    });
    expect(parseBpftraceLine('Lost 7 events')).toEqual({ type: 'lost', count: 7 });
    expect(parseBpftraceLine('')).toEqual({ type: 'other', text: '' });
  });

  it('never throws on random lines', () => {
    const random = prng(7);
    const tags = [
      'cni_exec',
      'cni_env',
      'nl_send_w',
      'nl_recv_w',
      'sb_exec_w',
      'cni_envs_w',
      'cri_enter',
      'cri_arg',
      'cri_return',
      'bogus',
    ];
    const assembler = new Assembler();
    for (let i = 0; i < 5000; i++) {
      const fields = Array.from({ length: Math.floor(random() * 10) }, () =>
        String(Math.floor(random() * 1000)),
      );
      const data = [tags[Math.floor(random() * tags.length)], ...fields].join('\t');
      const line = parseProbeLine(data);
      if (typeof line !== 'string') expect(() => assembler.push(line)).not.toThrow();
    }
  });
});
