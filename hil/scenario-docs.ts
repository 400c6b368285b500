/**
 * Writes what is generated from the scenario schema (hil/scenario-schema.ts): hil/scenario-schema.json
 * (for editors and other tools) and the field reference in hil/README.md, between its
 * `scenario-fields` markers. Run `npx tsx hil/scenario-docs.ts` after changing the schema;
 * test/hil-scenario.test.ts fails while either file is stale. Not part of the hil binary.
 */
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type JsonSchema, SCENARIO_SCHEMA } from './scenario-schema.js';

const here = dirname(fileURLToPath(import.meta.url));
export const SCHEMA_JSON_FILE = join(here, 'scenario-schema.json');
export const README_FILE = join(here, 'README.md');
export const BEGIN = '<!-- scenario-fields:begin (generated from hil/scenario-schema.ts by `npx tsx hil/scenario-docs.ts`: do not edit) -->';
export const END = '<!-- scenario-fields:end -->';

/** The order of the reference: the document top-down. Every definition of the schema is in it. */
const ORDER = [
  'setup',
  'factory',
  'trust',
  'trustSpec',
  'revocations',
  'revocationSpec',
  'link',
  'faults',
  'step',
  'uploadStep',
  'uploadRelease',
  'fileRelease',
  'manifestStep',
  'release',
  'trustStep',
  'revocationsStep',
  'resetStep',
  'confirmStep',
  'powerCut',
  'cableCut',
  'stepExpect',
  'expect',
  'code',
  'label',
];
/** Definitions shown inline where they are used rather than in a section of their own. */
const INLINE = new Set(['labels']);

export function schemaJson(): string {
  return `${JSON.stringify(SCENARIO_SCHEMA, null, 2)}\n`;
}

const defs = SCENARIO_SCHEMA.$defs ?? {};
const refName = (s: JsonSchema) => s.$ref?.replace('#/$defs/', '');
const cell = (t: string) => t.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function bounds(s: JsonSchema): string {
  if (s.minimum !== undefined && s.maximum !== undefined) return ` ${s.minimum}..${s.maximum}`;
  if (s.minimum !== undefined) return ` ≥ ${s.minimum}`;
  if (s.exclusiveMinimum !== undefined) return ` > ${s.exclusiveMinimum}`;
  return '';
}

/** A property's type in words, e.g. "integer ≥ 1", "`trust`", `"write" | "commit"`. */
function typeOf(s: JsonSchema): string {
  const name = refName(s);
  if (name !== undefined) return INLINE.has(name) || !(name in defs) ? typeOf(defs[name]) : `\`${name}\``;
  if (s.oneOf) return s.oneOf.map(typeOf).join(' or ');
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (s.enum) return s.enum.map((e) => `\`${JSON.stringify(e)}\``).join(', ');
  switch (s.type) {
    case 'string':
      if (s.title !== undefined && s.pattern === undefined && s.maxLength === undefined) return `path (${s.title})`;
      return `string${s.pattern ? ` \`${s.pattern}\`` : s.maxLength ? ` (1..${s.maxLength} characters)` : ''}`;
    case 'integer':
    case 'number':
      return `${s.type}${bounds(s)}`;
    case 'array': {
      const n = s.minItems !== undefined && s.minItems === s.maxItems ? `${s.minItems} × ` : s.minItems ? `${s.minItems} or more × ` : '';
      return `list of ${n}${s.items ? typeOf(s.items) : 'values'}`;
    }
    default:
      return s.type ?? 'any';
  }
}

function table(s: JsonSchema): string[] {
  const required = new Set(s.required ?? []);
  const rows = Object.entries(s.properties ?? {}).map(([k, p]) => {
    const target = refName(p) !== undefined ? defs[refName(p) as string] : undefined;
    const description = p.description ?? target?.description ?? '';
    return `| \`${k}\` | ${cell(typeOf(p))} | ${required.has(k) ? 'required' : ''} | ${cell(description)} |`;
  });
  return ['| field | type | | description |', '|---|---|---|---|', ...rows];
}

function section(name: string, s: JsonSchema): string[] {
  const head = `#### \`${name}\`${s.title && s.title !== name ? `: ${s.title}` : ''}`;
  if (s.properties) return [head, '', ...(s.description ? [s.description, ''] : []), ...table(s), ''];
  const out = [head, '', `${s.description ?? ''}${s.oneOf ? ' One of:' : ''}`.trim(), ''];
  if (s.oneOf) {
    for (const b of s.oneOf) {
      const r = refName(b);
      if (b.properties) out.push(`*${b.title}*: ${b.description ?? ''}`, '', ...table(b), '');
      else if (r !== undefined) out.push(`- \`${r}\`: ${defs[r].title ?? ''}`);
      else
        out.push(
          `- ${b.title ? `*${b.title}*: ` : ''}${b.title && b.type === 'string' && !b.pattern ? 'path' : typeOf(b)}${b.description ? `. ${b.description}` : ''}`,
        );
    }
    if (out[out.length - 1] !== '') out.push('');
  } else {
    out.push(`Type: ${typeOf(s)}.`, '');
  }
  return out;
}

/** The field reference: the top level, then every definition in ORDER. */
export function fieldReference(): string {
  const missing = Object.keys(defs).filter((d) => !ORDER.includes(d) && !INLINE.has(d));
  if (missing.length > 0) throw new Error(`hil/scenario-docs.ts: add ${missing.join(', ')} to ORDER`);
  const lines = [...section('scenario', SCENARIO_SCHEMA)];
  for (const name of ORDER) lines.push(...section(name, defs[name]));
  return lines.join('\n').trimEnd();
}

/** `readme` with its generated section replaced (throws when the markers are missing). */
export function withFieldReference(readme: string): string {
  const a = readme.indexOf(BEGIN);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error(`hil/README.md has no ${BEGIN} ... ${END} markers`);
  return `${readme.slice(0, a + BEGIN.length)}\n\n${fieldReference()}\n\n${readme.slice(b)}`;
}

function main(): void {
  writeFileSync(SCHEMA_JSON_FILE, schemaJson());
  writeFileSync(README_FILE, withFieldReference(readFileSync(README_FILE, 'utf8')));
  process.stdout.write(`wrote ${SCHEMA_JSON_FILE} and the field reference in ${README_FILE}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) main();
