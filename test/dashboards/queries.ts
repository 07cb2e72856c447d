// The metrics dashboards/podwire.json queries, read as Grafana reads them; for the model and scrape tests.
import { readFileSync } from 'node:fs';

export type JsonObject = Record<string, unknown>;

export const isObject = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const objects = (value: unknown): JsonObject[] =>
  Array.isArray(value) ? value.filter(isObject) : [];

/** The dashboard as Grafana's import reads it; a JSON syntax error throws with the file named. */
export function loadDashboard(): unknown {
  const file = new URL('../../dashboards/podwire.json', import.meta.url);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as unknown;
  } catch (error) {
    throw new Error(`${file.pathname} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Every panel: the top-level ones, and those a collapsed row holds in its own `panels`. */
export function panelsOf(dashboard: unknown): JsonObject[] {
  if (!isObject(dashboard)) return [];
  return objects(dashboard.panels).flatMap((panel) => [panel, ...objects(panel.panels)]);
}

/** PromQL as written: each panel target's `expr`, and the query of each Prometheus query variable. */
export function promqlExpressions(dashboard: unknown): string[] {
  const exprs = panelsOf(dashboard).flatMap((panel) =>
    objects(panel.targets).flatMap((target) =>
      typeof target.expr === 'string' ? [target.expr] : [],
    ),
  );
  const templating =
    isObject(dashboard) && isObject(dashboard.templating) ? dashboard.templating : {};
  for (const variable of objects(templating.list)) {
    const source = isObject(variable.datasource) ? variable.datasource.type : undefined;
    if (variable.type !== 'query' || source !== 'prometheus') continue;
    // Grafana 10 saves a variable's query as {query, refId}; older versions as the bare string.
    const query = isObject(variable.query) ? variable.query.query : variable.query;
    if (typeof query === 'string') exprs.push(query);
  }
  return exprs;
}

/**
 * Every podwire metric the dashboard queries, as the exporter names it: a histogram's `_bucket`, `_sum` and `_count`
 * series count as the histogram, a counter keeps its `_total`. Sorted, each once.
 */
export function metricNamesQueried(dashboard: unknown): string[] {
  const names = new Set<string>();
  for (const expr of promqlExpressions(dashboard)) {
    // Label values such as job="podwire_agent" are strings, not metrics.
    const code = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
    for (const [name] of code.matchAll(/\bpodwire_[a-zA-Z0-9_:]*/g))
      names.add(name.replace(/_(?:bucket|sum|count)$/, ''));
  }
  return [...names].sort();
}

/** The metrics the dashboard queries that a Prometheus scrape does not have (histograms by their series). */
export function dashboardMetricsMissingFrom(scrape: string): string[] {
  return metricNamesQueried(loadDashboard()).filter(
    (name) => !new RegExp(`^${name}(_bucket|_count|_sum)?\\{`, 'm').test(scrape),
  );
}
