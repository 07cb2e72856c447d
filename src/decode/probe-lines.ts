// The contract of every probe line podwire reads: each tag's fields, declared once for the probes' printf, the
// trace_pipe reader that makes the cri_* lines, the assembler, the recording upgrade and the replay bench.

/**
 * How a field is printed. int: a signed decimal (%d, %lld); uint: an unsigned decimal (%u, %llu); string: text
 * without a tab (%s); words: a buffer as little-endian 64-bit words in hex, space-separated (%llx each, see
 * src/probes/program.ts withWords); rest: text to the end of the line, tabs included.
 */
export type FieldType = 'int' | 'uint' | 'string' | 'words' | 'rest';

export interface Field {
  /** Its name: where the event (src/events.ts) has the value, the property that holds it. */
  readonly name: string;
  readonly type: FieldType;
  /**
   * What the value identifies, for whoever must tell one pod's lines from another's (the replay bench): a process,
   * a network namespace (`host netns`: the one a runtime or plugin process was exec'd in, the node's own), a Go
   * goroutine (hex).
   */
  readonly holds?: 'pid' | 'netns' | 'host netns' | 'goroutine';
  /** The last field only: printed one or more times, each a value of its own (cni_envs_w's slots). */
  readonly repeats?: true;
}

/**
 * A value longer than one printf holds, printed in chunks: the line's last field is one chunk of it. A string's
 * chunks are `stringChunk` characters (bpftrace's string limit) and one shorter ends it; a buffer's are
 * `bufferChunk` bytes, as many as its length needs.
 */
export interface Chunks {
  /** The field that numbers the chunk, 0 first. */
  readonly number: string;
  /** Fields besides the thread that tell one value's chunks from another's. */
  readonly key: readonly string[];
  readonly join: 'string' | 'buffer';
  /** At most this many chunks. */
  readonly max: number;
  /** A buffer's length in bytes: how many chunks come, and where its bytes end. */
  readonly length?: string;
  /**
   * A string: the values a probe may print on past their first chunk (cni.bt, for an exec that failed, only these);
   * any other ends with its first chunk, and a chunk of it that follows is dropped.
   */
  readonly continued?: RegExp;
}

export interface ProbeLineSpec {
  /** The fields after the four every line starts with: tag, ns (CLOCK_MONOTONIC), pid, tid. */
  readonly fields: readonly Field[];
  readonly chunks?: Chunks;
  /** Who prints it: a program in probes/, or the CRI uprobe events' reader (src/decode/trace-pipe.ts). */
  readonly printedBy: readonly string[];
}

/** Characters of a string chunk with BPFTRACE_STRLEN=200 (199 and the NUL). */
export const stringChunk = 199;
/** Bytes of a buffer chunk. */
export const bufferChunk = 192;

const int = <N extends string>(name: N, holds?: Field['holds']) =>
  ({ name, type: 'int', holds }) as const;
const uint = <N extends string>(name: N, holds?: Field['holds']) =>
  ({ name, type: 'uint', holds }) as const;
const string = <N extends string>(name: N, holds?: Field['holds']) =>
  ({ name, type: 'string', holds }) as const;
const rest = <N extends string>(name: N) => ({ name, type: 'rest' }) as const;
const words = { name: 'bytes', type: 'words' } as const;
const netns = uint('netnsInum', 'netns');
const goroutine = string('goroutine', 'goroutine');

/** Every probe line, by tag. */
export const probeLines = {
  cni_exec: {
    fields: [int('ppid', 'pid'), uint('netnsInum', 'host netns'), string('path')],
    printedBy: ['cni.bt'],
  },
  /** The CNI variables in slots: each NAME=value NUL-terminated, zeros when the plugin has no such variable. */
  cni_envs_w: {
    fields: [{ name: 'slots', type: 'words', repeats: true }],
    printedBy: ['cni.bt'],
  },
  /** One variable (NAME=value) on its own; `index`: its place in the environment. */
  cni_env: {
    fields: [int('index'), int('chunk'), rest('text')],
    chunks: {
      number: 'chunk',
      key: ['index'],
      join: 'string',
      max: 3,
      continued: /^(CNI_ARGS|TRACESTATE)=/,
    },
    printedBy: ['cni.bt'],
  },
  /** The process ended: its raw wait status (exit code in bits 8-15, signal in the low 7). */
  cni_gone: { fields: [int('status')], printedBy: ['cni.bt'] },
  /** What a plugin wrote to stdout. */
  cni_out_w: {
    fields: [uint('length'), int('chunk'), words],
    chunks: { number: 'chunk', key: [], join: 'buffer', max: 4, length: 'length' },
    printedBy: ['plugin-io.bt', 'plugin-io-syscalls.bt'],
  },
  ns_unshare: {
    fields: [int('ret'), uint('flags'), netns],
    printedBy: ['netns.bt'],
  },
  /** `ret`: the child's pid in the parent. */
  ns_clone: { fields: [int('ret', 'pid'), uint('flags')], printedBy: ['netns.bt'] },
  ns_mount: { fields: [int('ret'), string('target')], printedBy: ['netns.bt'] },
  ns_umount: { fields: [int('ret'), string('target')], printedBy: ['netns.bt'] },
  ns_setns: {
    fields: [int('ret'), int('nstype'), netns],
    printedBy: ['netns.bt'],
  },
  nl_socket: { fields: [int('fd')], printedBy: ['plugin-io-syscalls.bt'] },
  /** A plugin's rtnetlink request; `length`: what it sent, of which 384 bytes at most are printed. */
  nl_send_w: {
    fields: [int('fd'), uint('length'), netns, int('chunk'), words],
    chunks: { number: 'chunk', key: [], join: 'buffer', max: 2, length: 'length' },
    printedBy: ['plugin-io.bt', 'plugin-io-syscalls.bt'],
  },
  /** An answer the plugin read (fd -1 when seen in its code); at most 128 bytes printed. */
  nl_recv_w: {
    fields: [int('fd'), int('length'), netns, int('chunk'), words],
    chunks: { number: 'chunk', key: [], join: 'buffer', max: 1, length: 'length' },
    printedBy: ['plugin-io.bt', 'plugin-io-syscalls.bt'],
  },
  nl_extack: { fields: [rest('message')], printedBy: ['rtnetlink.bt'] },
  /** A shim or runc exec'd: its argv, NUL-separated. */
  sb_exec_w: {
    fields: [
      int('ppid', 'pid'),
      uint('netnsInum', 'host netns'),
      uint('length'),
      int('chunk'),
      words,
    ],
    chunks: { number: 'chunk', key: [], join: 'buffer', max: 3, length: 'length' },
    printedBy: ['sandbox.bt'],
  },
  sb_init: { fields: [netns, string('path')], printedBy: ['sandbox.bt'] },
  /** Every CPU's output was read up to `ns` (tick.bt; the CRI reader's trace_marker). */
  tick: { fields: [], printedBy: ['tick.bt', 'trace-pipe'] },
  /** A CRI handler's entry; `args` cri_arg lines follow. */
  cri_enter: {
    fields: [string('method'), goroutine, uint('args')],
    printedBy: ['trace-pipe'],
  },
  cri_arg: {
    fields: [goroutine, string('name'), rest('value')],
    printedBy: ['trace-pipe'],
  },
  /** A CRI handler returned; `failed` 1 when it returned an error, else `sandboxId` ('' when not known). */
  cri_return: {
    fields: [string('method'), goroutine, uint('failed'), string('sandboxId')],
    printedBy: ['trace-pipe'],
  },
} as const satisfies Record<string, ProbeLineSpec>;

export type ProbeTag = keyof typeof probeLines;

/** The declaration of `tag`, or undefined for a tag no probe prints. */
export function probeLineSpec(tag: string): ProbeLineSpec | undefined {
  return Object.hasOwn(probeLines, tag) ? probeLines[tag as ProbeTag] : undefined;
}

type FieldNames<T extends ProbeTag> = (typeof probeLines)[T]['fields'][number]['name'];

/** The text of one field's value: a number in decimal, a string as it is. */
type FieldValue = string | number | bigint;

/**
 * The printf data of one probe line (without its newline): `values` by field name, in the declared order. What the
 * CRI reader prints with it is the same line a bpftrace program would print.
 */
export function probeLine<T extends ProbeTag>(
  tag: T,
  head: { ns: bigint; pid: number; tid: number },
  values: Record<FieldNames<T>, FieldValue>,
): string {
  let line = `${tag}\t${head.ns}\t${head.pid}\t${head.tid}`;
  for (const field of probeLines[tag].fields as readonly Field[])
    line += `\t${(values as Record<string, FieldValue>)[field.name]}`;
  return line;
}

/** `bytes` as a words field: little-endian 64-bit words in hex without leading zeros, as %llx prints them. */
export function wordsText(bytes: Uint8Array): string {
  const words: string[] = [];
  for (let at = 0; at < bytes.length; at += 8) {
    let word = 0n;
    for (let i = Math.min(7, bytes.length - at - 1); i >= 0; i--)
      word = (word << 8n) | BigInt(bytes[at + i] as number);
    words.push(word.toString(16));
  }
  return words.join(' ');
}
