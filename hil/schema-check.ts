/**
 * A small JSON Schema checker for the subset hil/scenario-schema.ts uses (draft 2020-12 keywords:
 * type, const, enum, pattern, length and number bounds, items, properties, required, closed
 * objects, oneOf, local $ref). The hil binary ships to users without ajv (a devDependency), so the
 * scenario loader checks with this; test/hil-scenario.test.ts runs ajv on the same schema and the
 * same documents and requires the same verdicts. A keyword it does not know is a thrown Error:
 * the schema can never grow a rule this checker would silently skip.
 *
 * Errors carry a path (`expect.verison`, `steps[2].upload.counter`) and, for a misspelt key or enum
 * value, the nearest allowed one.
 */
import { type JsonSchema } from './scenario-schema.js';

export type SchemaError = { readonly path: string; readonly message: string };

const KNOWN = new Set([
  '$schema',
  '$id',
  '$defs',
  '$ref',
  'title',
  'description',
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'minItems',
  'maxItems',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'minLength',
  'maxLength',
  'pattern',
  'enum',
  'const',
  'oneOf',
]);

/** Every violation of `schema` by `value`, with paths; [] when it conforms. */
export function checkSchema(schema: JsonSchema, value: unknown): SchemaError[] {
  return check(schema, schema, value, '');
}

export function resolveRef(root: JsonSchema, s: JsonSchema): JsonSchema {
  for (const k of Object.keys(s)) if (!KNOWN.has(k)) throw new Error(`schema keyword ${k} is not supported by hil/schema-check.ts`);
  if (s.$ref === undefined) return s;
  const m = /^#\/\$defs\/([A-Za-z0-9_]+)$/.exec(s.$ref);
  const target = m ? root.$defs?.[m[1]] : undefined;
  if (target === undefined) throw new Error(`schema $ref ${s.$ref} not found`);
  return resolveRef(root, target);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function typeOk(type: JsonSchema['type'], v: unknown): boolean {
  switch (type) {
    case undefined:
      return true;
    case 'object':
      return isObject(v);
    case 'array':
      return Array.isArray(v);
    case 'integer':
      return Number.isInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    default:
      return typeof v === type;
  }
}

const A: Record<NonNullable<JsonSchema['type']>, string> = {
  object: 'an object',
  array: 'an array',
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
};

const at = (path: string) => path || '(top level)';
const err = (path: string, message: string): SchemaError => ({ path: at(path), message });
const child = (path: string, key: string) => (path ? `${path}.${key}` : key);

function check(root: JsonSchema, schema: JsonSchema, v: unknown, path: string): SchemaError[] {
  const s = resolveRef(root, schema);
  if (s.oneOf) return checkOneOf(root, s.oneOf, v, path);
  if (s.const !== undefined && v !== s.const) return [err(path, `must be ${JSON.stringify(s.const)}`)];
  if (s.type !== undefined && !typeOk(s.type, v)) return [err(path, `must be ${A[s.type]}`)];
  if (s.enum && !s.enum.includes(v as string | number)) {
    const near = typeof v === 'string' ? nearest(v, s.enum.map(String)) : null;
    const list = s.enum.length <= 8 ? `one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}` : 'a known value';
    return [err(path, `${JSON.stringify(v)} is not ${list}${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}`)];
  }
  if (typeof v === 'string') return checkString(s, v, path);
  if (typeof v === 'number') return checkNumber(s, v, path);
  if (Array.isArray(v)) {
    const out: SchemaError[] = [];
    if (s.minItems !== undefined && v.length < s.minItems) out.push(err(path, `needs at least ${s.minItems} item(s)`));
    if (s.maxItems !== undefined && v.length > s.maxItems) out.push(err(path, `takes at most ${s.maxItems} item(s)`));
    if (s.items) for (const [i, item] of v.entries()) out.push(...check(root, s.items, item, `${path}[${i}]`));
    return out;
  }
  if (isObject(v)) return checkObject(root, s, v, path);
  return [];
}

function checkString(s: JsonSchema, v: string, path: string): SchemaError[] {
  const n = [...v].length;
  if (s.minLength !== undefined && n < s.minLength) return [err(path, s.minLength === 1 ? 'must not be empty' : `needs at least ${s.minLength} characters`)];
  if (s.maxLength !== undefined && n > s.maxLength) return [err(path, `takes at most ${s.maxLength} characters`)];
  if (s.pattern !== undefined && !new RegExp(s.pattern, 'u').test(v)) return [err(path, `${JSON.stringify(v)} does not match ${s.pattern}`)];
  return [];
}

function checkNumber(s: JsonSchema, v: number, path: string): SchemaError[] {
  if (s.minimum !== undefined && v < s.minimum) return [err(path, `must be at least ${s.minimum}`)];
  if (s.exclusiveMinimum !== undefined && v <= s.exclusiveMinimum) return [err(path, `must be more than ${s.exclusiveMinimum}`)];
  if (s.maximum !== undefined && v > s.maximum) return [err(path, `must be at most ${s.maximum}`)];
  return [];
}

function checkObject(root: JsonSchema, s: JsonSchema, v: Record<string, unknown>, path: string): SchemaError[] {
  const out: SchemaError[] = [];
  const props = s.properties ?? {};
  for (const key of s.required ?? []) if (!(key in v)) out.push(err(child(path, key), 'required'));
  for (const [key, value] of Object.entries(v)) {
    const p = props[key];
    if (p !== undefined) out.push(...check(root, p, value, child(path, key)));
    else if (s.additionalProperties === false) out.push(unknownKey(child(path, key), key, Object.keys(props)));
  }
  return out;
}

function unknownKey(path: string, key: string, allowed: readonly string[]): SchemaError {
  const near = nearest(key, allowed);
  return { path, message: `unknown key${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}` };
}

/**
 * One branch must match. When none does, the errors of the branch the value was most likely meant
 * for: the branches of its JSON type, the one with the fewest errors; on a tie, the keys no branch
 * knows (an object), else the list of the branches' titles.
 */
function checkOneOf(root: JsonSchema, branches: readonly JsonSchema[], v: unknown, path: string): SchemaError[] {
  const tried = branches.map((b) => ({ s: resolveRef(root, b), errors: check(root, b, v, path) }));
  const passing = tried.filter((t) => t.errors.length === 0).length;
  if (passing === 1) return [];
  if (passing > 1) return [err(path, 'matches more than one form')];
  const titles = tried.map((t) => t.s.title ?? (t.s.type ? A[t.s.type] : 'a value')).join(' | ');
  const typed = tried.filter((t) => typeOk(t.s.type, v));
  if (typed.length === 0) return [err(path, `must be one of: ${titles}`)];
  const fewest = Math.min(...typed.map((t) => t.errors.length));
  const best = typed.filter((t) => t.errors.length === fewest);
  if (best.length === 1) return best[0].errors;
  if (isObject(v)) {
    const known = [...new Set(typed.flatMap((t) => Object.keys(t.s.properties ?? {})))];
    const unknown = Object.keys(v).filter((k) => !known.includes(k));
    if (unknown.length > 0) return unknown.map((k) => unknownKey(child(path, k), k, known));
  }
  return [err(path, `must be one of: ${titles}`)];
}

/** The allowed word nearest to `word` (case-insensitive optimal string alignment distance ≤ 2, and under half its length). */
export function nearest(word: string, allowed: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Number.POSITIVE_INFINITY;
  for (const a of allowed) {
    const d = distance(word.toLowerCase(), a.toLowerCase());
    if (d < bestD) {
      best = a;
      bestD = d;
    }
  }
  return best !== null && bestD <= 2 && bestD < Math.max(word.length, 2) / 2 ? best : null;
}

function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
