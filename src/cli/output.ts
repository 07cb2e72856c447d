// How the CLI speaks: progress on stderr (so stdout stays parseable), tables and JSON on stdout.

export function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A left-aligned table with a header, wide enough for its widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function positiveInteger(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < 1) {
      throw new Error(`${name} takes a whole number of at least 1, not "${value}"`);
    }
    return parsed;
  };
}

export const ms = (value: number | null): string =>
  value === null ? '-' : `${value.toFixed(1)} ms`;

/** Root is needed by everything that starts runtimes, mounts or attaches probes. */
export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      `${what} needs root (it starts containerd and creates namespaces): run it with sudo`,
    );
  }
}

/** A repeatable option's values, in the order given (commander calls it once per occurrence). */
export const collect = (value: string, previous: string[] = []) => [...previous, value];
