// Text in the timeline's fixed-width columns: cut to width, safe inside blessed tags, drawable in any locale.

/** The characters the panes draw with: block glyphs on a UTF-8 terminal, ASCII where blessed would print '?'. */
export interface Glyphs {
  bar: string;
  /** A phase that never ended: drawn to the end of the record, in a lighter shade. */
  openBar: string;
  ellipsis: string;
  teardown: string;
  swatch: string;
  failed: string;
  /** Between facts in a label. */
  dot: string;
  /** A fact not known (yet). */
  dash: string;
  times: string;
}

export const unicodeGlyphs: Glyphs = {
  bar: '█',
  openBar: '░',
  ellipsis: '…',
  teardown: '↓',
  swatch: '■',
  failed: '✗',
  dot: '·',
  dash: '–',
  times: '×',
};

export const asciiGlyphs: Glyphs = {
  bar: '#',
  openBar: '-',
  ellipsis: '~',
  teardown: 'v',
  swatch: '#',
  failed: '!',
  dot: '|',
  dash: '-',
  times: 'x',
};

/** One run of text in one style: `style` is a blessed tag body such as `red-fg` or `bold`. */
export interface Run {
  text: string;
  style?: string;
}

/**
 * Record fields come from the node (pod names, plugin error messages, JSON): control characters would move
 * the cursor and garble the screen, so they become spaces.
 */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
}

/** Braces would open blessed tags: `{open}` and `{close}` are blessed's own escapes for them. */
export function escapeTags(text: string): string {
  return text.replace(/[{}]/g, (brace) => (brace === '{' ? '{open}' : '{close}'));
}

/** Exactly `width` characters: cut with an ellipsis when longer, padded with spaces when shorter. */
export function fitted(text: string, width: number, glyphs: Glyphs = unicodeGlyphs): string {
  if (width <= 0) return '';
  const clean = printable(text);
  if (clean.length <= width) return clean.padEnd(width);
  return `${clean.slice(0, width - 1)}${glyphs.ellipsis}`;
}

/** Runs as one tagged line of at most `width` visible characters (not padded). */
export function tagged(runs: Run[], width: number, glyphs: Glyphs = unicodeGlyphs): string {
  let left = width;
  let out = '';
  for (const run of runs) {
    if (left <= 0) break;
    let text = printable(run.text);
    if (text.length > left) text = `${text.slice(0, Math.max(0, left - 1))}${glyphs.ellipsis}`;
    left -= text.length;
    if (text === '') continue;
    out += run.style ? `{${run.style}}${escapeTags(text)}{/${run.style}}` : escapeTags(text);
  }
  return out;
}

/** How wide a line of runs is on screen. */
export function runsWidth(runs: Run[]): number {
  return runs.reduce((sum, run) => sum + run.text.length, 0);
}

/** Milliseconds as the panes print them: sub-millisecond steps (rtnetlink) keep two decimals. */
export function msText(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return '-';
  return value < 1 ? `${value.toFixed(2)} ms` : `${value.toFixed(1)} ms`;
}

/**
 * Text broken into lines of at most `width` characters, at spaces where it can; lines after the first start
 * with `indent`. Error messages and JSON are read whole, not cut.
 */
export function wrap(text: string, width: number, indent = ''): string[] {
  const clean = printable(text);
  const lines: string[] = [];
  let rest = clean;
  let prefix = '';
  while (rest.length > 0) {
    const room = Math.max(1, width - prefix.length);
    if (rest.length <= room) {
      lines.push(prefix + rest);
      break;
    }
    let cut = rest.lastIndexOf(' ', room);
    if (cut <= 0) cut = room;
    lines.push(prefix + rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
    prefix = indent.length < width ? indent : '';
  }
  return lines.length > 0 ? lines : [''];
}
