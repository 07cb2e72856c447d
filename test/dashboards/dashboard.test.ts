// dashboards/podwire.json checked as someone importing it into Grafana needs it, queries on podwire's metrics.
import { describe, expect, it } from 'vitest';
import {
  isObject,
  type JsonObject,
  loadDashboard,
  metricNamesQueried,
  panelsOf,
  promqlExpressions,
} from './queries.js';

/** The names podwire exports (src/sinks/metrics.ts, as the Prometheus exporter serves them). */
const exportedMetrics = [
  'podwire_events_late_total',
  'podwire_events_lost_total',
  'podwire_handshake_duration_seconds',
  'podwire_handshakes_total',
  'podwire_phase_duration_seconds',
  'podwire_phases_total',
  'podwire_probe_restarts_total',
  'podwire_spans_dropped_total',
  'podwire_teardowns_total',
];

const panelTypes = new Set([
  'timeseries',
  'table',
  'stat',
  'bargauge',
  'row',
  'text',
  'piechart',
  'heatmap',
  'gauge',
]);

const list = (value: unknown): JsonObject[] => (Array.isArray(value) ? value.filter(isObject) : []);
const text = (value: unknown): string => (typeof value === 'string' ? value : '');
/** `${name}` as the dashboard writes a variable in a data source or a link. */
const ref = (name: string) => `\${${name}}`;
const nameOf = (panel: JsonObject) => `panel ${String(panel.id)} "${text(panel.title)}"`;

const dashboard = loadDashboard();
const model: JsonObject = isObject(dashboard) ? dashboard : {};
const panels = panelsOf(dashboard);
const visible = panels.filter((panel) => panel.type !== 'row');
const variables = list(isObject(model.templating) ? model.templating.list : undefined);
const variable = (name: string) => variables.find((v) => v.name === name);

/** `$name`, `${name}`, `${name:format}`, `${name.field}` and `[[name]]`, as Grafana interpolates them. */
function variablesUsed(value: unknown, where: string, found: { name: string; where: string }[]) {
  if (typeof value === 'string') {
    const pattern = /\$\{(\w+)[^}]*\}|\[\[(\w+)[^\]]*\]\]|\$(\w+)/g;
    for (const match of value.matchAll(pattern))
      found.push({ name: match[1] ?? match[2] ?? match[3] ?? '', where });
  } else if (Array.isArray(value)) {
    value.forEach((item, i) => {
      variablesUsed(item, `${where}[${i}]`, found);
    });
  } else if (isObject(value)) {
    for (const [key, item] of Object.entries(value)) variablesUsed(item, `${where}.${key}`, found);
  }
  return found;
}

type Box = { x: number; y: number; w: number; h: number };
const gridOf = (panel: JsonObject): Box => (isObject(panel.gridPos) ? panel.gridPos : {}) as Box;
const overlap = (a: Box, b: Box) =>
  a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

describe('dashboards/podwire.json, imported into Grafana', () => {
  it('is a dashboard model: a title, the uid podwire, a numeric schemaVersion and panels', () => {
    expect(isObject(dashboard)).toBe(true);
    expect(model.title).toBe('podwire — pod network handshakes');
    expect(model.uid).toBe('podwire');
    expect(model.schemaVersion).toBeTypeOf('number');
    expect(Array.isArray(model.panels)).toBe(true);
    expect(visible.length).toBeGreaterThan(0);
  });

  it('gives every panel, rows and what they hold included, a unique numeric id and a type Grafana ships', () => {
    const ids = panels.map((panel) => panel.id);
    for (const id of ids) expect(Number.isInteger(id), `panel id ${String(id)}`).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels) expect(panelTypes, nameOf(panel)).toContain(panel.type);
  });

  it('places every panel on the 24-column grid in whole cells, none over another', () => {
    for (const panel of panels) {
      const { x, y, w, h } = gridOf(panel);
      for (const n of [x, y, w, h]) expect(Number.isInteger(n), nameOf(panel)).toBe(true);
      expect(x >= 0 && y >= 0 && w >= 1 && h >= 1, nameOf(panel)).toBe(true);
      expect(x + w, nameOf(panel)).toBeLessThanOrEqual(24);
    }
    // Open rows lay their panels out beside the rest; a collapsed row's panels share only its own space.
    const layouts = [list(model.panels), ...list(model.panels).map((panel) => list(panel.panels))];
    for (const layout of layouts)
      layout.forEach((a, i) => {
        for (const b of layout.slice(i + 1))
          expect(overlap(gridOf(a), gridOf(b)), `${nameOf(a)} and ${nameOf(b)} overlap`).toBe(
            false,
          );
      });
  });

  it("defines every variable it uses, Grafana's own $__ variables aside", () => {
    const defined = new Set(variables.map((v) => v.name));
    const used = variablesUsed(model, 'dashboard', []);
    expect(used.map((u) => u.name)).toContain('instance');
    const undefinedVariables = used.filter((u) => !u.name.startsWith('__') && !defined.has(u.name));
    expect(undefinedVariables).toEqual([]);
  });

  it('takes its data sources from variables, so that it imports into any Grafana', () => {
    expect(variable('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(variable('traces')).toMatchObject({ type: 'datasource', query: 'jaeger' });
    expect(variable('instance')).toMatchObject({
      type: 'query',
      multi: true,
      includeAll: true,
      datasource: { type: 'prometheus', uid: ref('datasource') },
    });
    const sourceOf = { prometheus: ref('datasource'), jaeger: ref('traces') } as Record<
      string,
      string
    >;
    for (const panel of visible)
      for (const ref of [panel.datasource, ...list(panel.targets).map((t) => t.datasource)]) {
        expect(isObject(ref), nameOf(panel)).toBe(true);
        const { type, uid } = ref as JsonObject;
        expect(uid, `${nameOf(panel)} (${text(type)})`).toBe(sourceOf[text(type)]);
      }
  });

  it('gives every Prometheus query a refId and an expr, each podwire series filtered to the chosen nodes', () => {
    const prometheusPanels = visible.filter(
      (panel) => isObject(panel.datasource) && panel.datasource.type === 'prometheus',
    );
    expect(prometheusPanels.length).toBeGreaterThan(0);
    for (const panel of prometheusPanels) {
      const targets = list(panel.targets);
      expect(targets.length, nameOf(panel)).toBeGreaterThan(0);
      for (const target of targets) {
        expect(text(target.refId), nameOf(panel)).not.toBe('');
        expect(text(target.expr), nameOf(panel)).not.toBe('');
      }
      expect(new Set(targets.map((t) => t.refId)).size, nameOf(panel)).toBe(targets.length);
    }
    const exprs = promqlExpressions(dashboard).filter((expr) => !expr.startsWith('label_values'));
    for (const expr of exprs)
      for (const [series, selector] of expr.matchAll(/podwire_\w+(\{[^}]*\})?/g))
        expect(selector ?? '', `${series} in ${expr}`).toContain('instance=~"$instance"');
  });

  it('tells the reader of every panel what to look for, and in which unit', () => {
    for (const panel of visible) {
      expect(text(panel.description).length, nameOf(panel)).toBeGreaterThan(80);
      if (panel.type === 'table' || panel.type === 'heatmap') continue;
      const defaults = isObject(panel.fieldConfig) ? panel.fieldConfig.defaults : undefined;
      expect(isObject(defaults) ? defaults.unit : undefined, nameOf(panel)).toBeTypeOf('string');
    }
  });

  it('queries every metric podwire exports, and only those', () => {
    const queried = metricNamesQueried(dashboard);
    expect(queried.filter((name) => !exportedMetrics.includes(name))).toEqual([]);
    expect(queried).toEqual(exportedMetrics);
  });

  it('lists the slowest recent handshakes from the traces source, slowest first, each linked to its trace', () => {
    const table = visible.find((panel) => panel.type === 'table');
    expect(table).toBeDefined();
    if (!table) return;
    expect(table.datasource).toEqual({ type: 'jaeger', uid: ref('traces') });
    expect(list(table.targets)).toEqual([
      expect.objectContaining({
        refId: 'A',
        queryType: 'search',
        service: 'podwire',
        operation: 'pod network handshake',
        minDuration: '$slow',
        limit: 20,
      }),
    ]);
    expect(list(table.transformations)).toContainEqual({
      id: 'sortBy',
      options: expect.objectContaining({ sort: [{ field: 'Duration', desc: true }] }),
    });
    const overrides = list(isObject(table.fieldConfig) ? table.fieldConfig.overrides : undefined);
    const traceId = overrides.find(
      (o) => isObject(o.matcher) && o.matcher.id === 'byName' && o.matcher.options === 'Trace ID',
    );
    const links = list(traceId?.properties).find((p) => p.id === 'links')?.value;
    expect(list(links)).toHaveLength(1);
    const url = text(list(links)[0]?.url);
    expect(url.startsWith('/explore?')).toBe(true);
    expect(url).toContain(`"datasource":"${ref('traces')}"`);
    expect(url).toContain(`"query":"${ref('__value.raw')}"`);
    // The link's JSON must survive Grafana's interpolation: every placeholder stands for a plain string.
    const panes = new URLSearchParams(url.slice('/explore?'.length)).get('panes') ?? '';
    expect(() => JSON.parse(panes)).not.toThrow();
    expect(text(table.description)).toMatch(/trace ID.*open/i);
  });
});

describe('metricNamesQueried', () => {
  it("counts a histogram's series as the histogram, keeps a counter's _total, skips label values", () => {
    const queries = {
      panels: [
        {
          type: 'row',
          panels: [
            { targets: [{ expr: 'sum(rate(podwire_a_seconds_bucket[5m])) by (le)' }] },
            { targets: [{ expr: 'podwire_a_seconds_sum / podwire_a_seconds_count' }] },
          ],
        },
        { targets: [{ expr: 'rate(podwire_b_total{job="podwire_exporter"}[1m])' }] },
        { targets: [{ refId: 'A', query: 'podwire_not_promql_total' }] },
      ],
      templating: {
        list: [
          {
            type: 'query',
            datasource: { type: 'prometheus', uid: ref('datasource') },
            query: { query: 'label_values(podwire_c_total, instance)', refId: 'V' },
          },
        ],
      },
    };
    expect(metricNamesQueried(queries)).toEqual([
      'podwire_a_seconds',
      'podwire_b_total',
      'podwire_c_total',
    ]);
    expect(metricNamesQueried(null)).toEqual([]);
  });
});
