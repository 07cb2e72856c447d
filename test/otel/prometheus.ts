// Reads one sample out of Prometheus text exposition, as a PromQL selector with exact label matches would.

function labelsOf(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const match of text.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
    labels[match[1] as string] = (match[2] as string).replace(/\\(.)/g, (_, c: string) =>
      c === 'n' ? '\n' : c,
    );
  }
  return labels;
}

/** The value of the one sample of `name` whose labels include `labels`; null when there is none. */
export function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | null {
  const found: number[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = labelsOf(match[2] ?? '');
    if (Object.entries(labels).every(([key, value]) => have[key] === value))
      found.push(Number(match[3]));
  }
  if (found.length > 1)
    throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0] ?? null;
}
