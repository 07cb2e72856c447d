// Reads deploy/kubernetes as `kubectl apply -k` would, for the few kustomize features its manifests use, so that
// the lab and the tests take the pod template from the manifest itself instead of restating it in code.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { IPodTemplateSpec } from 'kubernetes-models/v1/PodTemplateSpec';
import { parse, parseAllDocuments } from 'yaml';
import { installFile } from '../install.js';

/** A Kubernetes object as the manifests write it; its schema is checked by test/deploy/manifests.test.ts. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [field: string]: unknown };
  [field: string]: unknown;
}

/** The DaemonSet's pod template as Kubernetes types it; test/deploy/manifests.test.ts validates it against the schema. */
export type PodTemplate = IPodTemplateSpec;

/** What this loader understands of a kustomization.yaml; anything else is refused, never ignored. */
const supportedFields = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'patches']);

/** Kinds that live in no namespace: kustomize's `namespace:` leaves them alone. */
const clusterScoped = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'PriorityClass',
  'StorageClass',
  'PersistentVolume',
]);

/** deploy/kubernetes next to package.json, found from this module both under src/ and dist/src/. */
export function manifestDir(variant: 'base' | 'privileged' = 'base'): string {
  const kustomization = installFile('deploy/kubernetes/kustomization.yaml');
  if (kustomization) {
    const base = dirname(kustomization);
    return variant === 'base' ? base : join(base, 'overlays', variant);
  }
  throw new Error(
    'podwire cannot find its deploy/kubernetes directory: run it from a podwire checkout or reinstall it',
  );
}

/** Every object `kubectl apply -k DIR` would apply, in the order of the resources lists. */
export function loadKustomization(dir: string): KubeObject[] {
  const file = join(dir, 'kustomization.yaml');
  if (!existsSync(file))
    throw new Error(`${dir} has no kustomization.yaml: give a kustomization directory`);
  const kustomization = parseYaml(readFileSync(file, 'utf8'), file);
  if (!isRecord(kustomization) || kustomization.kind !== 'Kustomization')
    throw new Error(`${file} is not a Kustomization: it needs kind: Kustomization`);
  for (const field of Object.keys(kustomization)) {
    if (!supportedFields.has(field))
      throw new Error(
        `${file}: kustomize's ${field} is not supported by podwire's manifest loader: use ${[...supportedFields].join(', ')}, or extend src/deploy/manifests.ts`,
      );
  }
  const objects: KubeObject[] = [];
  for (const resource of list(kustomization.resources, file, 'resources')) {
    if (typeof resource !== 'string' || resource.includes('://'))
      throw new Error(`${file}: resource ${String(resource)} is not a local file or directory`);
    const path = resolve(dir, resource);
    if (!existsSync(path)) throw new Error(`${file}: resource ${resource} does not exist`);
    objects.push(...(statSync(path).isDirectory() ? loadKustomization(path) : loadObjects(path)));
  }
  for (const [index, entry] of list(kustomization.patches, file, 'patches').entries())
    applyPatch(objects, entry, `${file}: patches[${index}]`);
  if (kustomization.namespace !== undefined) {
    if (typeof kustomization.namespace !== 'string')
      throw new Error(`${file}: namespace must be a string`);
    for (const object of objects) {
      // Otherwise the objects would go to a namespace that nothing here creates.
      if (object.kind === 'Namespace' && object.metadata.name !== kustomization.namespace)
        throw new Error(
          `${file}: namespace ${kustomization.namespace} but the Namespace object is ${object.metadata.name}: name them the same`,
        );
      if (!clusterScoped.has(object.kind)) object.metadata.namespace = kustomization.namespace;
    }
  }
  return objects;
}

/** The pod template of the one DaemonSet in the kustomization at DIR: what a kubelet would run on each node. */
export function daemonSetPodTemplate(dir: string = manifestDir()): PodTemplate {
  const daemonSets = loadKustomization(dir).filter((object) => object.kind === 'DaemonSet');
  if (daemonSets.length !== 1)
    throw new Error(
      `${dir} has ${daemonSets.length} DaemonSets: podwire's manifests need exactly one`,
    );
  const spec = daemonSets[0]?.spec;
  if (!isRecord(spec) || !isRecord(spec.template))
    throw new Error(`${dir}: the DaemonSet has no spec.template`);
  return spec.template as PodTemplate;
}

function loadObjects(file: string): KubeObject[] {
  const objects: KubeObject[] = [];
  for (const document of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (document.errors.length > 0)
      throw new Error(`${file} is not valid YAML: ${document.errors[0]?.message.split('\n')[0]}`);
    const object: unknown = document.toJS();
    if (object === null) continue;
    if (
      !isRecord(object) ||
      typeof object.apiVersion !== 'string' ||
      typeof object.kind !== 'string' ||
      !isRecord(object.metadata) ||
      typeof object.metadata.name !== 'string'
    )
      throw new Error(
        `${file}: a document is not a Kubernetes object: it needs apiVersion, kind and metadata.name`,
      );
    objects.push(object as KubeObject);
  }
  return objects;
}

/** A JSON 6902 patch (add, replace, remove) on the objects its target names; a target that names none is an error. */
function applyPatch(objects: KubeObject[], entry: unknown, where: string): void {
  if (!isRecord(entry)) throw new Error(`${where} is not a patch entry`);
  for (const field of Object.keys(entry)) {
    if (field !== 'target' && field !== 'patch')
      throw new Error(
        `${where}: kustomize's patch ${field} is not supported by podwire's manifest loader: give target and an inline patch`,
      );
  }
  const target = entry.target;
  if (!isRecord(target) || typeof entry.patch !== 'string')
    throw new Error(`${where}: a patch needs a target and an inline JSON 6902 patch`);
  for (const field of Object.keys(target)) {
    if (!['group', 'version', 'kind', 'name', 'namespace'].includes(field))
      throw new Error(
        `${where}: kustomize's target ${field} is not supported by podwire's manifest loader: select by group, version, kind, name, namespace`,
      );
  }
  const ops = parseYaml(entry.patch, where);
  if (!Array.isArray(ops))
    throw new Error(
      `${where}: strategic merge patches are not supported by podwire's manifest loader: write a JSON 6902 list of ops`,
    );
  const matches = objects.filter((object) => matchesTarget(object, target));
  if (matches.length === 0)
    throw new Error(`${where}: the target ${JSON.stringify(target)} matches no object`);
  for (const object of matches) {
    for (const op of ops) applyOp(object, op, `${where} on ${object.kind}/${object.metadata.name}`);
  }
}

function matchesTarget(object: KubeObject, target: Record<string, unknown>): boolean {
  const slash = object.apiVersion.indexOf('/');
  const group = slash === -1 ? '' : object.apiVersion.slice(0, slash);
  const version = object.apiVersion.slice(slash + 1);
  return (
    (target.group === undefined || target.group === group) &&
    (target.version === undefined || target.version === version) &&
    (target.kind === undefined || target.kind === object.kind) &&
    (target.name === undefined || target.name === object.metadata.name) &&
    (target.namespace === undefined || target.namespace === object.metadata.namespace)
  );
}

function applyOp(object: KubeObject, op: unknown, where: string): void {
  if (!isRecord(op) || typeof op.op !== 'string' || typeof op.path !== 'string')
    throw new Error(`${where}: each op needs op and path`);
  if (op.op !== 'add' && op.op !== 'replace' && op.op !== 'remove')
    throw new Error(
      `${where}: op ${op.op} is not supported by podwire's manifest loader: use add, replace or remove`,
    );
  if ((op.op === 'add' || op.op === 'replace') && !('value' in op))
    throw new Error(`${where}: ${op.op} ${op.path} has no value`);
  const keys = pointer(op.path, where);
  const last = keys.pop();
  if (last === undefined)
    throw new Error(`${where}: ${op.op} of the whole object is not supported`);
  let parent: unknown = object;
  for (const key of keys) {
    parent = child(parent, key);
    if (parent === undefined) throw new Error(`${where}: ${op.path} does not exist`);
  }
  if (Array.isArray(parent)) {
    const index = last === '-' && op.op === 'add' ? parent.length : Number(last);
    const bound = op.op === 'add' ? parent.length : parent.length - 1;
    if (!/^\d+$|^-$/.test(last) || !Number.isInteger(index) || index > bound)
      throw new Error(`${where}: ${op.path} is not an index of the list`);
    if (op.op === 'add') parent.splice(index, 0, op.value);
    else if (op.op === 'replace') parent[index] = op.value;
    else parent.splice(index, 1);
    return;
  }
  if (!isRecord(parent)) throw new Error(`${where}: ${op.path} does not exist`);
  if (op.op !== 'add' && !(last in parent))
    throw new Error(`${where}: ${op.op} ${op.path}: there is no such field`);
  if (op.op === 'remove') delete parent[last];
  else parent[last] = op.value;
}

/** A JSON pointer (RFC 6901) as its keys: "/a/b~1c/0" is a, b/c, 0. */
function pointer(path: string, where: string): string[] {
  if (!path.startsWith('/')) throw new Error(`${where}: path ${path} does not start with /`);
  return path
    .slice(1)
    .split('/')
    .map((key) => key.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function child(parent: unknown, key: string): unknown {
  if (Array.isArray(parent)) return /^\d+$/.test(key) ? parent[Number(key)] : undefined;
  return isRecord(parent) && Object.hasOwn(parent, key) ? parent[key] : undefined;
}

/** YAML's own error spans several lines with a code frame: its first line is enough to find the mistake. */
function parseYaml(text: string, where: string): unknown {
  try {
    return parse(text);
  } catch (error) {
    throw new Error(`${where} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
}

function list(value: unknown, file: string, field: string): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`${file}: ${field} must be a list`);
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
