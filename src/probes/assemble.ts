// Turns probe lines into typed events, joining the chunks that bpftrace's string limit makes us print separately.
import type { ProbeEvent } from '../events.js';
import { bytesFromBpftraceBuf, type ProbeLine } from './lines.js';

/** Bytes of a string chunk with BPFTRACE_STRLEN=200 (199 characters and the NUL). */
export const stringChunk = 199;
/** Bytes of a buf() chunk. */
export const bufferChunk = 192;

interface Partial {
  first: ProbeLine;
  chunks: string[];
  expected: number;
}

const int = (text: string | undefined): number => {
  const value = Number(text);
  return Number.isFinite(value) ? value : Number.NaN;
};

/** How many buf() chunks a probe prints for `length` bytes, at most `max`. */
function bufferChunks(length: number, max: number): number {
  return Math.max(1, Math.min(max, Math.ceil(length / bufferChunk)));
}

/** Joins string chunks: the next chunk continues only where the previous one filled its whole width. */
function joinStringChunks(chunks: string[]): string {
  let text = '';
  for (const chunk of chunks) {
    text += chunk;
    if (chunk.length < stringChunk) break;
  }
  return text;
}

/** `format`: how the probe printed the buffer (%r for text such as JSON and argv, %rx for binary netlink). */
function joinBufferChunks(chunks: string[], length: number, format: 'r' | 'rx'): Uint8Array {
  // Most buffers fit one chunk: no list, no copy.
  if (chunks.length === 1) {
    const bytes = bytesFromBpftraceBuf(chunks[0] ?? '', format);
    return bytes.length > length ? bytes.subarray(0, length) : bytes;
  }
  const parts = chunks.map((chunk) => bytesFromBpftraceBuf(chunk, format));
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes.subarray(0, Math.min(total, length));
}

export type AssembleResult = { events: ProbeEvent[]; problems: string[] };

/**
 * Stateful but clock-free: a chunked event is emitted when its last chunk arrives. A chunk that arrives without
 * its predecessors (events lost) is reported as a problem; a partial event is emitted truncated when a new
 * one starts on the same thread, or at flush().
 */
export class Assembler {
  private partials = new Map<string, Partial>();
  private criArgs = new Map<
    number,
    { line: ProbeLine; expected: number; args: Record<string, string> }
  >();

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
      out.problems.push(`${line.tag}: ${(error as Error).message}`);
    }
  }

  flush(): AssembleResult {
    const out: AssembleResult = { events: [], problems: [] };
    for (const partial of this.partials.values()) this.complete(partial, out);
    this.partials.clear();
    for (const pending of this.criArgs.values())
      out.events.push(this.criEnter(pending.line, pending.args));
    this.criArgs.clear();
    return out;
  }

  private chunked(
    line: ProbeLine,
    key: string,
    chunk: number,
    text: string,
    expected: number,
    out: AssembleResult,
  ): void {
    const partial = this.partials.get(key);
    if (chunk === 0) {
      if (partial) this.complete(partial, out);
      const fresh = { first: line, chunks: [text], expected };
      if (expected <= 1) {
        this.partials.delete(key);
        this.complete(fresh, out);
      } else this.partials.set(key, fresh);
      return;
    }
    if (!partial || partial.chunks.length !== chunk) {
      out.problems.push(
        `${line.tag} chunk ${chunk} of pid ${line.pid} arrived without the chunks before it`,
      );
      return;
    }
    partial.chunks.push(text);
    if (partial.chunks.length >= partial.expected) {
      this.partials.delete(key);
      this.complete(partial, out);
    }
  }

  private handle(line: ProbeLine, out: AssembleResult): void {
    const f = line.fields;
    switch (line.tag) {
      case 'cni_exec':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'cni_exec',
          ppid: int(f[0]),
          netnsInum: int(f[1]),
          path: f[2] ?? '',
        });
        return;
      case 'cni_env': {
        // cni.bt prints the long ones (CNI_ARGS, TRACESTATE) in three chunks, the others in one.
        const text = f.slice(2).join('\t');
        const chunks = int(f[1]) === 0 && !/^(CNI_ARGS|TRACESTATE)=/.test(text) ? 1 : 3;
        this.chunked(line, `env:${line.tid}:${f[0]}`, int(f[1]), text, chunks, out);
        return;
      }
      case 'cni_exit':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'cni_exit',
          code: int(f[0]),
        });
        return;
      case 'cni_gone':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'cni_gone',
          status: int(f[0]),
        });
        return;
      case 'cni_out':
        this.chunked(
          line,
          `out:${line.tid}`,
          int(f[1]),
          f.slice(2).join('\t'),
          bufferChunks(int(f[0]), 4),
          out,
        );
        return;
      case 'nl_send':
      case 'nl_recv':
        // Requests come in up to two chunks, answers in one (plugin-io.bt, plugin-io-syscalls.bt).
        this.chunked(
          line,
          `${line.tag}:${line.tid}`,
          int(f[3]),
          f.slice(4).join('\t'),
          bufferChunks(int(f[1]), line.tag === 'nl_send' ? 2 : 1),
          out,
        );
        return;
      case 'sb_exec':
        this.chunked(
          line,
          `sb:${line.tid}`,
          int(f[3]),
          f.slice(4).join('\t'),
          bufferChunks(int(f[2]), 3),
          out,
        );
        return;
      case 'ns_unshare':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'ns_unshare',
          ret: int(f[0]),
          flags: int(f[1]),
          netnsInum: int(f[2]),
        });
        return;
      case 'ns_clone':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'ns_clone',
          ret: int(f[0]),
          flags: int(f[1]),
        });
        return;
      case 'ns_mount':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'ns_mount',
          ret: int(f[0]),
          target: f[1] ?? '',
        });
        return;
      case 'ns_umount':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'ns_umount',
          ret: int(f[0]),
          target: f[1] ?? '',
        });
        return;
      case 'ns_setns':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'ns_setns',
          ret: int(f[0]),
          nstype: int(f[1]),
          netnsInum: int(f[2]),
        });
        return;
      case 'nl_socket':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'nl_socket',
          fd: int(f[0]),
        });
        return;
      case 'nl_extack':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'nl_extack',
          message: f.join('\t'),
        });
        return;
      case 'sb_init':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'sb_init',
          netnsInum: int(f[0]),
          path: f[1] ?? '',
        });
        return;
      case 'cri_enter': {
        const expected = int(f[2]);
        if (!(expected > 0)) {
          out.events.push(this.criEnter(line, {}));
          return;
        }
        this.criArgs.set(line.tid, { line, expected, args: {} });
        return;
      }
      case 'cri_arg': {
        const pending = this.criArgs.get(line.tid);
        if (!pending) {
          out.problems.push(`cri_arg of tid ${line.tid} arrived without its cri_enter`);
          return;
        }
        pending.args[f[1] ?? ''] = f.slice(2).join('\t');
        if (Object.keys(pending.args).length >= pending.expected) {
          this.criArgs.delete(line.tid);
          out.events.push(this.criEnter(pending.line, pending.args));
        }
        return;
      }
      case 'cri_return':
        out.events.push({
          ns: line.ns,
          pid: line.pid,
          tid: line.tid,
          kind: 'cri_return',
          method: f[0] ?? '',
          goroutine: f[1] ?? '',
          failed: f[2] !== '0',
          sandboxId: f[3] ? f[3] : null,
        });
        return;
      default:
        out.problems.push(`unknown probe line "${line.tag}"`);
    }
  }

  private criEnter(line: ProbeLine, args: Record<string, string>): ProbeEvent {
    return {
      ns: line.ns,
      pid: line.pid,
      tid: line.tid,
      kind: 'cri_enter',
      method: line.fields[0] ?? '',
      goroutine: line.fields[1] ?? '',
      args,
    };
  }

  private complete(partial: Partial, out: AssembleResult): void {
    const { first, chunks } = partial;
    const f = first.fields;
    switch (first.tag) {
      case 'cni_env': {
        const text = joinStringChunks(chunks);
        const eq = text.indexOf('=');
        if (eq <= 0) {
          out.problems.push(
            `cni_env of pid ${first.pid} is not NAME=value: "${text.slice(0, 40)}"`,
          );
          return;
        }
        out.events.push({
          ns: first.ns,
          pid: first.pid,
          tid: first.tid,
          kind: 'cni_env',
          name: text.slice(0, eq),
          value: text.slice(eq + 1),
        });
        return;
      }
      case 'cni_out': {
        const length = int(f[0]);
        out.events.push({
          ns: first.ns,
          pid: first.pid,
          tid: first.tid,
          kind: 'cni_out',
          length,
          bytes: joinBufferChunks(chunks, length, 'r'),
        });
        return;
      }
      case 'nl_send':
      case 'nl_recv': {
        const length = int(f[1]);
        out.events.push({
          ns: first.ns,
          pid: first.pid,
          tid: first.tid,
          kind: first.tag,
          fd: int(f[0]),
          length,
          netnsInum: int(f[2]),
          bytes: joinBufferChunks(chunks, length, 'rx'),
        });
        return;
      }
      case 'sb_exec': {
        const length = int(f[2]);
        const bytes = joinBufferChunks(chunks, length, 'r');
        const argv = Buffer.from(bytes).toString('latin1').split('\0');
        if (argv.at(-1) === '') argv.pop();
        out.events.push({
          ns: first.ns,
          pid: first.pid,
          tid: first.tid,
          kind: 'sb_exec',
          ppid: int(f[0]),
          netnsInum: int(f[1]),
          argv,
        });
        return;
      }
    }
  }
}
