// Turns probe lines into typed events, reading each as its declaration says (probe-lines.ts) and joining the chunks
// that bpftrace's string limit makes the probes print separately.
import type { ProbeEvent } from '../events.js';
import {
  bytesOfWords,
  FieldReader,
  lastWordsWhole,
  type ProbeLine,
  textOfWords,
  unescapeJson,
} from './lines.js';
import {
  bufferChunk,
  type Field,
  type ProbeLineSpec,
  type ProbeTag,
  probeLineSpec,
  probeLines,
  stringChunk,
} from './probe-lines.js';

type FieldOf<T extends ProbeTag> = (typeof probeLines)[T]['fields'][number];
/** A repeated words field: each value as printed (its words), read by the builder as it needs. */
type ValueOf<F> = F extends { repeats: true }
  ? string[]
  : F extends { type: 'int' | 'uint' }
    ? number
    : F extends { type: 'words' }
      ? Uint8Array
      : string;
/** A line's values by field name; a chunked line's last field holds the whole value, joined. */
type Values<T extends ProbeTag> = { [F in FieldOf<T> as F['name']]: ValueOf<F> };
type Builder<T extends ProbeTag> = (
  line: ProbeLine,
  values: Values<T>,
  out: AssembleResult,
) => void;

export type AssembleResult = { events: ProbeEvent[]; problems: string[] };

/** A tag's declaration as the hot path reads it. */
interface Plan {
  tag: ProbeTag;
  spec: ProbeLineSpec;
  fields: readonly Field[];
  /** Chunked: the fields read before the chunk text (the last field). */
  head: number;
  /**
   * Where a line's values are read: one object a tag, of one shape, reused (a builder copies what it keeps; a
   * chunked value's first line is copied out).
   */
  values: Record<string, unknown>;
  /** What its values make. */
  build: Builder<ProbeTag>;
}

function planOf(tag: ProbeTag, build: Builder<ProbeTag>): Plan {
  const spec = probeLineSpec(tag) as ProbeLineSpec;
  const values = Object.fromEntries(spec.fields.map((field) => [field.name, undefined]));
  return { tag, spec, fields: spec.fields, head: spec.fields.length - 1, values, build };
}

interface Partial {
  plan: Plan;
  first: ProbeLine;
  /** The fields of the first line that come before its chunk text, read once. */
  values: Record<string, unknown>;
  /** Chunk texts as bpftrace's JSON wrote them (FieldReader.restEscaped). */
  chunks: string[];
  expected: number;
}

/** What tells one chunked value's lines from another's: the tag, the thread, and the fields the tag names. */
function partialKey(plan: Plan, line: ProbeLine, values: Record<string, unknown>): string {
  let key = `${plan.tag}:${line.tid}`;
  for (const name of plan.spec.chunks?.key ?? []) key += `:${values[name]}`;
  return key;
}

/** Joins string chunks: the next chunk continues only where the previous one filled its whole width. */
function joinStringChunks(chunks: string | readonly string[]): string {
  if (typeof chunks === 'string') return unescapeJson(chunks);
  let text = '';
  for (const escaped of chunks) {
    const chunk = unescapeJson(escaped);
    text += chunk;
    if (chunk.length < stringChunk) break;
  }
  return text;
}

/** The bytes of words; text that is not words throws, for the caller to count the line. */
function wordsOf(chunks: string | readonly string[], length: number, name: string): Uint8Array {
  const bytes = bytesOfWords(chunks, length);
  if (!lastWordsWhole()) throw new Error(`its ${name} is not words (hex digits and spaces)`);
  return bytes;
}

/** The next field of `f` (throws when it cannot be read as `field` is printed). */
function readField(f: FieldReader, field: Field): unknown {
  switch (field.type) {
    case 'int':
    case 'uint': {
      // A line whose number is damaged or missing is not read on with NaN in it: the caller counts it.
      const value = f.int();
      if (Number.isNaN(value)) throw new Error(`its ${field.name} is not a number`);
      return value;
    }
    case 'string':
      return f.string();
    case 'rest':
      return f.rest();
    case 'words': {
      if (!field.repeats) return wordsOf(f.escaped(), -1, field.name);
      const slots: string[] = [];
      for (let slot = f.escaped(); slot !== ''; slot = f.escaped()) slots.push(slot);
      return slots;
    }
    default: {
      const unknown: never = field.type;
      throw new Error(`field type ${unknown} has no reader`);
    }
  }
}

/** A cni_env event of `text` (NAME=value) from `line`'s process, or a problem naming the line's `tag`. */
function pushEnv(line: ProbeLine, text: string, out: AssembleResult): void {
  const eq = text.indexOf('=');
  if (eq <= 0) {
    out.problems.push(`${line.tag} of pid ${line.pid} is not NAME=value: "${text.slice(0, 40)}"`);
    return;
  }
  const { ns, pid, tid } = line;
  out.events.push({
    ns,
    pid,
    tid,
    kind: 'cni_env',
    name: text.slice(0, eq),
    value: text.slice(eq + 1),
  });
}

interface PendingCri {
  line: ProbeLine;
  method: string;
  goroutine: string;
  expected: number;
  args: Record<string, string>;
}

function criEnter(pending: PendingCri): ProbeEvent {
  const { line } = pending;
  return {
    ns: line.ns,
    pid: line.pid,
    tid: line.tid,
    kind: 'cri_enter',
    method: pending.method,
    goroutine: pending.goroutine,
    args: pending.args,
  };
}

/** A netlink request or answer: the two lines have the same fields. */
function netlinkEvent(kind: 'nl_send' | 'nl_recv'): Builder<'nl_send_w' | 'nl_recv_w'> {
  return (l, v, out) => {
    out.events.push({
      ns: l.ns,
      pid: l.pid,
      tid: l.tid,
      kind,
      fd: v.fd,
      length: v.length,
      netnsInum: v.netnsInum,
      bytes: v.bytes,
    });
  };
}

/**
 * Stateful but clock-free: a chunked event is emitted when its last chunk arrives. A chunk that arrives without
 * its predecessors (events lost) is reported as a problem; a partial event is emitted truncated when a new
 * one starts on the same thread, or at flush().
 */
export class Assembler {
  private partials = new Map<string, Partial>();
  private criArgs = new Map<number, PendingCri>();
  private readonly reader = new FieldReader();

  /** What each tag's values make: one entry a tag, so a tag declared and not handled does not compile. */
  private readonly events: { [T in ProbeTag]: Builder<T> } = {
    cni_exec: (l, v, out) => {
      out.events.push({
        ns: l.ns,
        pid: l.pid,
        tid: l.tid,
        kind: 'cni_exec',
        ppid: v.ppid,
        netnsInum: v.netnsInum,
        path: v.path,
      });
    },
    cni_envs_w: (l, v, out) => {
      // Each slot a variable's NAME=value NUL-terminated, zeros when not there.
      for (const slot of v.slots) {
        const bytes = textOfWords(slot, -1, 'utf8');
        if (!lastWordsWhole()) {
          out.problems.push(
            `${l.tag} of pid ${l.pid}: a slot that is not words: "${slot.slice(0, 40)}"`,
          );
          continue;
        }
        const end = bytes.indexOf('\0');
        if (end === 0) continue;
        const text = end < 0 ? bytes : bytes.slice(0, end);
        if (end < 0)
          out.problems.push(
            `${l.tag} of pid ${l.pid}: a slot without its NUL: "${text.slice(0, 40)}"`,
          );
        else pushEnv(l, text, out);
      }
    },
    cni_env: (l, v, out) => pushEnv(l, v.text, out),
    cni_gone: (l, v, out) => {
      out.events.push({ ns: l.ns, pid: l.pid, tid: l.tid, kind: 'cni_gone', status: v.status });
    },
    cni_out_w: (l, v, out) => {
      out.events.push({
        ns: l.ns,
        pid: l.pid,
        tid: l.tid,
        kind: 'cni_out',
        length: v.length,
        bytes: v.bytes,
      });
    },
    ns_unshare: (l, v, out) => {
      out.events.push({
        ns: l.ns,
        pid: l.pid,
        tid: l.tid,
        kind: 'ns_unshare',
        ret: v.ret,
        flags: v.flags,
        netnsInum: v.netnsInum,
      });
    },
    ns_clone: (l, v, out) => {
      out.events.push({
        ns: l.ns,
        pid: l.pid,
        tid: l.tid,
        kind: 'ns_clone',
        ret: v.ret,
        flags: v.flags,
      });
    },
    ns_mount: (l, v, out) => {
      out.events.push({
        ns: l.ns,
        pid: l.pid,
        tid: l.tid,
        kind: 'ns_mount',
        ret: v.ret,
        target: v.target,
      });
    },
    ns_umount: (l, v, out) => {
      out.events.push({
        ns: l.ns,
        pid: l.pid,
        tid: l.tid,
        kind: 'ns_umount',
        ret: v.ret,
        target: v.target,
      });
    },
    ns_setns: (l, v, out) => {
      out.events.push({
        ns: l.ns,
        pid: l.pid,
        tid: l.tid,
        kind: 'ns_setns',
        ret: v.ret,
        nstype: v.nstype,
        netnsInum: v.netnsInum,
      });
    },
    nl_socket: (l, v, out) => {
      out.events.push({ ns: l.ns, pid: l.pid, tid: l.tid, kind: 'nl_socket', fd: v.fd });
    },
    nl_send_w: netlinkEvent('nl_send'),
    nl_recv_w: netlinkEvent('nl_recv'),
    nl_extack: (l, v, out) => {
      out.events.push({ ns: l.ns, pid: l.pid, tid: l.tid, kind: 'nl_extack', message: v.message });
    },
    sb_exec_w: (l, v, out) => {
      const { bytes } = v;
      const argv = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
        .toString('latin1')
        .split('\0');
      if (argv.at(-1) === '') argv.pop();
      out.events.push({
        ns: l.ns,
        pid: l.pid,
        tid: l.tid,
        kind: 'sb_exec',
        ppid: v.ppid,
        netnsInum: v.netnsInum,
        argv,
      });
    },
    sb_init: (l, v, out) => {
      out.events.push({
        ns: l.ns,
        pid: l.pid,
        tid: l.tid,
        kind: 'sb_init',
        netnsInum: v.netnsInum,
        path: v.path,
      });
    },
    // The pipeline takes ticks before they reach an assembler.
    tick: () => {},
    cri_enter: (l, v, out) => {
      const pending = {
        line: l,
        method: v.method,
        goroutine: v.goroutine,
        expected: v.args,
        args: {},
      };
      if (!(v.args > 0)) out.events.push(criEnter(pending));
      else this.criArgs.set(l.tid, pending);
    },
    cri_arg: (l, v, out) => {
      const pending = this.criArgs.get(l.tid);
      if (!pending) {
        out.problems.push(`cri_arg of tid ${l.tid} arrived without its cri_enter`);
        return;
      }
      pending.args[v.name] = v.value;
      if (Object.keys(pending.args).length >= pending.expected) {
        this.criArgs.delete(l.tid);
        out.events.push(criEnter(pending));
      }
    },
    cri_return: (l, v, out) => {
      out.events.push({
        ns: l.ns,
        pid: l.pid,
        tid: l.tid,
        kind: 'cri_return',
        method: v.method,
        goroutine: v.goroutine,
        failed: v.failed !== 0,
        sandboxId: v.sandboxId ? v.sandboxId : null,
      });
    },
  };

  /** Each tag's plan, its builder with it. */
  private readonly plans = new Map<string, Plan>(
    (Object.keys(probeLines) as ProbeTag[]).map((tag) => [
      tag,
      planOf(tag, this.events[tag] as Builder<ProbeTag>),
    ]),
  );

  push(line: ProbeLine): AssembleResult {
    const out: AssembleResult = { events: [], problems: [] };
    this.pushInto(line, out);
    return out;
  }

  /** push() into the caller's arrays: the pipeline reuses one result for every line. */
  pushInto(line: ProbeLine, out: AssembleResult): void {
    try {
      this.handle(line, out);
    } catch (error) {
      out.problems.push(`${line.tag} of pid ${line.pid}: ${(error as Error).message}; skipped`);
    }
  }

  /** Values waiting for more lines: chunked values not yet whole, CRI entries waiting for their arguments. */
  get pending(): number {
    return this.partials.size + this.criArgs.size;
  }

  flush(): AssembleResult {
    const out: AssembleResult = { events: [], problems: [] };
    for (const partial of this.partials.values()) {
      try {
        this.complete(partial, out);
      } catch (error) {
        out.problems.push(
          `${partial.first.tag} of pid ${partial.first.pid}: ${(error as Error).message}; skipped`,
        );
      }
    }
    this.partials.clear();
    for (const pending of this.criArgs.values()) out.events.push(criEnter(pending));
    this.criArgs.clear();
    return out;
  }

  private handle(line: ProbeLine, out: AssembleResult): void {
    const plan = this.plans.get(line.tag);
    if (!plan) {
      out.problems.push(`unknown probe line "${line.tag}"`);
      return;
    }
    const f = this.reader.reset(line);
    const { fields, spec, values } = plan;
    if (!spec.chunks) {
      for (const field of fields) values[field.name] = readField(f, field);
      plan.build(line, values as Values<ProbeTag>, out);
      return;
    }
    for (let i = 0; i < plan.head; i++) {
      const field = fields[i] as Field;
      values[field.name] = readField(f, field);
    }
    this.chunked(plan, spec.chunks, line, f.restEscaped(), out);
  }

  /** One chunk (`text`) of a string or buffer; `plan.values` holds the line's fields before it. */
  private chunked(
    plan: Plan,
    chunks: NonNullable<ProbeLineSpec['chunks']>,
    line: ProbeLine,
    text: string,
    out: AssembleResult,
  ): void {
    const { values } = plan;
    const chunk = values[chunks.number] as number;
    let expected: number;
    if (chunks.join === 'buffer') {
      const length = values[chunks.length ?? ''] as number;
      expected = Math.max(1, Math.min(chunks.max, Math.ceil(length / bufferChunk)));
    } else {
      // A chunk shorter than the string width ends the value; only the values declared `continued` go on.
      const long = chunk > 0 || chunks.continued?.test(text) === true;
      expected = !long || unescapeJson(text).length < stringChunk ? chunk + 1 : chunks.max;
    }
    // Most values are whole in one line and nothing waits: then no key is made.
    const key = this.partials.size === 0 && chunk === 0 ? '' : partialKey(plan, line, values);
    const partial = key === '' ? undefined : this.partials.get(key);
    if (chunk === 0) {
      if (partial) this.complete(partial, out);
      if (expected <= 1) {
        if (partial) this.partials.delete(key);
        this.completeWith(plan, line, values, text, out);
      } else
        this.partials.set(key || partialKey(plan, line, values), {
          plan,
          first: line,
          values: { ...values },
          chunks: [text],
          expected,
        });
      return;
    }
    // A string's chunk after the one that ended it (read past its NUL) is not the value's.
    if (!partial && chunks.join === 'string') return;
    if (!partial || partial.chunks.length !== chunk) {
      out.problems.push(
        `${line.tag} chunk ${chunk} of pid ${line.pid} arrived without the chunks before it`,
      );
      return;
    }
    partial.chunks.push(text);
    if (partial.chunks.length >= Math.min(partial.expected, expected)) {
      this.partials.delete(key);
      this.complete(partial, out);
    }
  }

  private complete(partial: Partial, out: AssembleResult): void {
    this.completeWith(partial.plan, partial.first, partial.values, partial.chunks, out);
  }

  /** A value from its first line's fields and its chunk texts (one text: whole in one line, nothing kept). */
  private completeWith(
    plan: Plan,
    first: ProbeLine,
    values: Record<string, unknown>,
    chunks: string | readonly string[],
    out: AssembleResult,
  ): void {
    const spec = plan.spec.chunks;
    const last = plan.fields[plan.head] as Field;
    values[last.name] =
      spec?.join === 'buffer'
        ? wordsOf(chunks, values[spec.length ?? ''] as number, last.name)
        : joinStringChunks(chunks);
    plan.build(first, values as Values<ProbeTag>, out);
  }
}
