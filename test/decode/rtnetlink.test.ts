// The rtnetlink decoder on what the CNI bridge and loopback plugins really sent and received (recorded by scripts/record-rtnetlink.sh).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeNetlink, type NetlinkMessage } from '../../src/decode/rtnetlink.js';
import { bytesFromBpftraceBuf } from '../../src/recording/bpftrace-buffers.js';
import { prng } from '../prng.js';

const fixtures = new URL('../fixtures/rtnetlink/', import.meta.url);

/** One sendto or recvfrom as recorded: its chunks joined, and what it decodes to. */
interface Capture {
  syscall: string;
  ns: number;
  tid: number;
  fd: number;
  /** What the syscall said: sendto's len, recvfrom's return value. */
  length: number;
  bytes: Uint8Array;
  messages: NetlinkMessage[];
}

/** A recording's syscalls, in the order they happened. */
function recording(name: string): Capture[] {
  const captures: Capture[] = [];
  for (const line of readFileSync(new URL(`${name}.ndjson`, fixtures), 'utf8').split('\n')) {
    if (line === '') continue;
    const { data } = JSON.parse(line) as { data: string };
    const text = data.replace(/\n$/, '');
    const at = text.indexOf(' bytes=');
    const fields = new Map(
      (at === -1 ? text : text.slice(0, at))
        .split(' ')
        .slice(1)
        .map((pair) => pair.split('=') as [string, string]),
    );
    const number = (key: string) => Number(fields.get(key));
    const bytes = at === -1 ? new Uint8Array() : bytesFromBpftraceBuf(text.slice(at + 7), 'rx');
    const syscall = fields.get('syscall') ?? '';
    if (number('off') > 0) {
      // The rest of a long buffer: the line before it from the same thread and syscall.
      const first = [...captures]
        .reverse()
        .find((c) => c.tid === number('tid') && c.syscall === syscall);
      if (first === undefined) throw new Error(`${name}: a chunk without its start: ${text}`);
      first.bytes = Uint8Array.from([...first.bytes, ...bytes]);
      continue;
    }
    captures.push({
      syscall,
      ns: number('ns'),
      tid: number('tid'),
      fd: number('fd'),
      length: number('len'),
      bytes,
      messages: [],
    });
  }
  for (const capture of captures) capture.messages = decodeNetlink(capture.bytes, capture.length);
  return captures.sort((a, b) => a.ns - b.ns);
}

const sent = (captures: Capture[]) =>
  captures.filter((c) => c.syscall === 'sendto').flatMap((c) => c.messages);
const received = (captures: Capture[]) =>
  captures.filter((c) => c.syscall === 'recvfrom').flatMap((c) => c.messages);

interface CniResult {
  interfaces?: { name: string; sandbox?: string }[];
  ips?: { address: string; gateway?: string }[];
  msg?: string;
}
const cniResult = (name: string) =>
  JSON.parse(readFileSync(new URL(`${name}.result.json`, fixtures), 'utf8')) as CniResult;

function found<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`not found: ${what}`);
  return value;
}

/** The ifindex of a link, as the kernel reported it in its reply to RTM_GETLINK. */
function ifindexOf(captures: Capture[], ifname: string): number {
  const reply = received(captures).find(
    (m) => m.typeName === 'RTM_NEWLINK' && m.link?.ifname === ifname,
  );
  return found(reply?.link?.ifindex, `the kernel's RTM_NEWLINK for ${ifname}`);
}

describe('the bridge plugin, ADD (bridge-add.ndjson)', () => {
  const add = recording('bridge-add');
  const result = cniResult('bridge-add');
  const hostVeth = found(
    result.interfaces?.find((i) => i.name.startsWith('veth'))?.name,
    'the host veth in the CNI result',
  );

  it('talks rtnetlink through sendto and recvfrom only (no sendmsg, no recvmsg)', () => {
    expect(new Set(add.map((c) => c.syscall))).toEqual(new Set(['sendto', 'recvfrom']));
    expect(add.every((c) => c.messages.every((m) => m.problems.length === 0))).toBe(true);
  });

  it('creates the bridge pwdec0 with CREATE|EXCL, then sets it up', () => {
    const create = found(
      sent(add).find((m) => m.link?.kind === 'bridge'),
      'RTM_NEWLINK kind bridge',
    );
    expect(create.typeName).toBe('RTM_NEWLINK');
    expect(create.flagNames).toEqual(
      expect.arrayContaining(['NLM_F_REQUEST', 'NLM_F_ACK', 'NLM_F_CREATE', 'NLM_F_EXCL']),
    );
    expect(create.link?.ifname).toBe('pwdec0');
    const bridge = ifindexOf(add, 'pwdec0');
    expect(
      sent(add).some(
        (m) => m.typeName === 'RTM_NEWLINK' && m.link?.ifindex === bridge && m.link.up === true,
      ),
    ).toBe(true);
  });

  it('creates the veth pair in one RTM_NEWLINK: eth0 in the pod, its peer in the host by netns fd', () => {
    const veth = found(
      sent(add).find((m) => m.link?.kind === 'veth'),
      'RTM_NEWLINK kind veth',
    );
    expect(veth.typeName).toBe('RTM_NEWLINK');
    expect(veth.flagNames).toEqual(
      expect.arrayContaining(['NLM_F_REQUEST', 'NLM_F_ACK', 'NLM_F_CREATE', 'NLM_F_EXCL']),
    );
    expect(veth.truncated).toBe(false);
    expect(veth.link?.ifname).toBe('eth0');
    expect(veth.link?.up).toBeUndefined();
    expect(veth.link?.peer?.ifname).toMatch(/^veth[0-9a-f]{8}$/);
    expect(veth.link?.peer?.ifname).toBe(hostVeth);
    expect(veth.link?.peer?.netnsFd).toEqual(expect.any(Number));
    // Born where they belong: nothing is moved or renamed afterwards.
    const moves = sent(add).filter(
      (m) => m.link?.kind === undefined && m.link?.netnsFd !== undefined,
    );
    expect(moves).toEqual([]);
  });

  it("attaches the host end to the bridge: IFLA_MASTER is the bridge's ifindex", () => {
    const attach = found(
      sent(add).find((m) => m.link?.master !== undefined),
      'a link message with IFLA_MASTER',
    );
    expect(attach.typeName).toBe('RTM_SETLINK');
    expect(attach.link?.ifindex).toBe(ifindexOf(add, hostVeth));
    expect(attach.link?.master).toBe(ifindexOf(add, 'pwdec0'));
    // The kernel's later view of the veth says the same.
    const after = received(add).filter((m) => m.link?.ifname === hostVeth);
    expect(after.at(-1)?.link?.master).toBe(ifindexOf(add, 'pwdec0'));
  });

  it("gives eth0 its address: RTM_NEWADDR 10.244.90.x/24 on eth0's ifindex", () => {
    const podAddress = found(result.ips?.[0]?.address, 'the pod address in the CNI result');
    const add4 = sent(add).filter((m) => m.typeName === 'RTM_NEWADDR');
    const pod = found(
      add4.find((m) => m.addr?.local !== '10.244.90.1'),
      'RTM_NEWADDR for the pod',
    );
    expect(`${pod.addr?.local}/${pod.addr?.prefixlen}`).toMatch(/^10\.244\.90\.\d+\/24$/);
    expect(`${pod.addr?.local}/${pod.addr?.prefixlen}`).toBe(podAddress);
    expect(pod.addr?.index).toBe(ifindexOf(add, 'eth0'));
    expect(pod.flagNames).toEqual(expect.arrayContaining(['NLM_F_CREATE', 'NLM_F_EXCL']));
  });

  it('gives the bridge the gateway address 10.244.90.1/24', () => {
    const gateway = found(
      sent(add).find((m) => m.typeName === 'RTM_NEWADDR' && m.addr?.local === '10.244.90.1'),
      'RTM_NEWADDR for the gateway',
    );
    expect(gateway.addr?.prefixlen).toBe(24);
    expect(gateway.addr?.index).toBe(ifindexOf(add, 'pwdec0'));
  });

  it('adds the default route via 10.244.90.1 out of eth0', () => {
    const route = found(
      sent(add).find((m) => m.typeName === 'RTM_NEWROUTE'),
      'RTM_NEWROUTE',
    );
    expect(route.flagNames).toEqual(expect.arrayContaining(['NLM_F_REQUEST', 'NLM_F_CREATE']));
    expect(route.route).toMatchObject({
      family: 2,
      dst: '0.0.0.0/0',
      gateway: '10.244.90.1',
      oif: ifindexOf(add, 'eth0'),
      table: 254,
    });
  });

  it('sets eth0, the host veth and the bridge up with IFF_UP in ifi_flags and ifi_change', () => {
    const upped = sent(add)
      .filter((m) => m.typeName === 'RTM_NEWLINK' && m.link?.up === true)
      .map((m) => m.link?.ifindex);
    for (const ifname of ['eth0', hostVeth, 'pwdec0']) {
      expect(upped).toContain(ifindexOf(add, ifname));
    }
  });

  it('acknowledges each change with NLMSG_ERROR errno 0, naming the request type and seq', () => {
    const changes = sent(add).filter(
      (m) => m.flagNames.includes('NLM_F_ACK') && !m.typeName.startsWith('RTM_GET'),
    );
    expect(changes.length).toBeGreaterThanOrEqual(10);
    for (const request of changes) {
      const ack = found(
        received(add).find((m) => m.error?.request?.seq === request.seq),
        `the ack of seq ${request.seq}`,
      );
      expect(ack.typeName).toBe('NLMSG_ERROR');
      expect(ack.flagNames).toContain('NLM_F_CAPPED');
      expect(ack.error).toMatchObject({ errno: 0, ack: true, errnoName: 'OK' });
      expect(ack.error?.request).toMatchObject({
        type: request.type,
        typeName: request.typeName,
        flags: request.flags,
      });
    }
  });

  it('answers RTM_GETLINK with a reply longer than the 384 bytes recorded: truncated, yet named', () => {
    const replies = received(add).filter((m) => m.typeName === 'RTM_NEWLINK');
    expect(replies.length).toBeGreaterThan(0);
    for (const reply of replies) {
      expect(reply.length).toBeGreaterThan(384);
      expect(reply.truncated).toBe(true);
      expect(reply.problems).toEqual([]);
      expect(reply.link?.ifname).toEqual(expect.any(String));
      expect(reply.link?.ifindex).toBeGreaterThan(0);
    }
  });

  it('answers the address dump with several RTM_NEWADDR in one buffer, then NLMSG_DONE', () => {
    const dump = found(
      sent(add).find((m) => m.typeName === 'RTM_GETADDR'),
      'RTM_GETADDR',
    );
    expect(dump.flagNames).toEqual(['NLM_F_REQUEST', 'NLM_F_DUMP']);
    const buffers = add.filter(
      (c) => c.syscall === 'recvfrom' && c.messages.some((m) => m.seq === dump.seq),
    );
    const multi = found(
      buffers.find((c) => c.messages.length > 1),
      'a buffer of several messages',
    );
    for (const m of multi.messages) {
      expect(m.typeName).toBe('RTM_NEWADDR');
      expect(m.flagNames).toEqual(['NLM_F_MULTI']);
      expect(m.truncated).toBe(false);
    }
    expect(buffers.at(-1)?.messages.at(-1)?.typeName).toBe('NLMSG_DONE');
  });
});

describe('the same ADD again (bridge-add-again.ndjson)', () => {
  const again = recording('bridge-add-again');

  it('fails the veth create with EEXIST, and the error echoes the whole request', () => {
    const create = found(
      sent(again).find((m) => m.link?.kind === 'veth'),
      'RTM_NEWLINK kind veth',
    );
    const error = found(
      received(again).find((m) => m.error?.request?.seq === create.seq),
      'the answer to the veth create',
    );
    expect(error.error).toMatchObject({ errno: 17, errnoName: 'EEXIST', ack: false });
    expect(error.error?.request).toMatchObject({ typeName: 'RTM_NEWLINK', seq: create.seq });
    expect(error.error?.echoed?.link).toMatchObject({ ifname: 'eth0', kind: 'veth' });
    expect(cniResult('bridge-add-again').msg).toMatch(/already exists/);
  });

  it('also meets EEXIST creating the bridge, which the plugin tolerates and goes on', () => {
    const bridgeError = found(
      received(again).find((m) => m.error?.echoed?.link?.kind === 'bridge'),
      'the answer to the bridge create',
    );
    expect(bridgeError.error?.errnoName).toBe('EEXIST');
  });

  it('looks the random peer name up and gets ENODEV', () => {
    const lookup = found(
      received(again).find((m) => m.error?.request?.typeName === 'RTM_GETLINK'),
      'the answer to RTM_GETLINK',
    );
    expect(lookup.error?.errnoName).toBe('ENODEV');
    expect(lookup.error?.echoed?.link?.ifname).toMatch(/^veth[0-9a-f]{8}$/);
  });
});

describe('the bridge plugin, DEL (bridge-del.ndjson)', () => {
  const del = recording('bridge-del');

  it("deletes eth0 by its ifindex in the pod's namespace, and is acknowledged", () => {
    const request = found(
      sent(del).find((m) => m.typeName === 'RTM_DELLINK'),
      'RTM_DELLINK',
    );
    expect(request.link?.ifindex).toBe(ifindexOf(del, 'eth0'));
    const ack = received(del).find((m) => m.error?.request?.seq === request.seq);
    expect(ack?.error).toMatchObject({ ack: true, request: { typeName: 'RTM_DELLINK' } });
  });

  it("lists eth0's addresses first, IPv6 link-local among them, as text", () => {
    const addresses = received(del).flatMap((m) => (m.addr?.local ?? m.addr?.address) || []);
    expect(addresses).toContain(cniResult('bridge-add').ips?.[0]?.address.split('/')[0]);
    expect(addresses.some((a) => /^fe80::[0-9a-f:]+$/.test(a))).toBe(true);
  });
});

describe('the loopback plugin, ADD (loopback-add.ndjson)', () => {
  const loopback = recording('loopback-add');

  it('sets lo up and lists its addresses: 127.0.0.1/8 and ::1/128', () => {
    const lo = ifindexOf(loopback, 'lo');
    expect(sent(loopback).some((m) => m.link?.ifindex === lo && m.link.up === true)).toBe(true);
    const listed = received(loopback)
      .filter((m) => m.typeName === 'RTM_NEWADDR')
      .map((m) => `${m.addr?.address}/${m.addr?.prefixlen}`);
    expect(listed).toEqual(['127.0.0.1/8', '::1/128']);
  });

  it('gets the IPv6 answer and its NLMSG_DONE in one buffer', () => {
    const both = found(
      loopback.find((c) => c.messages.length === 2),
      'a buffer of two messages',
    );
    expect(both.messages.map((m) => m.typeName)).toEqual(['RTM_NEWADDR', 'NLMSG_DONE']);
  });
});

describe('extended acks (extack.ndjson)', () => {
  const extack = recording('extack');

  it("gives the kernel's message and the offset of the attribute it blames, capped or not", () => {
    const [echoing, capped] = received(extack);
    const request = found(sent(extack)[0], 'the request');
    for (const reply of [echoing, capped]) {
      expect(reply?.flagNames).toContain('NLM_F_ACK_TLVS');
      expect(reply?.error).toMatchObject({
        errnoName: 'ERANGE',
        extack: { msg: 'Attribute failed policy validation', offset: 32 },
      });
    }
    expect(capped?.flagNames).toContain('NLM_F_CAPPED');
    expect(capped?.error?.echoed).toBeUndefined();
    expect(echoing?.error?.echoed?.link?.ifname).toBe(request.link?.ifname);
    // Offset 32 is the IFLA_IFNAME attribute (type 3) of the request.
    const requestBytes = found(extack[0]?.bytes, 'the request bytes');
    expect(new DataView(requestBytes.buffer).getUint16(32 + 2, true)).toBe(3);
  });
});

describe('bytes from bpftrace buf() text (buf-formats.ndjson)', () => {
  const lines = readFileSync(new URL('buf-formats.ndjson', fixtures), 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => (JSON.parse(line) as { data: string }).data.replace(/\n$/, ''));
  const printed = (format: string) =>
    lines
      .filter((line) => line.startsWith(`bufformat format=${format} `))
      .map((line) => line.slice(line.indexOf(' bytes=') + 7));
  const allBytes = Array.from({ length: 256 }, (_, i) => i);

  it('reads %rx (every byte as \\xNN) and %r (printable bytes as they are) back to 0-255', () => {
    for (const format of ['rx', 'r'] as const) {
      const halves = printed(format);
      expect(halves).toHaveLength(2);
      expect(halves.flatMap((half) => [...bytesFromBpftraceBuf(half, format)])).toEqual(allBytes);
      expect(halves.flatMap((half) => [...bytesFromBpftraceBuf(half)])).toEqual(allBytes);
    }
    expect(printed('r')[0]).toContain('[\\]^_');
  });

  it('tells %r from %rx: in %r text an escaped printable byte is a literal backslash', () => {
    const bytes = (text: string, format?: 'r' | 'rx') => [...bytesFromBpftraceBuf(text, format)];
    // %r: raw characters present, so "\x41" (an 'A' would have printed as itself) is four bytes.
    expect(bytes('A\\x41\\x00')).toEqual([0x41, 0x5c, 0x78, 0x34, 0x31, 0x00]);
    // Escapes alone: %rx.
    expect(bytes('\\x41\\x00')).toEqual([0x41, 0x00]);
    expect(bytes('\\x41\\x00', 'r')).toEqual([0x5c, 0x78, 0x34, 0x31, 0x00]);
    expect(bytes('a\\b\\x4\\X41')).toEqual([
      0x61, 0x5c, 0x62, 0x5c, 0x78, 0x34, 0x5c, 0x58, 0x34, 0x31,
    ]);
    expect(bytes('é€')).toEqual([0xe9, 0xe2, 0x82, 0xac]);
  });
});

/** A few real buffers of different shapes. */
function realBuffers(): { what: string; bytes: Uint8Array }[] {
  const add = recording('bridge-add');
  const again = recording('bridge-add-again');
  const extack = recording('extack');
  const loopback = recording('loopback-add');
  const pick = (captures: Capture[], what: string, test: (c: Capture) => boolean) => ({
    what,
    bytes: found(captures.find(test), what).bytes,
  });
  return [
    pick(add, 'the veth create', (c) => c.messages[0]?.link?.kind === 'veth'),
    pick(add, 'the address dump answer', (c) => c.messages.length > 2),
    pick(again, 'the EEXIST with the echoed veth create', (c) => c.length === 144),
    pick(extack, 'the extended ack', (c) => c.messages[0]?.error?.extack !== undefined),
    pick(loopback, 'RTM_NEWADDR ::1 and NLMSG_DONE', (c) => c.messages.length === 2),
  ];
}

describe('captures cut short', () => {
  const buffers = realBuffers();

  it('decodes every prefix of a real buffer as truncated, never as malformed', () => {
    for (const { what, bytes } of buffers) {
      const whole = decodeNetlink(bytes);
      expect(
        whole.every((m) => !m.truncated && m.problems.length === 0),
        what,
      ).toBe(true);
      for (let cut = 0; cut < bytes.length; cut++) {
        const messages = decodeNetlink(bytes.subarray(0, cut), bytes.length);
        expect(messages.at(-1)?.truncated, `${what} cut at ${cut}`).toBe(true);
        expect(
          messages.flatMap((m) => m.problems),
          `${what} cut at ${cut}`,
        ).toEqual([]);
      }
    }
  });

  it('still reads the veth peer when the capture stops inside it', () => {
    const { bytes } = found(buffers[0], 'the veth create');
    const [message] = decodeNetlink(bytes.subarray(0, 116), bytes.length);
    expect(message?.truncated).toBe(true);
    expect(message?.link?.kind).toBe('veth');
    expect(message?.link?.peer?.ifname).toMatch(/^veth/);
  });

  it('without the syscall length, a cut message is a length that lies', () => {
    const { bytes } = found(buffers[0], 'the veth create');
    const [message] = decodeNetlink(bytes.subarray(0, 60));
    expect(message?.truncated).toBe(true);
    expect(message?.problems.join('\n')).toMatch(/nlmsg_len 124 runs past the end/);
  });

  it('ignores captured bytes past what the syscall reported', () => {
    const { bytes } = found(buffers[0], 'the veth create');
    const padded = Uint8Array.from([...bytes, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect(decodeNetlink(padded, bytes.length)).toEqual(decodeNetlink(bytes));
  });
});

describe('lengths that lie', () => {
  const veth = found(realBuffers()[0], 'the veth create').bytes;
  const withU16 = (at: number, value: number) => {
    const copy = Uint8Array.from(veth);
    new DataView(copy.buffer).setUint16(at, value, true);
    return copy;
  };
  const withU32 = (at: number, value: number) => {
    const copy = Uint8Array.from(veth);
    new DataView(copy.buffer).setUint32(at, value, true);
    return copy;
  };

  it('nlmsg_len 0: one message, the problem said, no endless loop', () => {
    const messages = decodeNetlink(withU32(0, 0));
    expect(messages).toHaveLength(1);
    expect(messages[0]?.problems).toEqual([expect.stringMatching(/nlmsg_len 0 is shorter/)]);
  });

  it('nlmsg_len larger than the buffer', () => {
    for (const length of [125, 4096, 0xffffffff]) {
      const [message] = decodeNetlink(withU32(0, length), veth.length);
      expect(message?.problems).toEqual([expect.stringMatching(/runs past the end/)]);
      expect(message?.link?.kind).toBe('veth');
    }
  });

  it('an attribute length below its 4-byte header, or past its container', () => {
    // The first attribute (IFLA_IFNAME) sits right after the 16-byte header and 16-byte ifinfomsg.
    for (const length of [0, 1, 3]) {
      const [message] = decodeNetlink(withU16(32, length));
      expect(message?.problems).toEqual([
        expect.stringMatching(new RegExp(`length ${length}, shorter than its 4-byte header`)),
      ]);
    }
    const [past] = decodeNetlink(withU16(32, 200));
    expect(past?.problems).toEqual([expect.stringMatching(/past the 92 bytes left/)]);
  });

  it('an error whose echoed request claims more than the error holds', () => {
    const eexist = found(realBuffers()[2], 'the EEXIST').bytes;
    const copy = Uint8Array.from(eexist);
    new DataView(copy.buffer).setUint32(20, 1000, true);
    const [message] = decodeNetlink(copy);
    expect(message?.error?.errnoName).toBe('EEXIST');
    expect(message?.problems).toEqual([expect.stringMatching(/echoed request says 1000 bytes/)]);
  });
});

function wellFormed(message: NetlinkMessage): boolean {
  return (
    Number.isInteger(message.type) &&
    typeof message.typeName === 'string' &&
    Array.isArray(message.flagNames) &&
    typeof message.truncated === 'boolean' &&
    message.problems.every((problem) => typeof problem === 'string')
  );
}

describe('random and mutated input', () => {
  it('20,000 buffers: never throws, always an array of well-formed messages', () => {
    const random = prng(0x5eed);
    const int = (below: number) => Math.floor(random() * below);
    const real = realBuffers().map((b) => b.bytes);
    const edges = [0, 1, 2, 3, 4, 15, 16, 17, 0x7fff, 0x8000, 0xffff, 0xffffffff];
    const lengths = [undefined, 0, -1, Number.NaN, 2 ** 53, 1e9];
    const failures: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      let bytes: Uint8Array;
      if (i % 2 === 0) {
        bytes = Uint8Array.from({ length: int(600) }, () => int(256));
        // Often a plausible header, so the body decoders run too.
        if (bytes.length >= 16 && random() < 0.7) {
          const view = new DataView(bytes.buffer);
          view.setUint32(0, int(bytes.length + 8), true);
          view.setUint16(4, [2, 3, 16, 17, 18, 19, 20, 22, 24, 26, int(130)][int(11)] ?? 0, true);
        }
      } else {
        bytes = Uint8Array.from(real[int(real.length)] ?? []);
        const view = new DataView(bytes.buffer);
        for (let n = 1 + int(4); n > 0 && bytes.length > 4; n--) {
          const at = int(bytes.length - 4);
          const choice = int(4);
          if (choice === 0) bytes[at] = int(256);
          else if (choice === 1) view.setUint16(at, edges[int(edges.length)] ?? 0, true);
          else if (choice === 2) view.setUint32(at, edges[int(edges.length)] ?? 0, true);
          else bytes = bytes.subarray(0, at);
        }
      }
      const syscallLength = random() < 0.5 ? bytes.length + int(64) : lengths[int(lengths.length)];
      const replay = `buffer ${i} (${Buffer.from(bytes).toString('hex')}, ${syscallLength})`;
      try {
        const messages: unknown = decodeNetlink(bytes, syscallLength);
        if (!Array.isArray(messages) || !messages.every(wellFormed)) failures.push(replay);
      } catch (error) {
        failures.push(`${replay} threw ${String(error)}`);
      }
    }
    expect(failures).toEqual([]);
  });
});
