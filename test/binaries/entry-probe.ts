// Checks an entry probe podwire chose against objdump's disassembly of the real binary.
// It must sit on a Go function's first instruction or on the conditional jump of its stack check, with nothing before
// that jump changing what an entry probe reads (argument registers, the stack pointer, R14).
import { expect } from 'vitest';
import { type ElfImage, vaddrToFileOffset } from '../../src/binaries/elf.js';
import { disassemble, type GoFunction } from '../../src/binaries/gosym.js';

/** Returns the instruction objdump shows at the probe, e.g. `jbe 0x4e23a0`. */
export async function expectEntryProbe(
  binary: string,
  elf: ElfImage,
  fn: GoFunction,
  probeOffset: number,
): Promise<string> {
  const lines = await disassemble(binary, { ...fn, end: Math.min(fn.end, fn.entry + 64) });
  if (!Array.isArray(lines)) throw new Error(lines.error);
  const at = lines.findIndex((line) => vaddrToFileOffset(elf, line.address) === probeOffset);
  expect(
    at,
    `${fn.name}: probe at file offset 0x${probeOffset.toString(16)} is an instruction's start`,
  ).toBeGreaterThanOrEqual(0);
  const text = lines[at]?.text ?? '';
  if (at > 0) {
    expect(text, `${fn.name}: a probe past the entry is on a conditional jump`).toMatch(
      /^j(?!mp)[a-z]+\s/,
    );
    // AT&T syntax: the destination is the last operand; a cmp writes only flags.
    for (const before of lines.slice(0, at))
      expect(before.text, `${fn.name}: ${before.text} before the probe`).toMatch(
        /^(cmp\s|(lea|mov|sub)\s.*,%r12$)/,
      );
  }
  return text;
}
