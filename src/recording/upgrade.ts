// Brings recordings made by older podwire versions to today's format, so that nothing else reads old formats.
import { type ProbeTag, probeLines, stringChunk, wordsText } from '../decode/probe-lines.js';
import { bytesFromBpftraceBuf } from './bpftrace-buffers.js';
import { type RecordedLine, type RecordingHeader, recordingVersion } from './format.js';

/**
 * Version 1's buffers, printed by bpftrace's %rx (netlink) or %r (stdout, argv) under the tag today's words line
 * has without its `_w`; the fields before the buffer are the same.
 */
const bufferTags: Record<string, { tag: ProbeTag; format: 'r' | 'rx' }> = {
  nl_send: { tag: 'nl_send_w', format: 'rx' },
  nl_recv: { tag: 'nl_recv_w', format: 'rx' },
  cni_out: { tag: 'cni_out_w', format: 'r' },
  sb_exec: { tag: 'sb_exec_w', format: 'r' },
};

/** The lines version 1 printed that today's do not, or print otherwise: a quick look before a parse. */
const olderLine =
  /^\{"type": ?"printf", ?"data": ?"(nl_send|nl_recv|cni_out|sb_exec|cni_exit|cni_env)\\t/;

/** A function that upgrades one line of `header`'s recording; it may keep state across the lines, in order. */
export function upgrader(header: RecordingHeader): (line: RecordedLine) => RecordedLine[] {
  if (header.version >= recordingVersion) return (line) => [line];
  return versionOne();
}

/**
 * Version 1 to today's: buffers as words lines (a %r/%rx chunk becomes the same bytes in words); no cni_exit (the
 * code it said is in cni_gone's wait status); no cni_env chunk after the one that ended its value (cni.bt
 * printed every chunk of CNI_ARGS, past its end too).
 */
function versionOne(): (line: RecordedLine) => RecordedLine[] {
  /** Per source, thread and variable: whether a chunked cni_env value has ended. */
  const envEnded = new Map<string, boolean>();
  const envChunks = probeLines.cni_env.chunks;
  return (line) => {
    if (!('raw' in line) || !olderLine.test(line.raw)) return [line];
    let parsed: { data?: unknown };
    try {
      parsed = JSON.parse(line.raw) as { data?: unknown };
    } catch {
      // A damaged line: passed on as it is, for the pipeline to count as unreadable.
      return [line];
    }
    if (typeof parsed?.data !== 'string') return [line];
    const data = parsed.data.endsWith('\n') ? parsed.data.slice(0, -1) : parsed.data;
    const fields = data.split('\t');
    const [tag = '', ns, pid, tid] = fields;
    if (tag === 'cni_exit') return [];
    if (tag === 'cni_env') {
      const [index, chunk, ...text] = fields.slice(4);
      const value = text.join('\t');
      const key = `${line.src}\0${tid}\0${index}`;
      const short = value.length < stringChunk;
      if (chunk === '0') {
        if (envChunks.continued.test(value)) envEnded.set(key, short);
        else envEnded.delete(key);
        return [line];
      }
      const ended = envEnded.get(key);
      if (Number(chunk) >= envChunks.max - 1) envEnded.delete(key);
      else if (ended === false) envEnded.set(key, short);
      return ended === true ? [] : [line];
    }
    const buffer = bufferTags[tag];
    if (!buffer) return [line];
    const head = probeLines[buffer.tag].fields.length - 1;
    const before = fields.slice(4, 4 + head);
    const bytes = bytesFromBpftraceBuf(fields.slice(4 + head).join('\t'), buffer.format);
    const upgraded = [buffer.tag, ns, pid, tid, ...before, wordsText(bytes)].join('\t');
    const prefix = line.raw.slice(0, line.raw.indexOf('"data"'));
    const space = line.raw.startsWith('{"type": ') ? ' ' : '';
    return [{ src: line.src, raw: `${prefix}"data":${space}${JSON.stringify(`${upgraded}\n`)}}` }];
  };
}
