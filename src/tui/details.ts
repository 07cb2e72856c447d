// The details pane: everything a record or one of its phases carries, grouped the way an SRE asks about it.
import type { HandshakeRecord, PhaseKind, PhaseRecord } from '../correlate/record.js';
import { msText, type Run, wrap } from './columns.js';
import { kindLabel, timeNs } from './phases.js';
import { interfaceNames, phaseTarget } from './steps.js';
import { kindStyle } from './waterfall.js';

type Attributes = PhaseRecord['attributes'];

/** The CNI_* variables the correlator read from a plugin's environment, under their attribute names. */
const cniEnvironment: [string, string][] = [
  ['podwire.cni.command', 'CNI_COMMAND'],
  ['container.id', 'CNI_CONTAINERID'],
  ['podwire.netns', 'CNI_NETNS'],
  ['network.interface.name', 'CNI_IFNAME'],
];

/** Keys read first in their group (a request's type before its flags); the rest alphabetically. */
const leading = [
  ...cniEnvironment.map(([name]) => name),
  'podwire.netlink.type',
  'podwire.netlink.flags',
  'podwire.netlink.seq',
];
const rank = (key: string) => {
  const at = leading.indexOf(key);
  return at < 0 ? leading.length : at;
};

interface Section {
  title: string;
  keys: (key: string) => boolean;
  /** Another name a key is known by (the CNI variable it came from). */
  alias?: (key: string) => string | undefined;
}

const netlinkAnswer = new Set([
  'podwire.netlink.errno',
  'podwire.netlink.errno_name',
  'podwire.netlink.extack',
  'podwire.netlink.truncated',
]);

/** How a phase's attributes are grouped, by what kind of step it is; what no group takes goes last. */
function sections(kind: PhaseKind): Section[] {
  const process: Section = { title: 'process', keys: (key) => key.startsWith('process.') };
  switch (kind) {
    case 'cni':
    case 'ipam':
      return [
        {
          title: 'CNI environment',
          keys: (key) => cniEnvironment.some(([name]) => name === key),
          alias: (key) => cniEnvironment.find(([name]) => name === key)?.[1],
        },
        process,
        {
          title: 'exit',
          keys: (key) => key === 'podwire.cni.exit_code' || key === 'podwire.cni.error',
        },
        { title: 'result', keys: (key) => key === 'podwire.cni.result' },
      ];
    case 'rtnetlink':
      return [
        {
          title: 'rtnetlink request',
          keys: (key) =>
            !netlinkAnswer.has(key) &&
            (key.startsWith('podwire.netlink.') ||
              /^podwire\.(link|addr|route|veth)\./.test(key) ||
              key === 'network.interface.name' ||
              key === 'podwire.netns_inum'),
        },
        { title: 'rtnetlink answer', keys: (key) => netlinkAnswer.has(key) },
        process,
      ];
    case 'cri':
    case 'netns':
    case 'sandbox':
      return [process];
    default:
      return kind satisfies never;
  }
}

/** A value as lines: JSON text (a CNI result, an error object) pretty-printed, everything else as is. */
function valueLines(value: string | number | boolean): string[] {
  if (typeof value !== 'string') return [String(value)];
  const trimmed = value.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return JSON.stringify(JSON.parse(trimmed), null, 2).split('\n');
    } catch {
      // Not JSON after all (a truncated result): shown as the text it is.
    }
  }
  return [value];
}

function attributeLines(
  attributes: Attributes,
  keys: string[],
  width: number,
  alias?: (key: string) => string | undefined,
): Run[][] {
  const names = keys.map((key) => {
    const other = alias?.(key);
    return other ? `${key} (${other})` : key;
  });
  const column = Math.min(36, Math.max(0, ...names.map((name) => name.length)));
  const lines: Run[][] = [];
  keys.forEach((key, index) => {
    const name = (names[index] ?? key).padEnd(column);
    const value = attributes[key];
    if (value === undefined) return;
    const values = valueLines(value);
    if (values.length === 1) {
      for (const [at, text] of wrap(
        values[0] ?? '',
        Math.max(10, width - column - 4),
        '',
      ).entries())
        lines.push([
          { text: at === 0 ? `  ${name}  ` : ' '.repeat(column + 4), style: 'cyan-fg' },
          { text },
        ]);
      return;
    }
    lines.push([{ text: `  ${names[index] ?? key}`, style: 'cyan-fg' }]);
    for (const text of values)
      for (const part of wrap(`    ${text}`, width, `      `)) lines.push([{ text: part }]);
  });
  return lines;
}

function fact(name: string, value: string, width: number, style?: string): Run[][] {
  return wrap(value, Math.max(10, width - 12), '').map((text, index) => [
    { text: index === 0 ? name.padEnd(12) : ' '.repeat(12), style: 'bold' },
    { text, style },
  ]);
}

/**
 * A phase's times, error and attributes (rtnetlink request and answer, CNI environment, exit, result…), and
 * the netlink calls the waterfall folded into its row, one line each.
 */
export function phaseDetails(
  record: HandshakeRecord,
  phase: PhaseRecord,
  width: number,
  folded: PhaseRecord[] = [],
): Run[][] {
  const kind = phase.kind;
  const lines: Run[][] = [
    [
      { text: phase.name, style: phase.error ? 'red-fg' : 'bold' },
      { text: `  ${kindLabel[kind]}`, style: kindStyle[kind] },
      ...(phase.error ? [{ text: '  failed', style: 'red-fg' }] : []),
      ...(phase.end === null ? [{ text: '  never ended', style: 'yellow-fg' }] : []),
    ],
  ];
  const recordStart = timeNs(record.start);
  const start = timeNs(phase.start);
  const into =
    recordStart !== null && start !== null
      ? ` (+${msText(Number(start - recordStart) / 1e6)} into the record)`
      : '';
  lines.push(...fact('start', `${phase.start}${into}`, width));
  lines.push(...fact('end', phase.end ?? 'not seen', width));
  lines.push(...fact('duration', msText(phase.durationMs), width));
  if (phase.error) lines.push(...fact('error', phase.error, width, 'red-fg'));
  if (folded.length > 0) {
    const names = interfaceNames(record);
    lines.push([{ text: `folded into this row (${folded.length}, n shows each)`, style: 'bold' }]);
    for (const call of folded) {
      const target = phaseTarget(call, names);
      const answer = call.attributes?.['podwire.netlink.errno_name'];
      const text = [
        `${call.name}${target ? ` ${target}` : ''}`,
        msText(call.durationMs),
        ...(typeof answer === 'string' ? [answer] : []),
      ].join('  ');
      for (const part of wrap(`  ${text}`, width, '      ')) lines.push([{ text: part }]);
    }
  }
  const attributes = phase.attributes ?? {};
  const left = new Set(Object.keys(attributes));
  for (const section of sections(kind)) {
    const keys = [...left]
      .sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0))
      .filter((key) => section.keys(key));
    if (keys.length === 0) continue;
    for (const key of keys) left.delete(key);
    lines.push([{ text: section.title, style: 'bold' }]);
    lines.push(...attributeLines(attributes, keys, width, section.alias));
  }
  if (left.size > 0) {
    lines.push([{ text: 'attributes', style: 'bold' }]);
    lines.push(...attributeLines(attributes, [...left].sort(), width));
  }
  return lines;
}

/** The record itself: the pod, its sandbox, what was wired, the failure. */
export function recordDetails(record: HandshakeRecord, width: number): Run[][] {
  const lines: Run[][] = [];
  const add = (name: string, value: string | null | undefined, style?: string) => {
    lines.push(...fact(name, value === null || value === undefined ? '-' : value, width, style));
  };
  add('kind', record.kind);
  add(
    'outcome',
    record.outcome,
    record.outcome === 'ok' ? 'green-fg' : record.outcome === 'failed' ? 'red-fg' : 'yellow-fg',
  );
  add('sandbox', record.sandboxId);
  add('pod uid', record.pod?.uid);
  add('netns', record.netns);
  add('pod IP', record.podIP);
  add('host veth', record.hostVeth);
  add('pod iface', record.podInterface);
  add('bridge', record.bridge);
  add('CNI', (record.cni ?? []).join(', ') || null);
  add('runtime', record.runtime);
  add('start', record.start);
  add('end', record.end);
  add('duration', msText(record.durationMs));
  if (record.traceparent) add('traceparent', record.traceparent);
  if (record.error) add('error', `${record.error.phase}: ${record.error.message}`, 'red-fg');
  for (const why of record.missing ?? []) add('missing', why, 'yellow-fg');
  lines.push([
    { text: 'Enter or Tab: its phases; select one for its attributes', style: 'gray-fg' },
  ]);
  return lines;
}
