// The blessed screen: header, record list, waterfall, details, keys — drawing what model, waterfall and details say.
import blessed from 'blessed';
import type { PhaseRecord } from '../correlate/record.js';
import {
  asciiGlyphs,
  escapeTags,
  fitted,
  type Glyphs,
  msText,
  printable,
  type Run,
  runsWidth,
  tagged,
  unicodeGlyphs,
} from './columns.js';
import { phaseDetails, recordDetails } from './details.js';
import { type HeaderState, headerLines, type ReplayState } from './header.js';
import { filterLabel, type Listed, listHeading, listRow, podName, type Timeline } from './model.js';
import { waterfallLines } from './waterfall.js';

type Pane = 'list' | 'waterfall' | 'details';
const panes: Pane[] = ['list', 'waterfall', 'details'];

interface Rect {
  top: number;
  left: number;
  width: number;
  height: number;
}

/**
 * Where the panes go on a `cols` × `rows` terminal. Wide terminals put the list left and the waterfall with
 * its details right; narrower ones (80 columns) stack them, the waterfall getting what the others leave.
 */
export function paneLayout(
  cols: number,
  rows: number,
  focus: Pane = 'list',
): { header: Rect; list: Rect; waterfall: Rect; details: Rect; footer: Rect } {
  const header = { top: 0, left: 0, width: cols, height: 2 };
  const footer = { top: Math.max(2, rows - 1), left: 0, width: cols, height: 1 };
  const bodyTop = 2;
  const body = Math.max(3, rows - 3);
  if (cols >= 140) {
    const listWidth = Math.floor(cols * 0.5);
    const waterfallHeight = Math.max(3, Math.round(body * (focus === 'details' ? 0.4 : 0.62)));
    return {
      header,
      footer,
      list: { top: bodyTop, left: 0, width: listWidth, height: body },
      waterfall: {
        top: bodyTop,
        left: listWidth,
        width: cols - listWidth,
        height: waterfallHeight,
      },
      details: {
        top: bodyTop + waterfallHeight,
        left: listWidth,
        width: cols - listWidth,
        height: Math.max(3, body - waterfallHeight),
      },
    };
  }
  // The focused details pane takes room from the waterfall: attributes and JSON results are long. Otherwise
  // the waterfall gets at least a handshake's steps (about ten rows, and the legend) before the list and the
  // details get more than their least: three pods, and one line.
  const focused = focus === 'details';
  let list = Math.max(5, Math.round(body * (focused ? 0.25 : 0.3)));
  let details = Math.max(3, Math.round(body * (focused ? 0.45 : 0.2)));
  const wanted = 13;
  if (!focused && body - list - details < wanted) {
    details = Math.max(3, body - list - wanted);
    list = Math.max(5, body - details - wanted);
  }
  const waterfall = Math.max(3, body - list - details);
  return {
    header,
    footer,
    list: { top: bodyTop, left: 0, width: cols, height: list },
    waterfall: { top: bodyTop + list, left: 0, width: cols, height: waterfall },
    details: { top: bodyTop + list + waterfall, left: 0, width: cols, height: details },
  };
}

const helpText = [
  'podwire timeline: keys',
  '',
  '  j / k, arrows  move in the focused pane (PgUp/PgDn, g/G: page, ends)',
  '  Tab, S-Tab     next / previous pane: list, waterfall, details',
  '  Enter          list: into the waterfall; waterfall: the phase details',
  '  Esc            back to the list; in the list: clear the text filter',
  '  /              filter by text: namespace/name, sandbox id prefix,',
  '                 outcome, error message (Enter applies, Esc clears)',
  '  f              failed only (toggle)',
  '  t              teardowns shown / hidden (toggle)',
  '  n              waterfall: every netlink call (lookups, calls folded',
  '                 into the step they serve as +N) shown / folded',
  '  space          replay: pause / resume',
  '  + / -          replay: double / halve the speed',
  '  ?              this help (any key closes it)',
  '  q, C-c         quit',
];

export interface ViewOptions {
  timeline: Timeline;
  header: HeaderState;
  replay: () => ReplayState | null;
  replayKeys: { togglePause(): void; faster(): void; slower(): void } | null;
  quit: () => void;
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
}

/** At most this often the screen is drawn for new records: a burst of pods is one redraw, not hundreds. */
const renderEveryMs = 100;

export class TimelineView {
  private readonly screen: blessed.Widgets.Screen;
  private readonly headerBox: blessed.Widgets.BoxElement;
  private readonly listBox: blessed.Widgets.BoxElement;
  private readonly waterfallBox: blessed.Widgets.BoxElement;
  private readonly detailsBox: blessed.Widgets.BoxElement;
  private readonly footerBox: blessed.Widgets.BoxElement;
  private readonly helpBox: blessed.Widgets.BoxElement;
  private readonly glyphs: Glyphs;
  private focus: Pane = 'list';
  /** The selected phase row of the waterfall, for the record it was chosen on. */
  private phase = { seq: -1, row: 0, top: 0, opened: false };
  /** The phase selected when `n` was pressed: the row that shows it after the toggle is selected. */
  private keepPhase: number | null = null;
  /** The phase of the waterfall's selected row, as last drawn. */
  private selectedPhaseId: number | null = null;
  private detailsTop = 0;
  private detailsKey = '';
  private hideLookups = true;
  private helpShown = false;
  /** The text filter being typed, null when not typing. */
  private filterInput: string | null = null;
  private renderTimer: NodeJS.Timeout | null = null;
  private lastRenderAt = 0;
  private destroyed = false;
  private lastLabels = new Map<blessed.Widgets.BoxElement, string>();

  constructor(private readonly options: ViewOptions) {
    this.screen = blessed.screen({
      input: options.input,
      output: options.output,
      smartCSR: true,
      autoPadding: false,
      warnings: false,
      title: 'podwire',
      // The screen follows a resize after 100 ms (blessed's default waits 300).
      resizeTimeout: 100,
    } as blessed.Widgets.IScreenOptions);
    const { tput } = this.screen.program as unknown as {
      tput: { unicode?: boolean; numbers: Record<string, number>; brokenACS?: boolean };
    };
    const unicode = tput.unicode === true || tput.numbers.U8 === 1;
    this.glyphs = unicode ? unicodeGlyphs : asciiGlyphs;
    // In a UTF-8 locale, borders are drawn as UTF-8 box characters rather than the DEC line-drawing set:
    // what tmux, screen captures and copy-paste keep is then lines, not "lqqk".
    if (unicode) tput.brokenACS = true;

    const box = (rect: Rect, bordered: boolean) =>
      blessed.box({
        parent: this.screen,
        ...rect,
        tags: true,
        wrap: false,
        border: bordered ? { type: 'line' } : undefined,
        style: { border: { fg: 'gray' }, label: { fg: 'white' } },
      });
    const layout = paneLayout(this.cols, this.rows);
    this.headerBox = box(layout.header, false);
    this.listBox = box(layout.list, true);
    this.waterfallBox = box(layout.waterfall, true);
    this.detailsBox = box(layout.details, true);
    this.footerBox = box(layout.footer, false);
    this.helpBox = blessed.box({
      parent: this.screen,
      top: 'center',
      left: 'center',
      width: 76,
      height: helpText.length + 2,
      tags: false,
      border: { type: 'line' },
      style: { border: { fg: 'cyan' } },
      content: helpText.join('\n'),
      hidden: true,
    });

    this.screen.on('keypress', (ch: string | undefined, key: blessed.Widgets.Events.IKeyEventArg) =>
      this.key(ch, key),
    );
    this.screen.on('resize', () => this.renderNow());
    this.renderNow();
  }

  private get cols(): number {
    return Math.max(20, Number(this.screen.width) || 80);
  }

  private get rows(): number {
    return Math.max(8, Number(this.screen.height) || 24);
  }

  /** Draws soon: new records and statuses are batched into one redraw at most every renderEveryMs. */
  requestRender(): void {
    if (this.destroyed || this.renderTimer) return;
    const wait = Math.max(0, this.lastRenderAt + renderEveryMs - Date.now());
    this.renderTimer = setTimeout(() => {
      this.renderTimer = null;
      this.renderNow();
    }, wait);
  }

  renderNow(): void {
    if (this.destroyed) return;
    if (this.renderTimer) clearTimeout(this.renderTimer);
    this.renderTimer = null;
    this.lastRenderAt = Date.now();
    try {
      this.layout();
      this.drawHeader();
      const selected = this.options.timeline.selected();
      this.drawList();
      const phase = this.drawWaterfall(selected);
      this.drawDetails(selected, phase);
      this.drawFooter();
    } catch (error) {
      // A record no one foresaw must not take the tracer down with it: the footer says what went wrong.
      this.footerBox.setContent(
        `{red-fg}${escapeTags(printable(`cannot draw: ${(error as Error).message}`))}{/red-fg}`,
      );
    }
    this.screen.render();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.renderTimer) clearTimeout(this.renderTimer);
    this.renderTimer = null;
    this.screen.destroy();
  }

  private layout(): void {
    const layout = paneLayout(this.cols, this.rows, this.focus);
    const place = (element: blessed.Widgets.BoxElement, rect: Rect) => {
      element.top = rect.top;
      element.left = rect.left;
      element.width = rect.width;
      element.height = rect.height;
    };
    place(this.headerBox, layout.header);
    place(this.listBox, layout.list);
    place(this.waterfallBox, layout.waterfall);
    place(this.detailsBox, layout.details);
    place(this.footerBox, layout.footer);
    this.helpBox.width = Math.min(76, this.cols - 2);
    this.helpBox.height = Math.min(helpText.length + 2, this.rows - 2);
    for (const [pane, element] of [
      ['list', this.listBox],
      ['waterfall', this.waterfallBox],
      ['details', this.detailsBox],
    ] as const) {
      element.style.border = { fg: this.focus === pane ? 'cyan' : 'gray' };
    }
    if (this.helpShown) this.helpBox.show();
    else this.helpBox.hide();
  }

  private inner(element: blessed.Widgets.BoxElement): { width: number; height: number } {
    return {
      width: Math.max(1, Number(element.width) - 2),
      height: Math.max(1, Number(element.height) - 2),
    };
  }

  private label(element: blessed.Widgets.BoxElement, text: string): void {
    const width = Math.max(4, Number(element.width) - 4);
    const label = ` ${fitted(text, width - 2, this.glyphs).trimEnd()} `;
    if (this.lastLabels.get(element) === label) return;
    this.lastLabels.set(element, label);
    element.setLabel(label);
  }

  private drawHeader(): void {
    const replay = this.options.replay();
    const lines = headerLines(
      this.options.header,
      replay,
      { listed: this.options.timeline.rows().length, stored: this.options.timeline.store.size },
      this.glyphs,
    );
    this.headerBox.setContent(lines.map((runs) => tagged(runs, this.cols, this.glyphs)).join('\n'));
  }

  private drawList(): void {
    const { timeline } = this.options;
    const { width, height } = this.inner(this.listBox);
    const filter = filterLabel(timeline.filter);
    const total = timeline.store.size;
    const rows = timeline.rows();
    this.label(
      this.listBox,
      `pods ${rows.length}${rows.length === total ? '' : ` of ${total}`}, newest first${filter ? ` ${this.glyphs.dot} filter: ${filter}` : ''}`,
    );
    const lines: string[] = [];
    // The column titles cost a row: shown only where the list has rows to spare.
    const heading = height >= 5;
    if (heading) lines.push(`{gray-fg}${listHeading(width, this.glyphs)}{/gray-fg}`);
    if (rows.length === 0) {
      lines.push(
        total === 0
          ? `{gray-fg}waiting for pod handshakes and teardowns${this.glyphs.ellipsis}{/gray-fg}`
          : '{gray-fg}no record matches the filter (Esc clears the text, f and t toggle){/gray-fg}',
      );
    } else {
      const window = timeline.window(height - (heading ? 1 : 0));
      window.rows.forEach((entry, index) => {
        const runs = listRow(entry.record, width, this.glyphs);
        lines.push(this.line(runs, width, index === window.selectedIndex, this.focus === 'list'));
      });
    }
    this.listBox.setContent(lines.join('\n'));
  }

  /** A line of runs, the selected one in reverse video across the pane (bold where the focus is). */
  private line(runs: Run[], width: number, selected: boolean, focused: boolean): string {
    if (!selected) return tagged(runs, width, this.glyphs);
    const padded = [...runs, { text: ' '.repeat(Math.max(0, width - runsWidth(runs))) }];
    const text = tagged(padded, width, this.glyphs);
    return focused ? `{inverse}{bold}${text}{/bold}{/inverse}` : `{inverse}${text}{/inverse}`;
  }

  private drawWaterfall(
    selected: Listed | null,
  ): { phase: PhaseRecord; folded: PhaseRecord[] } | null {
    const { width, height } = this.inner(this.waterfallBox);
    if (!selected) {
      this.label(this.waterfallBox, 'waterfall');
      this.waterfallBox.setContent('{gray-fg}no pod selected{/gray-fg}');
      return null;
    }
    const { record } = selected;
    this.label(
      this.waterfallBox,
      [podName(record), record.kind, record.outcome, msText(record.durationMs)].join(
        ` ${this.glyphs.dot} `,
      ),
    );
    const lines = waterfallLines(record, width, {
      hideLookups: this.hideLookups,
      glyphs: this.glyphs,
    });
    const selectable = lines.flatMap((line, index) => (line.phaseId === null ? [] : [index]));
    if (this.phase.seq !== selected.seq) {
      // A failed record opens on the phase that failed: that is what its reader came for.
      const cause = (record.phases ?? []).find(
        (phase) => phase.error && phase.name === record.error?.phase,
      )?.id;
      const row = selectable.findIndex((index) => lines[index]?.phaseId === cause);
      this.phase = { seq: selected.seq, row: Math.max(0, row), top: 0, opened: row > 0 };
    }
    if (this.keepPhase !== null) {
      const kept = this.keepPhase;
      const row = selectable.findIndex(
        (index) =>
          lines[index]?.phaseId === kept || lines[index]?.folded?.some((call) => call.id === kept),
      );
      if (row >= 0) this.phase.row = row;
      this.keepPhase = null;
    }
    this.phase.row = Math.max(0, Math.min(this.phase.row, selectable.length - 1));
    const selectedLine = selectable[this.phase.row] ?? -1;
    // The legend stays on top; the rows below it scroll to keep the selected phase in view. Where the steps
    // would fit but for the legend, it gives its line to them and what it said of hidden calls goes in the label.
    const legend = lines[0];
    // The lines down to the last step, legend not counted.
    const steps = selectable[selectable.length - 1] ?? 0;
    const legendShown = !(steps > height - 1 && steps <= height);
    if (!legendShown && legend?.note)
      this.label(
        this.waterfallBox,
        [podName(record), record.kind, record.outcome, msText(record.durationMs), legend.note].join(
          ` ${this.glyphs.dot} `,
        ),
      );
    const rowsHeight = Math.max(1, height - (legendShown ? 1 : 0));
    const body = lines.slice(1);
    const at = selectedLine - 1;
    if (at >= 0 && at < this.phase.top) this.phase.top = at;
    // The message under a failed row scrolls in with it.
    let after = 0;
    while (at >= 0 && body[at + after + 1]?.phaseId === null && after < rowsHeight - 1) after++;
    if (this.phase.opened) {
      // Opened on its failed phase, a record shows the plugin that phase ran in too, where it fits.
      const parentId = (record.phases ?? []).find((p) => p.id === body[at]?.phaseId)?.parentId;
      const parentAt = body.findIndex((line) => line.phaseId !== null && line.phaseId === parentId);
      this.phase.top =
        parentAt >= 0 && at + after - parentAt < rowsHeight
          ? parentAt
          : Math.max(0, at - Math.floor(rowsHeight / 3));
      this.phase.opened = false;
    }
    if (at >= 0 && at + after >= this.phase.top + rowsHeight)
      this.phase.top = at + after - rowsHeight + 1;
    this.phase.top = Math.max(0, Math.min(this.phase.top, Math.max(0, body.length - rowsHeight)));
    if (at >= 0 && at < this.phase.top) this.phase.top = at;
    const out = legendShown ? [tagged(legend?.runs ?? [], width, this.glyphs)] : [];
    body.slice(this.phase.top, this.phase.top + rowsHeight).forEach((line, index) => {
      const selectedRow = this.focus !== 'list' && this.phase.top + index === at;
      out.push(this.line(line.runs, width, selectedRow, this.focus === 'waterfall'));
    });
    this.waterfallBox.setContent(out.join('\n'));
    const phaseId = lines[selectedLine]?.phaseId;
    this.selectedPhaseId = phaseId ?? null;
    const phase = (record.phases ?? []).find((p) => p.id === phaseId);
    return phase ? { phase, folded: lines[selectedLine]?.folded ?? [] } : null;
  }

  private drawDetails(
    selected: Listed | null,
    row: { phase: PhaseRecord; folded: PhaseRecord[] } | null,
  ): void {
    const phase = row?.phase ?? null;
    const { width, height } = this.inner(this.detailsBox);
    let lines: Run[][];
    let key: string;
    if (!selected) {
      this.label(this.detailsBox, 'details');
      lines = [];
      key = '';
    } else if (this.focus === 'list' || !phase) {
      this.label(this.detailsBox, `details: ${podName(selected.record)} (${selected.record.kind})`);
      lines = recordDetails(selected.record, width);
      key = `record ${selected.seq}`;
    } else {
      this.label(this.detailsBox, `details: ${phase.name}`);
      lines = phaseDetails(selected.record, phase, width, row?.folded ?? []);
      key = `phase ${selected.seq} ${phase.id}`;
    }
    if (key !== this.detailsKey) {
      this.detailsKey = key;
      this.detailsTop = 0;
    }
    this.detailsTop = Math.max(0, Math.min(this.detailsTop, lines.length - height));
    const shown = lines.slice(this.detailsTop, this.detailsTop + height);
    const more = lines.length > this.detailsTop + height;
    const text = shown.map((runs) => tagged(runs, width, this.glyphs));
    // A pane of one line keeps that line: its label says what it is, Tab there gives it room.
    if (more && text.length > 1)
      text[text.length - 1] =
        `{gray-fg}${fitted(`${this.glyphs.ellipsis} ${lines.length - this.detailsTop - height + 1} more lines (${this.focus === 'details' ? 'j/k scroll' : 'Tab here, then j/k'})`, width, this.glyphs).trimEnd()}{/gray-fg}`;
    this.detailsBox.setContent(text.join('\n'));
  }

  private drawFooter(): void {
    const runs: Run[] =
      this.filterInput !== null
        ? [
            { text: '/', style: 'bold' },
            { text: this.filterInput },
            { text: '_', style: 'inverse' },
            { text: '   Enter applies, Esc clears', style: 'gray-fg' },
          ]
        : [
            { text: 'q', style: 'bold' },
            { text: ' quit  ' },
            { text: '?', style: 'bold' },
            { text: ' help  ' },
            { text: 'Tab', style: 'bold' },
            { text: ' pane  ' },
            { text: 'j/k', style: 'bold' },
            { text: ' move  ' },
            { text: 'Enter', style: 'bold' },
            { text: ' open  ' },
            { text: '/', style: 'bold' },
            { text: ' filter  ' },
            { text: 'f', style: 'bold' },
            { text: ' failed  ' },
            { text: 't', style: 'bold' },
            { text: ' teardowns  ' },
            { text: 'n', style: 'bold' },
            { text: ' lookups' },
            ...(this.options.replayKeys
              ? [
                  { text: '  space', style: 'bold' },
                  { text: ' pause  ' },
                  { text: '+/-', style: 'bold' },
                  { text: ' speed' },
                ]
              : []),
          ];
    this.footerBox.setContent(tagged(runs, this.cols, this.glyphs));
  }

  private key(ch: string | undefined, key: blessed.Widgets.Events.IKeyEventArg): void {
    if (this.destroyed) return;
    const name = key?.full ?? ch ?? '';
    if (name === 'C-c') {
      this.options.quit();
      return;
    }
    if (this.helpShown) {
      this.helpShown = false;
      this.renderNow();
      return;
    }
    if (this.filterInput !== null) {
      this.filterKey(ch, name);
      this.renderNow();
      return;
    }
    if (this.command(ch, name)) this.renderNow();
  }

  /** Typing a text filter: everything printable is text, until Enter or Esc. */
  private filterKey(ch: string | undefined, name: string): void {
    const { timeline } = this.options;
    if (name === 'enter' || name === 'linefeed') {
      timeline.filter = { ...timeline.filter, text: this.filterInput ?? '' };
      this.filterInput = null;
    } else if (name === 'escape') {
      timeline.filter = { ...timeline.filter, text: '' };
      this.filterInput = null;
    } else if (name === 'backspace') {
      this.filterInput = (this.filterInput ?? '').slice(0, -1);
    } else if (name === 'C-u') {
      this.filterInput = '';
    } else if (ch && ch.length === 1 && ch >= ' ' && ch !== '\x7f' && name !== 'return') {
      this.filterInput = `${this.filterInput ?? ''}${ch}`;
    }
  }

  /** One key outside the filter prompt and help; says whether the screen changed. */
  private command(ch: string | undefined, name: string): boolean {
    const { timeline } = this.options;
    const page = Math.max(
      1,
      this.inner(this.focus === 'list' ? this.listBox : this.waterfallBox).height - 2,
    );
    switch (name) {
      case 'q':
        this.options.quit();
        return false;
      case '?':
        this.helpShown = true;
        return true;
      case 'tab':
        this.focusOn(panes[(panes.indexOf(this.focus) + 1) % panes.length] ?? 'list');
        return true;
      case 'S-tab':
        this.focusOn(
          panes[(panes.indexOf(this.focus) + panes.length - 1) % panes.length] ?? 'list',
        );
        return true;
      case 'enter':
      case 'linefeed':
        if (this.focus === 'list') this.focusOn('waterfall');
        else if (this.focus === 'waterfall') this.focusOn('details');
        return true;
      case 'escape':
        if (this.focus !== 'list') this.focusOn('list');
        else timeline.filter = { ...timeline.filter, text: '' };
        return true;
      case '/':
        this.filterInput = timeline.filter.text;
        return true;
      case 'f':
        timeline.filter = { ...timeline.filter, failedOnly: !timeline.filter.failedOnly };
        return true;
      case 't':
        timeline.filter = { ...timeline.filter, showTeardowns: !timeline.filter.showTeardowns };
        return true;
      case 'n':
        this.hideLookups = !this.hideLookups;
        this.keepPhase = this.selectedPhaseId;
        return true;
      case 'space':
        this.options.replayKeys?.togglePause();
        return true;
      case 'down':
      case 'j':
        return this.move(1);
      case 'up':
      case 'k':
        return this.move(-1);
      case 'pagedown':
        return this.move(page);
      case 'pageup':
        return this.move(-page);
      case 'home':
      case 'g':
        return this.move(Number.NEGATIVE_INFINITY);
      case 'end':
      case 'S-g':
        return this.move(Number.POSITIVE_INFINITY);
      default:
        break;
    }
    if (ch === '+' || ch === '=') this.options.replayKeys?.faster();
    else if (ch === '-' || ch === '_') this.options.replayKeys?.slower();
    else if (ch === 'G') return this.move(Number.POSITIVE_INFINITY);
    else return false;
    return true;
  }

  /** Focus on another pane; away from the list, the record being read stays put when new ones arrive. */
  private focusOn(pane: Pane): void {
    this.focus = pane;
    if (pane !== 'list') this.options.timeline.hold();
    // Back in the list, the waterfall scrolls back up as far as its selected row allows: its first steps.
    else this.phase.top = 0;
  }

  private move(delta: number): boolean {
    const big = (value: number) => (Number.isFinite(value) ? value : Math.sign(value) * 1e9);
    if (this.focus === 'list') this.options.timeline.move(big(delta));
    else if (this.focus === 'waterfall') this.phase.row = Math.max(0, this.phase.row + big(delta));
    else this.detailsTop = Math.max(0, this.detailsTop + big(delta));
    return true;
  }
}
