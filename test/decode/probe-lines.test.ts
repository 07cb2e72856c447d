// Every line a probe prints agrees with its declaration (src/decode/probe-lines.ts): the printf of each probes/*.bt
// program, and the cri_* lines the CRI uprobe events of the real containerd give through trace-pipe.ts.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { inspectContainerd } from '../../src/binaries/runtime.js';
import {
  bufferChunk,
  type Field,
  type ProbeTag,
  probeLine,
  probeLineSpec,
  probeLines,
} from '../../src/decode/probe-lines.js';
import { type EventDefinition, traceLineToProbeLines } from '../../src/decode/trace-pipe.js';
import { probesDir, withWords } from '../../src/probes/program.js';
import { criEventDefinitions } from '../../src/probes/uprobe-events.js';

/** One printf of a program: its format's tab-separated parts (the newline left out) and its arguments. */
interface Printf {
  at: string;
  parts: string[];
  args: string[];
  conversions: number;
}

/** The arguments of a printf, split at its top-level commas. */
function splitArgs(text: string): string[] {
  const args: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(' || c === '[') depth++;
    else if (c === ')' || c === ']') depth--;
    else if (c === ',' && depth === 0) {
      args.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  args.push(text.slice(start).trim());
  return args.filter((arg) => arg !== '');
}

/** Every printf of a program, its words placeholders filled in as podwire fills them. */
function printfs(name: string, program: string): Printf[] {
  const text = withWords(program);
  const found: Printf[] = [];
  for (let at = text.indexOf('printf("'); at >= 0; at = text.indexOf('printf("', at + 1)) {
    const formatEnd = text.indexOf('"', at + 8);
    const format = text.slice(at + 8, formatEnd);
    let depth = 1;
    let end = formatEnd + 1;
    for (; end < text.length && depth > 0; end++) {
      if (text[end] === '(') depth++;
      if (text[end] === ')') depth--;
    }
    const line = text.slice(0, at).split('\n').length;
    found.push({
      at: `${name}:${line}`,
      parts: format.replace(/\\n$/, '').split('\\t'),
      args: splitArgs(text.slice(formatEnd + 1, end - 1)),
      conversions: (format.match(/%[a-z]+/g) ?? []).length,
    });
  }
  return found;
}

/** Whether a printf's part prints `field` as declared. */
function fits(field: Field, part: string): boolean {
  switch (field.type) {
    case 'int':
      return /^%(d|i|ld|lld)$/.test(part) || /^-?\d+$/.test(part);
    case 'uint':
      return /^%(u|lu|llu)$/.test(part) || /^\d+$/.test(part);
    case 'string':
    case 'rest':
      return part === '%s';
    case 'words':
      return /^%llx( %llx)*$/.test(part);
  }
}

/** What is wrong with the lines a program prints, against their declarations: nothing when they agree. */
function checkProgram(name: string, program: string): string[] {
  const problems: string[] = [];
  for (const { at, parts, args, conversions } of printfs(name, program)) {
    const [tag = '', ...rest] = parts;
    if (conversions !== args.length)
      problems.push(`${at}: ${conversions} conversions for ${args.length} arguments`);
    const spec = probeLineSpec(tag);
    if (!spec) {
      problems.push(`${at}: tag "${tag}" is not declared in probe-lines.ts`);
      continue;
    }
    if (!spec.printedBy.includes(name))
      problems.push(`${at}: ${tag} is not declared as printed by ${name}`);
    const [ns, pid, tid, ...values] = rest;
    if (ns !== '%llu' || pid !== '%d' || tid !== '%d')
      problems.push(`${at}: ${tag} does not start with ns, pid, tid (%llu, %d, %d)`);
    const { fields } = spec;
    const repeats = fields.at(-1)?.repeats === true;
    if (repeats ? values.length < fields.length : values.length !== fields.length) {
      problems.push(
        `${at}: ${tag} prints ${values.length} fields, its declaration has ${fields.length}`,
      );
      continue;
    }
    values.forEach((part, i) => {
      const field = fields[Math.min(i, fields.length - 1)] as Field;
      if (!fits(field, part))
        problems.push(
          `${at}: ${tag}'s ${field.name} is declared ${field.type}, printed as "${part}"`,
        );
    });
    const chunks = spec.chunks;
    if (chunks) {
      const number = Number(values[fields.findIndex((field) => field.name === chunks.number)]);
      if (!(number >= 0 && number < chunks.max))
        problems.push(`${at}: ${tag} prints chunk ${number}, declared at most ${chunks.max}`);
      const words = (values.at(-1) ?? '').split(' ').length;
      if (chunks.join === 'buffer' && words * 8 > bufferChunk)
        problems.push(`${at}: ${tag} prints ${words * 8} bytes a chunk, more than ${bufferChunk}`);
    }
  }
  return problems;
}

const dir = probesDir();
const programs = readdirSync(dir).filter((name) => name.endsWith('.bt'));
const program = (name: string) => readFileSync(join(dir, name), 'utf8');

describe('the probe programs print their lines as declared', () => {
  it.each(programs)('%s', (name) => {
    expect(printfs(name, program(name)).length).toBeGreaterThan(0);
    expect(checkProgram(name, program(name))).toEqual([]);
  });

  it('prints every tag declared as printed by a program', () => {
    const printed = new Set(
      programs.flatMap((name) => printfs(name, program(name)).map((p) => `${name} ${p.parts[0]}`)),
    );
    for (const [tag, spec] of Object.entries(probeLines))
      for (const by of spec.printedBy.filter((by) => by.endsWith('.bt')))
        expect(printed, `${by} prints ${tag}`).toContain(`${by} ${tag}`);
  });

  it('fails a program whose printf lost a field, or prints one as another type', () => {
    const netns = program('netns.bt');
    const withoutInum = netns.replace(
      '"ns_unshare\\t%llu\\t%d\\t%d\\t%d\\t%llu\\t%u\\n", nsecs, pid, tid, args->ret, @unshare[tid],\n    curtask->nsproxy->net_ns->ns.inum)',
      '"ns_unshare\\t%llu\\t%d\\t%d\\t%d\\t%llu\\n", nsecs, pid, tid, args->ret, @unshare[tid])',
    );
    expect(withoutInum).not.toBe(netns);
    expect(checkProgram('netns.bt', withoutInum)).toEqual([
      expect.stringMatching(/^netns\.bt:\d+: ns_unshare prints 2 fields, its declaration has 3$/),
    ]);
    const asText = netns.replace(
      '"ns_clone\\t%llu\\t%d\\t%d\\t%d\\t%llu\\n"',
      '"ns_clone\\t%llu\\t%d\\t%d\\t%s\\t%llu\\n"',
    );
    expect(checkProgram('netns.bt', asText)).toEqual([
      expect.stringMatching(/ns_clone's ret is declared int, printed as "%s"$/),
    ]);
    const sandbox = program('sandbox.bt');
    const bigChunk = sandbox.replace(
      '{{WORDS_FORMAT 192}}\\n", nsecs',
      '{{WORDS_FORMAT 200}}\\n", nsecs',
    );
    expect(checkProgram('sandbox.bt', bigChunk)).toContainEqual(
      expect.stringMatching(/sb_exec_w prints 200 bytes a chunk, more than 192$/),
    );
  });
});

/** What is wrong with a probe line's data (as trace-pipe.ts gives it) against its declaration. */
function checkLine(data: string): string[] {
  const [tag = '', ns, pid, tid, ...values] = data.split('\t');
  const spec = probeLineSpec(tag);
  if (!spec) return [`tag "${tag}" is not declared`];
  const problems: string[] = [];
  if (![ns, pid, tid].every((n) => /^\d+$/.test(n ?? ''))) problems.push(`${tag}: ns, pid, tid`);
  const { fields } = spec;
  const rest = fields.at(-1)?.type === 'rest';
  if (rest ? values.length < fields.length : values.length !== fields.length)
    return [...problems, `${tag}: ${values.length} fields for ${fields.length}`];
  fields.forEach((field, i) => {
    const value = values[i] ?? '';
    if (field.type === 'int' && !/^-?\d+$/.test(value))
      problems.push(`${tag}: ${field.name} "${value}"`);
    if (field.type === 'uint' && !/^\d+$/.test(value))
      problems.push(`${tag}: ${field.name} "${value}"`);
    if (field.holds === 'goroutine' && !/^[0-9a-f]+$/.test(value))
      problems.push(`${tag}: goroutine "${value}"`);
  });
  return problems;
}

/** A trace_pipe entry of `definition`'s event as the kernel writes it, each fetched value made up (ids: `id`). */
function traceEntry(definition: EventDefinition, id: string): string {
  const [, , ...fetches] = definition.line.split(' ');
  const event = definition.line.split(' ')[0]?.split('/')[1];
  const madeUp = (name: string) => (name === 'id' || name.endsWith('_id') ? id : `${name}-value`);
  const args = fetches.map((fetch) => {
    const name = fetch.slice(0, fetch.indexOf('='));
    const type = fetch.slice(fetch.lastIndexOf(':') + 1);
    if (type === 'x64') return `${name}=${name === 'err' ? '0x0' : '0xc0004be340'}`;
    if (type === 'u64') return `${name}=${madeUp(name.replace(/_len$/, '')).length}`;
    if (type === 'string') return `${name}="${madeUp(name)}"`;
    const bytes = [...Buffer.from(madeUp(name))].map((byte) => `0x${byte.toString(16)}`);
    return `${name}={${bytes.join(',')}}`;
  });
  return `containerd-18592 [001] ..... 49290.242074: ${event}: (0x19992ca) ${args.join(' ')}`;
}

const containerd = '/usr/bin/containerd';
const why = existsSync(containerd) ? '' : 'needs /usr/bin/containerd: npm run setup installs it';

describe.skipIf(why !== '')(
  `the CRI uprobe events give their lines as declared${why ? ` (skipped: ${why})` : ''}`,
  () => {
    const id = 'c786d83d3fadae62c722139bbf8f0f7000b9f9ede6e9f27e854df7700332c25f';
    const definitions = async () => {
      const inspection = await inspectContainerd(containerd);
      if ('error' in inspection) throw new Error(inspection.error);
      return criEventDefinitions(inspection, 'podwire_1_0');
    };
    const linesOf = (definition: EventDefinition) => {
      const lines = traceLineToProbeLines(
        traceEntry(definition, id),
        new Map([[definition.event, definition]]),
        () => 18500,
      );
      if (typeof lines === 'string') throw new Error(lines);
      return lines;
    };

    it('every event of the real containerd gives cri_* lines with every declared field', async () => {
      const all = await definitions();
      expect(all.length).toBeGreaterThan(10);
      for (const definition of all) {
        const lines = linesOf(definition);
        for (const line of lines)
          expect(checkLine(line), `${definition.event}: ${line}`).toEqual([]);
        const tags = lines.map((line) => line.split('\t')[0]);
        if (definition.side === 'out') {
          expect(tags).toEqual(['cri_return']);
          continue;
        }
        // The entry says how many arguments follow, and they do.
        expect(tags[0]).toBe('cri_enter');
        expect(Number(lines[0]?.split('\t')[6])).toBe(lines.length - 1);
      }
    });

    it('gives what the correlator joins calls by: the pod, the sandbox id of each call', async () => {
      const all = await definitions();
      const argNames = (event: string) => {
        const definition = all.find((d) => d.event === event);
        if (!definition) throw new Error(`no ${event}`);
        return linesOf(definition)
          .slice(1)
          .map((line) => line.split('\t')[5]);
      };
      expect(argNames('RunPodSandbox_in')).toEqual(['name', 'uid', 'namespace']);
      expect(argNames('StopPodSandbox_in')).toEqual(['sandbox_id']);
      expect(argNames('RemovePodSandbox_in')).toEqual(['sandbox_id']);
      const run = all.find((d) => d.event === 'RunPodSandbox_out0') as EventDefinition;
      expect(linesOf(run)).toEqual([
        probeLine(
          'cri_return',
          { ns: 49290242074000n, pid: 18500, tid: 18592 },
          {
            method: 'RunPodSandbox',
            goroutine: 'c0004be340',
            failed: 0,
            sandboxId: id,
          },
        ),
      ]);
    });

    it('fails a definition that does not fetch the goroutine', async () => {
      const [first] = await definitions();
      const broken = {
        ...(first as EventDefinition),
        line: (first as EventDefinition).line.replace(' g=%r14:x64', ''),
      };
      expect(linesOf(broken).flatMap(checkLine)).toContainEqual(
        expect.stringMatching(/goroutine ""$/),
      );
    });
  },
);

describe('probeLine', () => {
  it('prints the fields in their declared order, after tag, ns, pid, tid', () => {
    const tag: ProbeTag = 'cri_arg';
    expect(
      probeLine(tag, { ns: 5n, pid: 1, tid: 2 }, { value: 'lab-1', name: 'name', goroutine: 'c0' }),
    ).toBe('cri_arg\t5\t1\t2\tc0\tname\tlab-1');
  });
});
