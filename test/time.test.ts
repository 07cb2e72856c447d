// Times in records are RFC 3339 with nanoseconds; the OTLP export and the tests read them back to the nanosecond.
import { describe, expect, it } from 'vitest';
import { epochNanos, rfc3339Nanos } from '../src/time.js';

describe('RFC 3339 times with nanoseconds', () => {
  it('read back exactly what was written, across seconds, days and years', () => {
    let ns = 1_764_000_000_123_456_789n;
    for (let i = 0; i < 5000; i++) {
      ns += BigInt(Math.floor(Math.random() * 2e12));
      expect(epochNanos(rfc3339Nanos(ns))).toBe(ns);
    }
    expect(epochNanos('2026-11-28T10:00:00.000000001Z')).toBe(1_795_860_000_000_000_001n);
  });

  it('take fewer fraction digits, or none, and refuse what is not a UTC time', () => {
    expect(epochNanos('2026-11-28T10:00:00.5Z')).toBe(1_795_860_000_500_000_000n);
    expect(epochNanos('2026-11-28T10:00:00Z')).toBe(1_795_860_000_000_000_000n);
    for (const bad of ['2026-11-28 10:00:00Z', '2026-11-28T10:00:00.00000000xZ', 'yesterday'])
      expect(() => epochNanos(bad)).toThrow(/not an RFC 3339 UTC time/);
  });
});
