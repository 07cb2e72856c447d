// Which CNI plugins the node's runtime can run: the types its CNI network configs name, found from containerd's own
// config. Every uprobe in a plugin costs about three RCU grace periods to detach (docs/architecture.md), so podwire
// probes these plugins only, instead of every file in the CNI bin dirs; when it cannot be sure, it probes them all.
import { readdirSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { rootOf, runningRuntimes } from './discover.js';

/** A TOML value as far as podwire reads one: strings and arrays of strings; anything else only as "there". */
export type TomlValue = string | string[] | { other: string };

/**
 * The keys of a TOML document by their full dotted path (segments joined with NUL, quotes removed), or one line
 * on what could not be read. Enough of TOML for containerd's config: tables, dotted and quoted keys, basic and
 * literal strings (also multi-line), arrays, inline tables; numbers, booleans and dates are kept as `other`.
 */
export function readToml(text: string): Map<string, TomlValue> | string {
  const values = new Map<string, TomlValue>();
  let at = 0;
  let table: string[] = [];
  const line = () => text.slice(0, at).split('\n').length;
  const fail = (what: string) => `line ${line()}: ${what}`;
  const skipBlank = (newlines: boolean) => {
    for (;;) {
      const char = text[at];
      if (char === ' ' || char === '\t' || char === '\r' || (newlines && char === '\n')) at++;
      else if (char === '#') while (at < text.length && text[at] !== '\n') at++;
      else return;
    }
  };
  const basicString = (): string | null => {
    const start = at++;
    while (at < text.length && text[at] !== '"' && text[at] !== '\n')
      at += text[at] === '\\' ? 2 : 1;
    if (text[at] !== '"') return null;
    at++;
    try {
      return JSON.parse(text.slice(start, at)) as string;
    } catch {
      return null;
    }
  };
  const keySegment = (): string | null => {
    skipBlank(false);
    const char = text[at];
    if (char === '"') return basicString();
    if (char === "'") {
      const end = text.indexOf("'", at + 1);
      if (end < 0 || text.slice(at, end).includes('\n')) return null;
      const segment = text.slice(at + 1, end);
      at = end + 1;
      return segment;
    }
    const bare = /^[A-Za-z0-9_-]+/.exec(text.slice(at, at + 200));
    if (!bare) return null;
    at += bare[0].length;
    return bare[0];
  };
  const keyPath = (): string[] | null => {
    const path: string[] = [];
    for (;;) {
      const segment = keySegment();
      if (segment === null) return null;
      path.push(segment);
      skipBlank(false);
      if (text[at] !== '.') return path;
      at++;
    }
  };
  const value = (path: string[]): string | null => {
    const char = text[at];
    const put = (v: TomlValue) => values.set(path.join('\0'), v);
    for (const quote of ['"""', "'''"]) {
      if (!text.startsWith(quote, at)) continue;
      const end = text.indexOf(quote, at + 3);
      if (end < 0) return fail(`a multi-line string without its closing ${quote}`);
      // Escapes in a multi-line basic string are not undone: podwire needs none of them.
      put(text.slice(at + 3, end).replace(/^\r?\n/, ''));
      at = end + 3;
      while (text[at] === quote[0]) at++;
      return null;
    }
    if (char === '"') {
      const s = basicString();
      if (s === null) return fail('a string podwire cannot read');
      put(s);
      return null;
    }
    if (char === "'") {
      const end = text.indexOf("'", at + 1);
      if (end < 0 || text.slice(at, end).includes('\n'))
        return fail('a literal string without its end');
      put(text.slice(at + 1, end));
      at = end + 1;
      return null;
    }
    if (char === '[') {
      at++;
      const items: string[] = [];
      let strings = true;
      for (;;) {
        skipBlank(true);
        if (text[at] === ']') {
          at++;
          break;
        }
        const item: string[] = [...path, String(items.length)];
        const problem = value(item);
        if (problem) return problem;
        const read = values.get(item.join('\0'));
        if (typeof read === 'string') items.push(read);
        else strings = false;
        skipBlank(true);
        if (text[at] === ',') at++;
        else if (text[at] !== ']') return fail('an array without its closing ]');
      }
      put(strings ? items : { other: 'array' });
      return null;
    }
    if (char === '{') {
      at++;
      for (;;) {
        skipBlank(false);
        if (text[at] === '}') {
          at++;
          break;
        }
        const key = keyPath();
        if (!key) return fail('a key podwire cannot read in an inline table');
        skipBlank(false);
        if (text[at] !== '=') return fail('an inline table key without =');
        at++;
        skipBlank(false);
        const problem = value([...path, ...key]);
        if (problem) return problem;
        skipBlank(false);
        if (text[at] === ',') at++;
        else if (text[at] !== '}') return fail('an inline table without its closing }');
      }
      put({ other: 'table' });
      return null;
    }
    const scalar = /^[^\s,\]}#]+/.exec(text.slice(at, at + 200));
    if (!scalar) return fail('a key without a value');
    put({ other: scalar[0] });
    at += scalar[0].length;
    return null;
  };
  for (;;) {
    skipBlank(true);
    if (at >= text.length) return values;
    if (text[at] === '[') {
      const array = text[at + 1] === '[';
      at += array ? 2 : 1;
      const path = keyPath();
      skipBlank(false);
      if (!path || !text.startsWith(array ? ']]' : ']', at))
        return fail('a table header podwire cannot read');
      at += array ? 2 : 1;
      // The keys of an array of tables are kept apart from the plain table's of the same name.
      table = array ? [...path, '[]'] : path;
    } else {
      const key = keyPath();
      skipBlank(false);
      if (!key || text[at] !== '=')
        return fail('a line that is neither a table header nor key = value');
      at++;
      skipBlank(false);
      const problem = value([...table, ...key]);
      if (problem) return problem;
    }
    skipBlank(false);
    if (at < text.length && text[at] !== '\n') return fail('more after a value on the same line');
  }
}

/** Where a containerd looks for CNI network configs and plugins, read from its config. */
export interface RuntimeCni {
  /** The config file as containerd names it; null when it runs on its built-in defaults (no file). */
  config: string | null;
  /** conf_dir, then any runtime handler's own cni_conf_dir. */
  confDirs: string[];
  /** bin_dir / bin_dirs as the config gives them (empty: containerd's built-in default). */
  binDirs: string[];
}

/** containerd's own default, in 1.6 and 2.x alike. */
export const defaultContainerdConfig = '/etc/containerd/config.toml';
export const defaultCniConfDir = '/etc/cni/net.d';

/**
 * The CRI plugin's table in each config version: 3 (containerd 2.x), 2 (1.x; 2.x converts it), 1 or none (the
 * oldest 1.x shape).
 */
const criTable: Record<string, string[]> = {
  '3': ['plugins', 'io.containerd.cri.v1.runtime'],
  '2': ['plugins', 'io.containerd.grpc.v1.cri'],
  '1': ['plugins', 'cri'],
};

/** The config file a containerd was started with: `--config FILE`, `-c FILE` (or `=FILE`), else the default. */
export function configPathOf(argv: string[]): string {
  for (const [index, arg] of argv.entries()) {
    const joined = /^--?(?:config|c)=(.*)$/.exec(arg);
    if (joined?.[1] !== undefined) return joined[1];
    if (arg === '--config' || arg === '-c' || arg === '-config')
      return argv[index + 1] ?? defaultContainerdConfig;
  }
  return defaultContainerdConfig;
}

/** Where containerd's CNI settings are, from its config's text (null: no file), or why podwire cannot tell. */
export function containerdCni(text: string | null, config: string): RuntimeCni | string {
  if (text === null) return { config: null, confDirs: [defaultCniConfDir], binDirs: [] };
  const values = readToml(text);
  if (typeof values === 'string') return `${config} is not TOML podwire can read (${values})`;
  const get = (path: string[]) => values.get(path.join('\0'));
  const imports = get(['imports']);
  if (Array.isArray(imports) ? imports.length > 0 : imports !== undefined)
    return `${config} imports other files, which podwire does not read`;
  const version = get(['version']);
  const versionText = typeof version === 'object' && !Array.isArray(version) ? version.other : '1';
  const table = criTable[versionText];
  if (!table) return `${config} has config version ${versionText}, which podwire does not know`;
  const cni = [...table, 'cni'];
  const confDir = get([...cni, 'conf_dir']);
  if (confDir !== undefined && typeof confDir !== 'string')
    return `${config}: conf_dir of [${cni.join('.')}] is not a string`;
  const confDirs = [confDir || defaultCniConfDir];
  // A runtime handler may have networks of its own (cni_conf_dir under containerd.runtimes.NAME).
  const runtimes = [...table, 'containerd', 'runtimes'].join('\0');
  for (const [key, v] of values) {
    if (!key.startsWith(`${runtimes}\0`) || !key.endsWith('\0cni_conf_dir')) continue;
    if (key.split('\0').length !== table.length + 4) continue;
    if (typeof v !== 'string') return `${config}: a runtime's cni_conf_dir is not a string`;
    if (v !== '' && !confDirs.includes(v)) confDirs.push(v);
  }
  const binDirs: string[] = [];
  for (const key of ['bin_dir', 'bin_dirs']) {
    const v = get([...cni, key]);
    if (typeof v === 'string' && v !== '') binDirs.push(v);
    if (Array.isArray(v)) binDirs.push(...v);
  }
  return { config, confDirs, binDirs: [...new Set(binDirs)] };
}

/** The extensions libcni loads from a conf dir. */
export const confExtensions = ['.conf', '.conflist', '.json'];

/**
 * Plugins that run other plugins from their own configs or from files of their own (a delegate): the configs do
 * not name what runs, so podwire probes every plugin when one of these is named.
 */
export const metaPlugins = ['multus', 'multus-shim', 'flannel', 'genie', 'danm'];

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** The plugin types one network config (.conf or .conflist) names: each plugin's type and its ipam type. */
export function pluginTypesOf(text: string, file: string): string[] | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return `${file} is not JSON (${(error as Error).message})`;
  }
  if (!isObject(parsed)) return `${file} is not a JSON object`;
  const plugins = 'plugins' in parsed ? parsed.plugins : [parsed];
  if (!Array.isArray(plugins)) return `${file}: "plugins" is not a list`;
  const types: string[] = [];
  for (const [index, plugin] of plugins.entries()) {
    const where = 'plugins' in parsed ? `${file}: plugins[${index}]` : file;
    if (!isObject(plugin) || typeof plugin.type !== 'string' || plugin.type === '')
      return `${where} has no "type"`;
    const named = [plugin.type];
    if (plugin.ipam !== undefined) {
      if (!isObject(plugin.ipam) || typeof plugin.ipam.type !== 'string' || plugin.ipam.type === '')
        return `${where}: its "ipam" has no "type"`;
      named.push(plugin.ipam.type);
    }
    for (const type of named) {
      if (!/^[\w.+-]+$/.test(type)) return `${where}: plugin type "${type}" is not a file name`;
      if (metaPlugins.includes(type))
        return `${where}: ${type} runs other plugins from configs of its own`;
    }
    if ('delegate' in plugin || 'delegates' in plugin)
      return `${where}: ${plugin.type} delegates to plugins its own config names`;
    types.push(...named);
  }
  return types;
}

/** What to probe: the plugins of these types, or every plugin, and why. */
export type PluginChoice = (
  | { types: string[]; configs: string[] }
  /** noRuntime: no containerd runs (stopped, restarting), which says nothing of what it runs once back. */
  | { all: string; noRuntime?: boolean }
) & {
  /** The conf dirs read (or to read), as podwire opens them: watched, so that a new network is probed in time. */
  confDirs: string[];
};

/** Reads a file under a root (the runtime's); null when it is not there; throws on any other error. */
export type ReadFile = (path: string) => string | null;
/** A directory's entries; throws when it cannot be read (a missing conf dir is one with no networks). */
export type ReadDir = (path: string) => string[];

/**
 * The plugin types a containerd's networks name, from its command line and its files (seen from its own root):
 * loopback always (containerd runs it for every pod), plus every type its configs name. Or why podwire cannot tell.
 */
export function runtimePluginTypes(
  argv: string[],
  read: ReadFile,
  list: ReadDir,
): { types: string[]; configs: string[]; confDirs: string[] } | string {
  const config = configPathOf(argv);
  if (!config.startsWith('/')) return `containerd's --config ${config} is not an absolute path`;
  let text: string | null;
  try {
    text = read(config);
  } catch (error) {
    return `cannot read ${config}: ${(error as NodeJS.ErrnoException).code ?? error}`;
  }
  const cni = containerdCni(text, config);
  if (typeof cni === 'string') return cni;
  const types = new Set(['loopback']);
  const configs: string[] = [];
  for (const dir of cni.confDirs) {
    if (!dir.startsWith('/')) return `CNI conf dir ${dir} of ${config} is not an absolute path`;
    let names: string[];
    try {
      names = list(dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // No conf dir yet: no network, no pod gets one; the conf dir is watched for the first.
      if (code === 'ENOENT') continue;
      return `cannot read the CNI conf dir ${dir}: ${code ?? error}`;
    }
    for (const name of names.filter((n) => confExtensions.some((e) => n.endsWith(e))).sort()) {
      const file = posix.join(dir, name);
      let body: string | null;
      try {
        body = read(file);
      } catch (error) {
        return `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`;
      }
      if (body === null) continue;
      const named = pluginTypesOf(body, file);
      if (typeof named === 'string') return named;
      for (const type of named) types.add(type);
      configs.push(file);
    }
  }
  return { types: [...types].sort(), configs, confDirs: cni.confDirs };
}

/** The processes whose configs decide: containerds running from `binaries` (every running one when empty). */
export interface RuntimeProcess {
  pid: number;
  binary: string;
}

/** What plugins the runtimes running from `binaries` (all running containerds when empty) can run. */
export function choosePlugins(binaries: string[], processes?: RuntimeProcess[]): PluginChoice {
  const running =
    processes ??
    runningRuntimes().flatMap((runtime) =>
      runtime.pids.map((pid) => ({ pid, binary: runtime.binary })),
    );
  const chosen =
    binaries.length === 0 ? running : running.filter((p) => binaries.includes(p.binary));
  if (chosen.length === 0)
    return {
      all:
        binaries.length === 0
          ? 'no containerd runs, so its CNI configs cannot be read'
          : `no containerd runs from ${binaries.join(', ')}, so its CNI configs cannot be read`,
      noRuntime: true,
      confDirs: [],
    };
  const types = new Set<string>();
  const configs: string[] = [];
  const confDirs: string[] = [];
  let why: string | null = null;
  for (const { pid } of chosen) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(1, -1);
    } catch (error) {
      why ??= `cannot read the command line of containerd ${pid}: ${(error as NodeJS.ErrnoException).code ?? error}`;
      continue;
    }
    const root = rootOf(pid);
    const read: ReadFile = (path) => {
      try {
        return readFileSync(`${root}${path}`, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw error;
      }
    };
    const found = runtimePluginTypes(argv, read, (dir) => readdirSync(`${root}${dir}`));
    if (typeof found === 'string') {
      why ??= `containerd ${pid}: ${found}`;
      continue;
    }
    for (const type of found.types) types.add(type);
    configs.push(...found.configs.filter((c) => !configs.includes(c)));
    for (const dir of found.confDirs)
      if (!confDirs.includes(`${root}${dir}`)) confDirs.push(`${root}${dir}`);
  }
  if (why) return { all: why, confDirs };
  return { types: [...types].sort(), configs, confDirs };
}
