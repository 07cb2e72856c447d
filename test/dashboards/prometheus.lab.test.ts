// The dashboard's PromQL, evaluated by a real Prometheus (Debian's, from .cache/prometheus) that scrapes `podwire trace
// --metrics` on the lab: every expression of dashboards/podwire.json returns data, with Grafana's variables filled as
// Grafana fills them, and the counts it shows agree with the records podwire wrote.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { freePort, isRoot, labUpWithTinyRange, noLabUp, podwire, rootReason } from '../lab/node.js';
import { type Created, endTracedLab, Trace } from '../lab/traced.js';
import { until } from '../until.js';
import { loadDashboard, promqlExpressions } from './queries.js';

const prometheusBinary = '.cache/prometheus/usr/bin/prometheus';
const prometheusMissing = '.cache/prometheus.missing';
/** Why Debian's prometheus is not there to run, or null. */
const whyNoPrometheus = (): string | null => {
  if (existsSync(prometheusBinary)) return null;
  const why = existsSync(prometheusMissing)
    ? readFileSync(prometheusMissing, 'utf8').trim()
    : 'it was never fetched';
  return `Debian's prometheus is missing (${prometheusBinary}): ${why}; run bash scripts/fetch-prometheus.sh (npm test does)`;
};

/** Prometheus scrapes every second, so Grafana's $__rate_interval (four scrape intervals at least) is 4s. */
const scrapeSeconds = 1;
const rateInterval = `${4 * scrapeSeconds}s`;

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

describe.skipIf(!isRoot)(
  `the dashboard's queries on a real Prometheus${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    let scratch = '';
    let trace: Trace | undefined;
    let prometheus: ChildProcess | undefined;
    let api = '';
    let started = 0;
    let metricsTarget = '';
    const recording = () => join(scratch, 'prometheus.ndjson');

    /** An instant query at `time` (s since the epoch); throws what Prometheus said when it refuses the expression. */
    async function query(expr: string, time: number): Promise<Sample[]> {
      const url = `${api}/api/v1/query?${new URLSearchParams({ query: expr, time: String(time) })}`;
      const body = (await (await fetch(url)).json()) as {
        status: string;
        error?: string;
        data?: { resultType: string; result: Sample[] };
      };
      if (body.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${body.error}`);
      return body.data?.result ?? [];
    }

    /** A range query, as Grafana draws a time series panel: whether some point of some series is a number. */
    async function drawsData(expr: string, start: number, end: number): Promise<boolean> {
      const url = `${api}/api/v1/query_range?${new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(scrapeSeconds) })}`;
      const body = (await (await fetch(url)).json()) as {
        status: string;
        error?: string;
        data?: { result: { values: [number, string][] }[] };
      };
      if (body.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${body.error}`);
      return (body.data?.result ?? []).some((series) =>
        series.values.some(([, value]) => Number.isFinite(Number(value))),
      );
    }

    /** The expression as Grafana sends it: its variables filled for "All" nodes over this test's time range. */
    const filled = (expr: string, time: number) =>
      expr
        .replaceAll('$__rate_interval', rateInterval)
        .replaceAll('$__range', `${Math.ceil(time - started)}s`)
        .replaceAll('$instance', '.*');

    beforeAll(async () => {
      const missing = whyNoPrometheus();
      if (missing) throw new Error(missing);
      await noLabUp();
      scratch = mkdtempSync(join(tmpdir(), 'podwire-prometheus-'));
      // Two addresses, so that the third pod fails in host-local: the failure panels get data too.
      const up = await labUpWithTinyRange(scratch);
      if (up.code !== 0) throw new Error(`lab up failed: ${up.stderr}`);
      const metricsPort = await freePort();
      metricsTarget = `127.0.0.1:${metricsPort}`;
      // A collector that is not there: spans are dropped and counted, which the "Spans dropped" panels show.
      const closedPort = await freePort();
      trace = new Trace(recording(), [
        '--metrics',
        metricsTarget,
        '--otlp',
        `http://127.0.0.1:${closedPort}`,
      ]);
      await trace.waitFor(
        'the ready status',
        () => trace?.lines.some((l) => l.kind === 'status' && l.state === 'ready') ?? false,
      );
      const webPort = await freePort();
      api = `http://127.0.0.1:${webPort}`;
      writeFileSync(
        join(scratch, 'prometheus.yml'),
        [
          'global:',
          `  scrape_interval: ${scrapeSeconds}s`,
          `  evaluation_interval: ${scrapeSeconds}s`,
          'scrape_configs:',
          '  - job_name: podwire',
          '    static_configs:',
          `      - targets: ['${metricsTarget}']`,
          '',
        ].join('\n'),
      );
      prometheus = spawn(
        prometheusBinary,
        [
          `--config.file=${join(scratch, 'prometheus.yml')}`,
          `--storage.tsdb.path=${join(scratch, 'tsdb')}`,
          `--web.listen-address=127.0.0.1:${webPort}`,
          '--web.console.templates=/dev/null',
          '--web.console.libraries=/dev/null',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let said = '';
      prometheus.stderr?.on('data', (chunk: Buffer) => {
        said = (said + chunk.toString()).slice(-4000);
      });
      await until(
        `Prometheus to scrape podwire (it said: ${said.slice(-300)})`,
        async () => {
          try {
            return (await query('up{job="podwire"} == 1', Date.now() / 1000)).length === 1;
          } catch {
            return false;
          }
        },
        60_000,
      );
      started = Date.now() / 1000;
    }, 180_000);

    afterAll(async () => {
      if (prometheus && prometheus.exitCode === null) {
        const exited = new Promise((resolve) => prometheus?.once('exit', resolve));
        prometheus.kill('SIGTERM');
        await exited;
      }
      await endTracedLab(trace, recording(), 'prometheus-lab');
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    }, 120_000);

    it('evaluates every expression of the dashboard with data, and its counts agree with the records', async () => {
      // One pod at a time, more than a scrape apart, as on a node where pods come and go: rate() sees a series
      // change only between two of its samples, and a latency series is new with its first pod (below).
      const pods: Created['pods'] = [];
      for (let i = 0; i < 3; i++) {
        const created = await podwire('lab', 'pods', 'create', '--count', '1', '--json');
        pods.push(...(JSON.parse(created.stdout) as Created).pods);
        await new Promise((resolve) => setTimeout(resolve, 1_500 * scrapeSeconds));
      }
      expect(pods.filter((pod) => pod.error)).toHaveLength(1);
      // Deleted the same way.
      for (const pod of pods.filter((each) => !each.error)) {
        const deleted = await podwire('lab', 'pods', 'delete', pod.sandboxId as string);
        expect(deleted.code).toBe(0);
        await new Promise((resolve) => setTimeout(resolve, 1_500 * scrapeSeconds));
      }
      await trace?.waitFor(
        '3 handshakes and 2 teardowns',
        () =>
          (trace?.records('handshake').length ?? 0) >= 3 &&
          (trace?.records('teardown').length ?? 0) >= 2,
      );
      const handshakes = trace?.records('handshake') ?? [];
      const teardowns = trace?.records('teardown') ?? [];
      const outcomes = (records: HandshakeRecord[]) =>
        Object.fromEntries(
          [...new Set(records.map((r) => r.outcome))].map((o) => [
            o,
            records.filter((r) => r.outcome === o).length,
          ]),
        );
      // Until a scrape after the last record is in: the raw counters say what podwire counted.
      await until(
        'Prometheus to have scraped the last record',
        async () => {
          const [total] = await query(
            'sum(podwire_handshakes_total) + sum(podwire_teardowns_total)',
            Date.now() / 1000,
          );
          return Number(total?.value[1]) === handshakes.length + teardowns.length;
        },
        30_000,
      );
      // Two scrapes later, every rate over $__rate_interval still spans the pods.
      await new Promise((resolve) => setTimeout(resolve, 2_000 * scrapeSeconds));
      const time = Date.now() / 1000;

      const expressions = promqlExpressions(loadDashboard());
      expect(expressions.length).toBeGreaterThan(10);
      // Each panel's query over the test's time range: some number to draw (a quantile of no rate is NaN, not data).
      const empty: string[] = [];
      for (const expr of expressions) {
        if (expr.startsWith('label_values(')) continue; // Grafana's, not PromQL: below.
        if (!(await drawsData(filled(expr, time), started, time))) empty.push(expr);
      }
      expect(empty).toEqual([]);

      // The node variable: Grafana's label_values(podwire_handshakes_total, instance), through the series API.
      const labels = (await (
        await fetch(
          `${api}/api/v1/label/instance/values?${new URLSearchParams({ 'match[]': 'podwire_handshakes_total' })}`,
        )
      ).json()) as { data: string[] };
      expect(labels.data).toEqual([metricsTarget]);

      // The stat panels' counts over the range are the records' counts.
      const value = async (expr: string) => {
        const result = await query(filled(expr, time), time);
        return result.map((sample) => ({ labels: sample.metric, value: Number(sample.value[1]) }));
      };
      const [handshakesPanel] = expressions;
      expect(await value(handshakesPanel as string)).toEqual([
        { labels: {}, value: handshakes.length },
      ]);
      const byOutcome = await value('sum by (outcome) (podwire_handshakes_total)');
      expect(
        Object.fromEntries(
          byOutcome.filter((s) => s.value > 0).map((s) => [s.labels.outcome, s.value]),
        ),
      ).toEqual(outcomes(handshakes));
      const teardownsByOutcome = await value('sum by (outcome) (podwire_teardowns_total)');
      expect(
        Object.fromEntries(
          teardownsByOutcome.filter((s) => s.value > 0).map((s) => [s.labels.outcome, s.value]),
        ),
      ).toEqual(outcomes(teardowns));
      // The failed-handshakes panel: one of three.
      const failedShare = expressions.find((e) =>
        e.startsWith('sum(increase(podwire_handshakes_total{outcome="failed"'),
      );
      expect(await value(failedShare as string)).toEqual([
        { labels: {}, value: expect.closeTo(1 / 3, 5) as unknown as number },
      ]);
      // The phase error panel's series: every step the records mark failed (the plugin, IPAM, the CRI call), each
      // counted as often as the records have it.
      const failedSteps = new Map<string, number>();
      for (const record of [...handshakes, ...teardowns])
        for (const phase of record.phases)
          if (phase.error) failedSteps.set(phase.name, (failedSteps.get(phase.name) ?? 0) + 1);
      expect(
        failedSteps.get(handshakes.find((r) => r.outcome === 'failed')?.error?.phase ?? ''),
      ).toBe(1);
      const phaseErrors = await value('sum by (phase) (podwire_phases_total{status="error"}) > 0');
      expect(new Map(phaseErrors.map((s) => [s.labels.phase, s.value]))).toEqual(failedSteps);
    }, 180_000);
  },
);
