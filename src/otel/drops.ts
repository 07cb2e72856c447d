// Why spans are not delivered, and the counters of the export: shared by the export thread and the main thread,
// which must not load OpenTelemetry for them.

/**
 * `queue-full`: pushed out by newer spans while the collector was away or slow; `export-failed`: the collector
 * refused them for good, or podwire stopped first; `rejected`: the collector took the request but rejected them
 * (OTLP partial success).
 */
export const dropReasons = ['queue-full', 'export-failed', 'rejected'] as const;
export type DropReason = (typeof dropReasons)[number];

export const noDrops = (): Record<DropReason, number> => ({
  'queue-full': 0,
  'export-failed': 0,
  rejected: 0,
});

export interface ExportCounters {
  exported: number;
  dropped: Record<DropReason, number>;
}
