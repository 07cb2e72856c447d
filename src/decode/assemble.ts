// Turns probe lines into typed events, joining the chunks that bpftrace's string limit makes us print separately.
import type { ProbeEvent } from '../events.js';
import {
  type BufferFormat,
  bytesOfEscapedChunks,
  FieldReader,
  type ProbeLine,
  unescapeJson,
} from './lines.js';

/** Bytes of a string chunk with BPFTRACE_STRLEN=200 (199 characters and the NUL). */
export const stringChunk = 199;
/** Bytes of a buf() chunk. */
export const bufferChunk = 192;

interface Partial {
  first: ProbeLine;
  /** The fields of the first line that come before its chunk text, read once. */
  head: number[];
  /** Chunk texts as bpftrace's JSON wrote them (FieldReader.restEscaped). */
  chunks: string[];
  expected: number;
}

/** How a line printed its buffer: as words when its tag says so (`nl_send_w`), else as older recordings did. */
function bufferFormat(tag: string, before: 'r' | 'rx'): BufferFormat {
  return tag.endsWith('_w') ? 'words' : before;
}

/** How many buf() chunks a probe prints for `length` bytes, at most `max`. */
function bufferChunks(length: number, max: number): number {
  return Math.max(1, Math.min(max, Math.ceil(length / bufferChunk)));
}

/** Joins string chunks: the next chunk continues only where the previous one filled its whole width. */
function joinStringChunks(chunks: string[]): string {
  let text = '';
  for (const escaped of chunks) {
    const chunk = unescapeJson(escaped);
    text += chunk;
    if (chunk.length < stringChunk) break;
  }
  return text;
}

export type AssembleResult = { events: ProbeEvent[]; problems: string[] };

/** A cni_env event of `text` (NAME=value) from `line`'s process, or a problem naming the line's `tag`. */
function pushEnv(line: ProbeLine, text: string, tag: string, out: AssembleResult): void {
  const eq = text.indexOf('=');
  if (eq <= 0) {
    out.problems.push(`${tag} of pid ${line.pid} is not NAME=value: "${text.slice(0, 40)}"`);
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

/** Whether a cni_env value is one cni.bt prints in three chunks (the others fit one). */
const longEnv = /^(CNI_ARGS|TRACESTATE)=/;

/**
 * Stateful but clock-free: a chunked event is emitted when its last chunk arrives. A chunk that arrives without
 * its predecessors (events lost) is reported as a problem; a partial event is emitted truncated when a new
 * one starts on the same thread, or at flush().
 */
export class Assembler {
  private partials = new Map<string, Partial>();
  private criArgs = new Map<
    number,
    {
      line: ProbeLine;
      method: string;
      goroutine: string;
      expected: number;
      args: Record<string, string>;
    }
  >();
  private readonly reader = new FieldReader();

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
    for (const pending of this.criArgs.values()) out.events.push(this.criEnter(pending));
    this.criArgs.clear();
    return out;
  }

  /** A chunk of a string or buffer; `head` holds the fields before the chunk number, `text` the chunk. */
  private chunked(
    line: ProbeLine,
    key: string,
    head: number[],
    chunk: number,
    text: string,
    expected: number,
    out: AssembleResult,
  ): void {
    const partial = this.partials.get(key);
    if (chunk === 0) {
      if (partial) this.complete(partial, out);
      const fresh = { first: line, head, chunks: [text], expected };
      if (expected <= 1) {
        if (partial) this.partials.delete(key);
        this.complete(fresh, out);
      } else this.partials.set(key, fresh);
      return;
    }
    // A value's end ends it: the continuation chunks of an older recording that follow are not the value's.
    if (!partial && line.tag === 'cni_env') return;
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

  private handle(line: ProbeLine, out: AssembleResult): void {
    const f = this.reader.reset(line);
    const { ns, pid, tid } = line;
    switch (line.tag) {
      case 'cni_exec':
        out.events.push({
          ns,
          pid,
          tid,
          kind: 'cni_exec',
          ppid: f.int(),
          netnsInum: f.int(),
          path: f.string(),
        });
        return;
      case 'cni_env': {
        // cni.bt prints the long ones (CNI_ARGS, TRACESTATE) in up to three chunks, the others in one. A chunk
        // shorter than the string width ends the value: cni.bt prints no more where the string cannot reach
        // (older recordings have every chunk; what follows the end is dropped).
        const index = f.int();
        const chunk = f.int();
        const text = f.restEscaped();
        const long = chunk > 0 || longEnv.test(text);
        const chunks = !long || unescapeJson(text).length < stringChunk ? chunk + 1 : 3;
        this.chunked(line, `env:${tid}:${index}`, [], chunk, text, chunks, out);
        return;
      }
      case 'cni_envs_w':
        // cni.bt's slots, one field each: a variable's NAME=value NUL-terminated in words, zeros when not there.
        for (let slot = f.string(); slot !== ''; slot = f.string()) {
          const bytes = bytesOfEscapedChunks([slot], 'words', -1);
          const end = bytes.indexOf(0);
          if (end === 0) continue;
          const text = Buffer.from(
            bytes.buffer,
            bytes.byteOffset,
            end < 0 ? bytes.length : end,
          ).toString();
          if (end < 0)
            out.problems.push(
              `cni_envs_w of pid ${pid}: a slot without its NUL: "${text.slice(0, 40)}"`,
            );
          else pushEnv(line, text, 'cni_envs_w', out);
        }
        return;
      case 'cni_exit':
        out.events.push({ ns, pid, tid, kind: 'cni_exit', code: f.int() });
        return;
      case 'cni_gone':
        out.events.push({ ns, pid, tid, kind: 'cni_gone', status: f.int() });
        return;
      case 'cni_out':
      case 'cni_out_w': {
        const length = f.int();
        const chunk = f.int();
        const text = f.restEscaped();
        this.chunked(line, `out:${tid}`, [length], chunk, text, bufferChunks(length, 4), out);
        return;
      }
      case 'nl_send':
      case 'nl_send_w':
      case 'nl_recv':
      case 'nl_recv_w': {
        // Requests come in up to two chunks, answers in one (plugin-io.bt, plugin-io-syscalls.bt).
        const fd = f.int();
        const length = f.int();
        const netnsInum = f.int();
        const chunk = f.int();
        const text = f.restEscaped();
        const send = line.tag.startsWith('nl_send');
        const chunks = bufferChunks(length, send ? 2 : 1);
        const key = send ? `nl_send:${tid}` : `nl_recv:${tid}`;
        this.chunked(line, key, [fd, length, netnsInum], chunk, text, chunks, out);
        return;
      }
      case 'sb_exec':
      case 'sb_exec_w': {
        const ppid = f.int();
        const netnsInum = f.int();
        const length = f.int();
        const chunk = f.int();
        const text = f.restEscaped();
        this.chunked(
          line,
          `sb:${tid}`,
          [ppid, netnsInum, length],
          chunk,
          text,
          bufferChunks(length, 3),
          out,
        );
        return;
      }
      case 'ns_unshare':
        out.events.push({
          ns,
          pid,
          tid,
          kind: 'ns_unshare',
          ret: f.int(),
          flags: f.int(),
          netnsInum: f.int(),
        });
        return;
      case 'ns_clone':
        out.events.push({ ns, pid, tid, kind: 'ns_clone', ret: f.int(), flags: f.int() });
        return;
      case 'ns_mount':
        out.events.push({ ns, pid, tid, kind: 'ns_mount', ret: f.int(), target: f.string() });
        return;
      case 'ns_umount':
        out.events.push({ ns, pid, tid, kind: 'ns_umount', ret: f.int(), target: f.string() });
        return;
      case 'ns_setns':
        out.events.push({
          ns,
          pid,
          tid,
          kind: 'ns_setns',
          ret: f.int(),
          nstype: f.int(),
          netnsInum: f.int(),
        });
        return;
      case 'nl_socket':
        out.events.push({ ns, pid, tid, kind: 'nl_socket', fd: f.int() });
        return;
      case 'nl_extack':
        out.events.push({ ns, pid, tid, kind: 'nl_extack', message: f.rest() });
        return;
      case 'sb_init':
        out.events.push({
          ns,
          pid,
          tid,
          kind: 'sb_init',
          netnsInum: f.int(),
          path: f.string(),
        });
        return;
      case 'cri_enter': {
        const method = f.string();
        const goroutine = f.string();
        const expected = f.int();
        const pending = { line, method, goroutine, expected, args: {} };
        if (!(expected > 0)) out.events.push(this.criEnter(pending));
        else this.criArgs.set(tid, pending);
        return;
      }
      case 'cri_arg': {
        const pending = this.criArgs.get(tid);
        if (!pending) {
          out.problems.push(`cri_arg of tid ${tid} arrived without its cri_enter`);
          return;
        }
        f.string(); // the goroutine, as in its cri_enter
        const name = f.string();
        pending.args[name] = f.rest();
        if (Object.keys(pending.args).length >= pending.expected) {
          this.criArgs.delete(tid);
          out.events.push(this.criEnter(pending));
        }
        return;
      }
      case 'cri_return': {
        const method = f.string();
        const goroutine = f.string();
        const failed = f.string() !== '0';
        const sandboxId = f.string();
        out.events.push({
          ns,
          pid,
          tid,
          kind: 'cri_return',
          method,
          goroutine,
          failed,
          sandboxId: sandboxId ? sandboxId : null,
        });
        return;
      }
      default:
        out.problems.push(`unknown probe line "${line.tag}"`);
    }
  }

  private criEnter(pending: {
    line: ProbeLine;
    method: string;
    goroutine: string;
    args: Record<string, string>;
  }): ProbeEvent {
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

  private complete(partial: Partial, out: AssembleResult): void {
    const { first, head, chunks } = partial;
    const { ns, pid, tid } = first;
    switch (first.tag) {
      case 'cni_env':
        pushEnv(first, joinStringChunks(chunks), 'cni_env', out);
        return;
      case 'cni_out':
      case 'cni_out_w': {
        const length = head[0] ?? Number.NaN;
        out.events.push({
          ns,
          pid,
          tid,
          kind: 'cni_out',
          length,
          bytes: bytesOfEscapedChunks(chunks, bufferFormat(first.tag, 'r'), length),
        });
        return;
      }
      case 'nl_send':
      case 'nl_send_w':
      case 'nl_recv':
      case 'nl_recv_w': {
        const length = head[1] ?? Number.NaN;
        out.events.push({
          ns,
          pid,
          tid,
          kind: first.tag.startsWith('nl_send') ? 'nl_send' : 'nl_recv',
          fd: head[0] ?? Number.NaN,
          length,
          netnsInum: head[2] ?? Number.NaN,
          bytes: bytesOfEscapedChunks(chunks, bufferFormat(first.tag, 'rx'), length),
        });
        return;
      }
      case 'sb_exec':
      case 'sb_exec_w': {
        const length = head[2] ?? Number.NaN;
        const bytes = bytesOfEscapedChunks(chunks, bufferFormat(first.tag, 'r'), length);
        const argv = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
          .toString('latin1')
          .split('\0');
        if (argv.at(-1) === '') argv.pop();
        out.events.push({
          ns,
          pid,
          tid,
          kind: 'sb_exec',
          ppid: head[0] ?? Number.NaN,
          netnsInum: head[1] ?? Number.NaN,
          argv,
        });
        return;
      }
    }
  }
}
