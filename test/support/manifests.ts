import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseAllDocuments } from 'yaml';

// Kubernetes manifests checked without a cluster: YAML loading, a minimal kustomize, and KEDA's CRD
// schemas turned into ajv validators. Used by test/unit/deploy.test.ts.

export type Obj = Record<string, unknown>;
export interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Obj;
  data?: Record<string, string>;
  [key: string]: unknown;
}

/** The repository's deploy/ folder. */
export const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url));
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
/** `at(obj, 'spec', 'triggers', 0)`: a path into parsed YAML, undefined where it stops. */
export const at = (v: unknown, ...path: (string | number)[]): unknown =>
  path.reduce<unknown>(
    (cur, k) => (isObj(cur) || Array.isArray(cur) ? (cur as Record<string, unknown>)[k] : undefined),
    v,
  );

/** The KEDA CRDs the manifests are validated against: `KEDA_CRD_DIR`, else the copy in `test/fixtures/keda-crds/`. */
export function kedaCrdDir(): string {
  const candidates = [
    process.env.KEDA_CRD_DIR,
    fileURLToPath(new URL('../fixtures/keda-crds/', import.meta.url)),
  ].filter((d): d is string => Boolean(d));
  const found = candidates.find((d) => existsSync(join(d, 'keda.sh_scaledobjects.yaml')));
  if (!found) {
    throw new Error(
      `KEDA CRDs not found (keda.sh_scaledobjects.yaml); looked in: ${candidates.join(', ')}. Set KEDA_CRD_DIR.`,
    );
  }
  return found;
}

export function parseYaml(file: string): Resource[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).flatMap((doc) => {
    if (doc.errors.length > 0)
      throw new Error(`${relative(DEPLOY, file)}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    return value === null ? [] : [value as Resource];
  });
}

export function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(name) ? [path] : [];
  });
}

// --- CRD validation ----------------------------------------------------------------------------------

/**
 * Turns a CRD's structural schema into JSON Schema ajv enforces the way `kubectl apply --validate=strict`
 * does: unknown fields are errors (unless `x-kubernetes-preserve-unknown-fields`), int-or-string is
 * `anyOf` integer|string, list-type `set` items are unique and `map` lists unique by their keys.
 * CEL rules (`x-kubernetes-validations`) cannot run here: see {@link celRules}.
 */
function structural(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(structural);
  if (!isObj(schema)) return schema;
  const out: Obj = {};
  for (const [k, v] of Object.entries(schema)) out[k] = k === 'x-kubernetes-validations' ? v : structural(v);
  if (out['x-kubernetes-int-or-string'] === true && out.type === undefined && out.anyOf === undefined) {
    out.anyOf = [{ type: 'integer' }, { type: 'string' }];
  }
  if (
    isObj(out.properties) &&
    out.additionalProperties === undefined &&
    out['x-kubernetes-preserve-unknown-fields'] !== true
  ) {
    out.additionalProperties = false;
  }
  if (out['x-kubernetes-list-type'] === 'set') out.uniqueItems = true;
  return out;
}

export function createValidator(crdDir: string): (r: Resource) => string[] {
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, logger: false });
  for (const k of [
    'x-kubernetes-int-or-string',
    'x-kubernetes-preserve-unknown-fields',
    'x-kubernetes-list-type',
  ]) {
    ajv.addKeyword(k);
  }
  ajv.addKeyword({ keyword: 'x-kubernetes-map-type' });
  ajv.addKeyword({ keyword: 'x-kubernetes-validations' });
  ajv.addKeyword({
    keyword: 'x-kubernetes-list-map-keys',
    type: 'array',
    schemaType: 'array',
    validate: (keys: string[], data: unknown[]) => {
      const seen = data.map((item) => JSON.stringify(keys.map((key) => at(item, key))));
      return new Set(seen).size === seen.length;
    },
  });
  // Parsed and compiled on first use: the ScaledJob CRD embeds a whole pod template (650 kB).
  const schemas = new Map<string, () => ValidateFunction | undefined>();
  for (const file of readdirSync(crdDir).filter((f) => f.endsWith('.yaml'))) {
    const text = readFileSync(join(crdDir, file), 'utf8');
    const kind = /^\s+names:\n(?:\s+\w+:.*\n)*?\s+kind: (\w+)$/m.exec(text)?.[1];
    const group = /^\s+group: (\S+)$/m.exec(text)?.[1];
    if (!kind || !group) throw new Error(`${file}: no spec.group or spec.names.kind`);
    const compiled = new Map<string, ValidateFunction>();
    let parsed: Obj[] | undefined;
    const versions = () => (parsed ??= at(parseYaml(join(crdDir, file))[0], 'spec', 'versions') as Obj[]);
    // Version entries are the only `name:` keys four spaces deep in a CRD.
    for (const name of text.matchAll(/^ {4}name: (v\w+)$/gm)) {
      schemas.set(`${group}/${name[1]}|${kind}`, () => {
        const version = versions().find((v) => v.name === name[1]);
        if (!version) return undefined;
        const schema = structural(at(version, 'schema', 'openAPIV3Schema')) as Obj;
        const key = String(name[1]);
        if (!compiled.has(key))
          compiled.set(key, ajv.compile({ ...schema, required: ['apiVersion', 'kind', 'metadata', 'spec'] }));
        return compiled.get(key);
      });
    }
  }
  const fmt = (e: ErrorObject) =>
    `${e.instancePath || '/'} ${e.message ?? ''}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`;
  return (r) => {
    const validate = schemas.get(`${r.apiVersion}|${r.kind}`)?.();
    if (!validate) return [`no CRD for ${r.apiVersion} ${r.kind}`];
    const errors = validate(r) ? [] : (validate.errors ?? []).map(fmt);
    if (typeof r.metadata?.name !== 'string' || r.metadata.name === '')
      errors.push('/metadata/name is required');
    return [...errors, ...celRules(r)];
  };
}

/** The CRDs' CEL rules and KEDA's admission-webhook checks, hand-written. */
function celRules(r: Resource): string[] {
  if (r.kind !== 'ScaledObject') return [];
  const errors: string[] = [];
  const min = at(r, 'spec', 'minReplicaCount');
  const max = at(r, 'spec', 'maxReplicaCount') ?? 100;
  if (typeof min === 'number' && typeof max === 'number' && min > max) {
    errors.push('minReplicaCount must be less than or equal to maxReplicaCount');
  }
  const triggers = (at(r, 'spec', 'triggers') ?? []) as Obj[];
  if (
    at(r, 'spec', 'fallback') !== undefined &&
    triggers.some((t) => (t.metricType ?? 'AverageValue') !== 'AverageValue')
  ) {
    errors.push('fallback needs every trigger to use metricType AverageValue');
  }
  return errors;
}

// --- a minimal kustomize: resources, namespace, images, ConfigMap data patches -------------------------

export interface Build {
  resources: Resource[];
  files: Set<string>;
}

export function build(dir: string): Build {
  const k = parseYaml(join(dir, 'kustomization.yaml'))[0] as Obj;
  const files = new Set([join(dir, 'kustomization.yaml')]);
  const resources: Resource[] = [];
  for (const entry of (k.resources ?? []) as string[]) {
    const path = resolve(dir, entry);
    if (statSync(path).isDirectory()) {
      const sub = build(path);
      resources.push(...sub.resources);
      sub.files.forEach((f) => files.add(f));
    } else {
      resources.push(...parseYaml(path));
      files.add(path);
    }
  }
  for (const patch of (k.patches ?? []) as { path: string }[]) {
    const path = resolve(dir, patch.path);
    files.add(path);
    for (const p of parseYaml(path)) {
      const target = resources.find((r) => r.kind === p.kind && r.metadata.name === p.metadata.name);
      if (!target)
        throw new Error(`${relative(DEPLOY, path)} patches a ${p.kind} ${p.metadata.name} that is not there`);
      if (p.kind !== 'ConfigMap') throw new Error(`this test applies ConfigMap patches only, not ${p.kind}`);
      target.data = { ...target.data, ...p.data };
    }
  }
  for (const r of resources)
    if (typeof k.namespace === 'string' && r.kind !== 'Namespace') r.metadata.namespace = k.namespace;
  for (const image of (k.images ?? []) as { name: string; newName?: string; newTag?: string }[]) {
    for (const c of resources.flatMap(
      (r) => (at(r, 'spec', 'template', 'spec', 'containers') ?? []) as Obj[],
    )) {
      if (c.image === image.name) c.image = `${image.newName ?? image.name}:${image.newTag ?? 'latest'}`;
    }
  }
  return { resources, files };
}
