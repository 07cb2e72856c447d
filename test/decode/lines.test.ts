// bpftrace's JSON lines read in place: fields unescaped only when read.
import { describe, expect, it } from 'vitest';
import { FieldReader, type ProbeLine, parseBpftraceLine } from '../../src/decode/lines.js';

/** A line as `bpftrace -f json` prints a printf of `data`. */
const printed = (data: string) => `{"type": "printf", "data": ${JSON.stringify(data)}}`;

function probeLine(raw: string): ProbeLine {
  const parsed = parseBpftraceLine(raw);
  if (parsed.type !== 'probe') throw new Error(`not a probe line: ${JSON.stringify(parsed)}`);
  return parsed.line;
}

describe('probe lines read in place', () => {
  it('reads the leading fields and each later field, unescaping only what has escapes', () => {
    const line = probeLine(
      printed(
        'cri_arg\t18755373456000\t22314\t22319\tc000651520\tname\tsay "hi"\\there\tand more\n',
      ),
    );
    expect(line).toMatchObject({ tag: 'cri_arg', ns: 18755373456000n, pid: 22314, tid: 22319 });
    const fields = new FieldReader().reset(line);
    expect(fields.string()).toBe('c000651520');
    expect(fields.string()).toBe('name');
    // The rest keeps its tabs; quotes and backslashes come back as they were printed.
    expect(fields.rest()).toBe('say "hi"\\there\tand more');
    expect(fields.string()).toBe('');
    expect(fields.int()).toBeNaN();
  });

  it('reads integers, negative ones too, and gives NaN for a field that is not one', () => {
    const fields = new FieldReader().reset(
      probeLine(printed('nl_recv_w\t5\t1\t1\t-1\t36\t4026531833\tx1\t12345678901234567\n')),
    );
    expect([fields.int(), fields.int(), fields.int(), fields.int()]).toEqual([
      -1,
      36,
      4026531833,
      Number.NaN,
    ]);
    expect(fields.int()).toBe(Number('12345678901234567'));
  });

  it('keeps a timestamp past 2^53 exact', () => {
    expect(probeLine(printed('cni_gone\t9007199254740993\t1\t1\t0\n')).ns).toBe(9007199254740993n);
  });

  it('takes a literal backslash before the final n as text, not as the newline escape', () => {
    const fields = new FieldReader().reset(probeLine(printed('nl_extack\t5\t1\t1\tends in \\n')));
    expect(fields.rest()).toBe('ends in \\n');
  });

  it("reads the CRI reader's compact JSON the same way", () => {
    const line = probeLine(
      '{"type":"printf","data":"cri_return\\t7\\t1\\t2\\tRunPodSandbox\\tc0\\t0\\tab\\n"}',
    );
    const fields = new FieldReader().reset(line);
    expect([fields.string(), fields.string(), fields.string(), fields.string()]).toEqual([
      'RunPodSandbox',
      'c0',
      '0',
      'ab',
    ]);
  });

  it('does not take a line whose last quote is escaped as a printf', () => {
    expect(parseBpftraceLine('{"type": "printf", "data": "cni_gone\\t1\\t1\\t1\\"}').type).toBe(
      'malformed',
    );
  });

  it('says which leading field is wrong', () => {
    const why = (data: string) => {
      const parsed = parseBpftraceLine(printed(data));
      return parsed.type === 'malformed' ? parsed.why : parsed.type;
    };
    expect(why('cni_gone\t12x\t1\t1\t0')).toBe('cni_gone: timestamp "12x" is not a number');
    expect(why('cni_gone\t12\t1\t\t0')).toBe('cni_gone: pid/tid "1"/"" are not numbers');
    expect(why('Cni_exit\t12\t1\t1')).toBe('no probe tag at the start of "Cni_exit\t12\t1\t1"');
    expect(why('cni_gone\t12\t1\t1')).toBe('probe');
  });
});
