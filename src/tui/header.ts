// The header's facts about the tracer itself: given by the caller, or read from the status lines it emits.
import { basename } from 'node:path';
import type { HandshakeRecord } from '../correlate/record.js';
import type { StatusEvent } from '../events.js';
import { type Glyphs, type Run, unicodeGlyphs } from './columns.js';

export interface HeaderInfo {
  node: string;
  source: string;
  runtime: string | null;
  probeMode: string | null;
  probesAttached: number | null;
  eventsPerSecond: number | null;
  eventsLost: number;
  probeRestarts: number;
  exportState: string | null;
}

/** What the replay player reports for the header; null outside replay mode. */
export interface ReplayState {
  speed: number;
  paused: boolean;
  played: number;
  total: number;
  instant: boolean;
}

const emptyHeader: HeaderInfo = {
  node: '',
  source: '',
  runtime: null,
  probeMode: null,
  probesAttached: null,
  eventsPerSecond: null,
  eventsLost: 0,
  probeRestarts: 0,
  exportState: null,
};

/** Statuses that say something went wrong or changed: the last one is shown until the next. */
const noticeStates = new Set<StatusEvent['state']>([
  'probe-failed',
  'probe-restarted',
  'events-lost',
  'events-late',
  'runtime-gone',
  'runtime-unsupported',
  'input-problem',
  'plugins-changed',
  'export-failed',
  'export-resumed',
  'stopped',
]);

/**
 * The header's state. Runtime and probe mode come from statuses only when the caller did not say them
 * (the caller may know better, e.g. a replay's recording header); counters and export state always follow
 * the statuses, since they change while tracing.
 */
export class HeaderState {
  info: HeaderInfo;
  /** The last status worth a look (a probe that failed, events lost), shown under the header's facts. */
  notice: { state: StatusEvent['state']; message: string } | null = null;
  private given = new Set<keyof HeaderInfo>();
  private givenExport: string | null = null;
  private criUprobes = false;
  private pluginMode: string | null = null;
  private droppedSpans = 0;

  constructor(initial: Partial<HeaderInfo> = {}) {
    this.info = { ...emptyHeader };
    this.set(initial);
  }

  set(update: Partial<HeaderInfo>): void {
    for (const [key, value] of Object.entries(update) as [keyof HeaderInfo, unknown][]) {
      if (value === undefined) continue;
      // null is "not known": statuses may still tell.
      if (value !== null) this.given.add(key);
      (this.info as unknown as Record<string, unknown>)[key] = value;
      if (key === 'exportState') this.givenExport = value as string | null;
    }
  }

  /** Reads one status line into the header. */
  status(event: StatusEvent): void {
    const detail = event as Record<string, unknown>;
    switch (event.state) {
      case 'ready':
        if (Array.isArray(detail.programs)) this.info.probesAttached = detail.programs.length;
        break;
      case 'probe-restarted':
        this.info.probeRestarts++;
        break;
      case 'events-lost':
        if (typeof detail.lostTotal === 'number') this.info.eventsLost = detail.lostTotal;
        else if (typeof detail.lost === 'number') this.info.eventsLost += detail.lost;
        break;
      case 'runtime-found': {
        this.criUprobes = true;
        // "containerd runs again" has no version: the runtime already shown stays.
        if (!this.given.has('runtime') && 'version' in detail) {
          const name = typeof detail.binary === 'string' ? basename(detail.binary) : 'runtime';
          const version = typeof detail.version === 'string' ? ` ${detail.version}` : '';
          this.info.runtime = `${name}${version}`;
        }
        this.deriveProbeMode();
        break;
      }
      case 'plugin-probes':
        if (typeof detail.mode === 'string') this.pluginMode = detail.mode;
        this.deriveProbeMode();
        break;
      case 'export-failed': {
        if (typeof detail.droppedTotal === 'number') this.droppedSpans = detail.droppedTotal;
        else if (detail.dropped && typeof detail.dropped === 'object')
          for (const count of Object.values(detail.dropped))
            if (typeof count === 'number') this.droppedSpans += count;
        const exporter =
          typeof detail.exporter === 'string' ? detail.exporter.toUpperCase() : 'export';
        this.info.exportState =
          this.droppedSpans > 0
            ? `${exporter} failing: ${this.droppedSpans} dropped`
            : `${exporter} failing`;
        break;
      }
      case 'export-resumed': {
        const exporter =
          typeof detail.exporter === 'string' ? detail.exporter.toUpperCase() : 'export';
        this.info.exportState = this.givenExport ?? `${exporter} ok`;
        break;
      }
      // What these say is in the NDJSON stream; the header has no place for it.
      case 'probe-failed':
      case 'events-late':
      case 'runtime-gone':
      case 'runtime-unsupported':
      case 'input-problem':
      case 'plugins-changed':
      case 'viewer-dropped':
      case 'stopped':
        break;
      default:
        // A state added to StatusEvent fails to compile here until the header decides whether to show it.
        event.state satisfies never;
    }
    if (noticeStates.has(event.state))
      this.notice = { state: event.state, message: String(event.message ?? '') };
  }

  /** A record says which runtime made it: enough for the header when no status or caller said more. */
  record(record: HandshakeRecord): void {
    if (this.info.runtime === null && !this.given.has('runtime') && record.runtime)
      this.info.runtime = record.runtime;
  }

  private deriveProbeMode(): void {
    if (this.given.has('probeMode')) return;
    const kernel = this.criUprobes ? 'tracepoints + uprobes' : 'tracepoints';
    this.info.probeMode = this.pluginMode ? `${kernel}; plugins: ${this.pluginMode}` : kernel;
  }
}

export function speedText(speed: number, glyphs: Glyphs = unicodeGlyphs): string {
  return speed >= 1 ? `${speed}${glyphs.times}` : `1/${Math.round(1 / speed)}${glyphs.times}`;
}

/** The header's two lines as styled runs: the tracer's setup, then its health and the replay's state. */
export function headerLines(
  header: HeaderState,
  replay: ReplayState | null,
  counts: { listed: number; stored: number },
  glyphs: Glyphs = unicodeGlyphs,
): Run[][] {
  const { info } = header;
  const { dash } = glyphs;
  const first: Run[] = [
    { text: 'podwire ', style: 'bold' },
    { text: 'node ' },
    { text: info.node || dash, style: 'bold' },
    { text: `  runtime ${info.runtime ?? dash}` },
    { text: `  probes ${info.probesAttached ?? dash}` },
    { text: `  mode ${info.probeMode ?? dash}` },
    // Last: a replay's file name can be long, and the facts above matter more on a narrow terminal.
    { text: `  ${info.source || dash}` },
  ];
  const second: Run[] = [
    {
      text: `events/s ${info.eventsPerSecond === null ? dash : Math.round(info.eventsPerSecond)}`,
    },
    { text: '  lost ' },
    { text: String(info.eventsLost), style: info.eventsLost > 0 ? 'red-fg' : 'green-fg' },
    { text: '  restarts ' },
    { text: String(info.probeRestarts), style: info.probeRestarts > 0 ? 'yellow-fg' : 'green-fg' },
  ];
  if (info.exportState !== null)
    second.push(
      { text: '  export ' },
      {
        text: info.exportState,
        style: /fail|drop/i.test(info.exportState) ? 'red-fg' : 'green-fg',
      },
    );
  if (replay) {
    second.push({ text: '  replay ' });
    if (replay.instant) second.push({ text: `all ${replay.total} loaded`, style: 'cyan-fg' });
    else
      second.push({
        text: `${speedText(replay.speed, glyphs)} ${replay.paused ? 'paused' : replay.played >= replay.total ? 'done' : 'playing'} ${replay.played}/${replay.total}`,
        style: replay.paused ? 'yellow-fg' : 'cyan-fg',
      });
  }
  second.push({ text: `  listed ${counts.listed}/${counts.stored}` });
  if (header.notice)
    second.push({
      text: `  ${header.notice.message}`,
      style: header.notice.state === 'export-resumed' ? 'green-fg' : 'yellow-fg',
    });
  return [first, second];
}
