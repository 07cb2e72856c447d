// How podwire reads the trace_pipe of its CRI uprobe events back as probe lines.
import { describe, expect, it } from 'vitest';
import {
  EntryJoiner,
  type EventDefinition,
  entryCut,
  traceLineToProbeLines,
} from '../../src/decode/trace-pipe.js';

describe('trace_pipe lines to probe lines', () => {
  const definitions = new Map<string, EventDefinition>([
    [
      'RunPodSandbox_in',
      { event: 'RunPodSandbox_in', method: 'RunPodSandbox', side: 'in', line: '' },
    ],
    [
      'RunPodSandbox_out3',
      { event: 'RunPodSandbox_out3', method: 'RunPodSandbox', side: 'out', line: '' },
    ],
  ]);
  const tgids = new Map([[25841, 16547]]);
  const tgidOf = (tid: number) => tgids.get(tid) ?? 0;
  const id = 'c786d83d3fadae62c722139bbf8f0f7000b9f9ede6e9f27e854df7700332c25f';

  it('reads an entry: goroutine, and each Go string cut at its length (tracefs reads on to a NUL)', () => {
    const line =
      '      containerd-25841   [000] DBZff  1762.505060: RunPodSandbox_in: (0x1d992c0) g=0xc0009fe1a0 ' +
      'name="lab-wx7tsk8s" name_len=9 uid="8a162c59-f66f-4208-b2d5-bde7fd70815bXX" uid_len=36 namespace="default" namespace_len=7';
    expect(traceLineToProbeLines(line, definitions, tgidOf)).toEqual([
      'cri_enter\t1762505060000\t16547\t25841\tRunPodSandbox\tc0009fe1a0\t3',
      'cri_arg\t1762505060000\t16547\t25841\tc0009fe1a0\tname\tlab-wx7ts',
      'cri_arg\t1762505060000\t16547\t25841\tc0009fe1a0\tuid\t8a162c59-f66f-4208-b2d5-bde7fd70815b',
      'cri_arg\t1762505060000\t16547\t25841\tc0009fe1a0\tnamespace\tdefault',
    ]);
  });

  it('reads a return: the sandbox id when the error word is nil, no id when it is set', () => {
    const ok = `containerd-31872 (  31481) [001] DBZff  6395.007226: RunPodSandbox_out3: (0x1999c0d) g=0xc00050d040 err=0x0 id="${id}" id_len=64`;
    // The thread ended before it could be looked up: its process is unknown (0), not guessed.
    expect(traceLineToProbeLines(ok, definitions, tgidOf)).toEqual([
      `cri_return\t6395007226000\t0\t31872\tRunPodSandbox\tc00050d040\t0\t${id}`,
    ]);
    const failed =
      'containerd-25841 [001] DBZff  6395.007226: RunPodSandbox_out3: (0x1999c0d) g=0xc00050d040 err=0xffffffff81a2b3c0 id=(fault) id_len=0';
    expect(traceLineToProbeLines(failed, definitions, tgidOf)).toEqual([
      'cri_return\t6395007226000\t16547\t25841\tRunPodSandbox\tc00050d040\t1\t',
    ]);
  });

  it('cuts a string at the first byte that is not text when its length is missing (the line was cut)', () => {
    // Seen on containerd 2.1.9: the bytes after a sandbox id held a newline, which ended the trace line there.
    const line = `containerd-25841 [001] DBZff  6395.007226: RunPodSandbox_out3: (0x1999c0d) g=0xc00050d040 err=0x0 id="${id}\uFFFDHc\u0001\uFFFDL`;
    expect(traceLineToProbeLines(line, definitions, tgidOf)).toEqual([
      `cri_return\t6395007226000\t16547\t25841\tRunPodSandbox\tc00050d040\t0\t${id}`,
    ]);
  });

  it('reads an entry whose fetched bytes past a string hold a carriage return (recorded on the lab)', () => {
    // From bench/exp/burst.mjs with RECORD=... on Debian's containerd: the line podwire used to drop unseen, and
    // with it the RunPodSandbox entry (the handshake then had no CRI call).
    const line =
      '           <...>-23351   [000] DBZff 35942.450134: RunPodSandbox_in: (0x1d992ca) g=0xc00018fd40 name_len=11 ' +
      'name="burst-4dsxlburst\r" uid_len=36 uid="cdc80ed4-4fc1-4b9b-856e-c252cb3253dc" namespace_len=5 namespace="burst\r"';
    expect(traceLineToProbeLines(line, definitions, tgidOf)).toEqual([
      'cri_enter\t35942450134000\t0\t23351\tRunPodSandbox\tc00018fd40\t3',
      'cri_arg\t35942450134000\t0\t23351\tc00018fd40\tname\tburst-4dsxl',
      'cri_arg\t35942450134000\t0\t23351\tc00018fd40\tuid\tcdc80ed4-4fc1-4b9b-856e-c252cb3253dc',
      'cri_arg\t35942450134000\t0\t23351\tc00018fd40\tnamespace\tburst',
    ]);
  });

  describe('an entry cut by a newline in the bytes fetched past a Go string', () => {
    // The RunPodSandbox entry as podwire defines it (the definition says which arguments an entry has).
    const full = new Map(definitions);
    full.set('RunPodSandbox_in', {
      event: 'RunPodSandbox_in',
      method: 'RunPodSandbox',
      side: 'in',
      line:
        'p:podwire_1_0/RunPodSandbox_in /usr/bin/containerd:0x19992ca g=%r14:x64 ' +
        'name_len=+8(+0(+0(%di))):u64 name=+0(+0(+0(+0(%di)))):string ' +
        'uid_len=+24(+0(+0(%di))):u64 uid=+0(+16(+0(+0(%di)))):string ' +
        'namespace_len=+40(+0(+0(%di))):u64 namespace=+0(+32(+0(+0(%di)))):string',
    });
    // The recorded entry of the test above, whose fetched bytes held a carriage return where they could hold a
    // newline (the lab's fixture ten-pods-envs.ndjson has two such entries: a line of just the closing quote).
    const whole =
      '           <...>-23351   [000] DBZff 35942.450134: RunPodSandbox_in: (0x1d992ca) g=0xc00018fd40 name_len=11 ' +
      'name="burst-4dsxlburst\n" uid_len=36 uid="cdc80ed4-4fc1-4b9b-856e-c252cb3253dc" namespace_len=5 namespace="burst"';
    const joined = (lines: string[]) => {
      const entries: string[] = [];
      const joiner = new EntryJoiner(full, (raw) => entries.push(raw));
      for (const line of lines) joiner.push(line);
      joiner.flush();
      return entries;
    };
    const enterOf = [
      'cri_enter\t35942450134000\t0\t23351\tRunPodSandbox\tc00018fd40\t3',
      'cri_arg\t35942450134000\t0\t23351\tc00018fd40\tname\tburst-4dsxl',
      'cri_arg\t35942450134000\t0\t23351\tc00018fd40\tuid\tcdc80ed4-4fc1-4b9b-856e-c252cb3253dc',
      'cri_arg\t35942450134000\t0\t23351\tc00018fd40\tnamespace\tburst',
    ];

    it('is joined with the line that holds its rest, and read whole: uid and namespace too', () => {
      const lines = whole.split('\n');
      expect(lines).toHaveLength(2);
      expect(entryCut(lines[0] as string, full)).toBe(true);
      const entries = joined(lines);
      expect(entries).toEqual([whole]);
      expect(traceLineToProbeLines(entries[0] as string, full, tgidOf)).toEqual(enterOf);
    });

    it('is joined when the newline comes in the last string, whose rest is only its closing quote', () => {
      const cutLast = whole.replace('namespace="burst"', 'namespace="burst\n"');
      const entries = joined(cutLast.split('\n'));
      expect(entries).toEqual([cutLast]);
      expect(traceLineToProbeLines(entries[0] as string, full, tgidOf)).toEqual(enterOf);
    });

    it('gives way to the next entry when its rest never comes, as far as it came', () => {
      const [first] = whole.split('\n') as [string];
      const next = whole.replace('burst-4dsxlburst\n', 'burst-5abcd');
      const entries = joined([first, next]);
      expect(entries).toEqual([first, next]);
      expect(traceLineToProbeLines(entries[0] as string, full, tgidOf)).toEqual([
        'cri_enter\t35942450134000\t0\t23351\tRunPodSandbox\tc00018fd40\t1',
        'cri_arg\t35942450134000\t0\t23351\tc00018fd40\tname\tburst-4dsxl',
      ]);
    });

    it('leaves whole entries, and lines that are not entries, as they come', () => {
      const other = 'a line that is not an entry';
      expect(entryCut(whole.replace('\n', '\r'), full)).toBe(false);
      expect(joined([whole.replace('\n', '\r'), other])).toEqual([
        whole.replace('\n', '\r'),
        other,
      ]);
    });
  });

  it('reads an id fetched as 64 bytes, and a failed read as unknown, never as the text "(fault)"', () => {
    const stop = new Map<string, EventDefinition>([
      [
        'StopPodSandbox_in',
        { event: 'StopPodSandbox_in', method: 'StopPodSandbox', side: 'in', line: '' },
      ],
    ]);
    const bytes = [...Buffer.from(id)].map((b) => `0x${b.toString(16)}`).join(',');
    const line = `containerd-25841 [000] DBZff  1762.505060: StopPodSandbox_in: (0x1d992c0) g=0xc0009fe1a0 sandbox_id_len=64 sandbox_id={${bytes}}`;
    expect(traceLineToProbeLines(line, stop, tgidOf)).toEqual([
      'cri_enter\t1762505060000\t16547\t25841\tStopPodSandbox\tc0009fe1a0\t1',
      `cri_arg\t1762505060000\t16547\t25841\tc0009fe1a0\tsandbox_id\t${id}`,
    ]);
    // What the string fetch gave for one StopPodSandbox in ten on the lab before ids were read as 64 bytes.
    const fault = line.replace(/sandbox_id=\{.*\}$/, 'sandbox_id=(fault)');
    expect(traceLineToProbeLines(fault, stop, tgidOf)).toEqual([
      'cri_enter\t1762505060000\t16547\t25841\tStopPodSandbox\tc0009fe1a0\t1',
      'cri_arg\t1762505060000\t16547\t25841\tc0009fe1a0\tsandbox_id\t',
    ]);
  });

  it('says what it cannot read instead of guessing', () => {
    expect(traceLineToProbeLines('# tracer: nop', definitions, tgidOf)).toMatch(
      /^not a uprobe event line/,
    );
    expect(
      traceLineToProbeLines(
        'containerd-1 [000] ..... 1.000001: Other_in: (0x1) g=0x1',
        definitions,
        tgidOf,
      ),
    ).toBe('unknown uprobe event Other_in');
  });
});
