import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PROBLEM_DOCS } from '../../scripts/lib/problem-docs.ts';
import { envSections, generatedFiles, problemCodesInSource } from '../../scripts/lib/references.ts';
import { MODULES } from '../../modules/registry.ts';
import { createEnvSchema, createModuleEnvSchema } from '../../shared/config/config.ts';

const EnvSchema = createEnvSchema(MODULES);
const ModuleEnvSchema = createModuleEnvSchema(MODULES);

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(`${root}${file}`, 'utf8');

describe('generated references', () => {
  it('every committed reference is what `node scripts/config-table.mjs` writes', async () => {
    const files = await generatedFiles();
    expect(Object.keys(files).sort()).toEqual([
      '.env.example',
      'docs/configuration.md',
      'docs/metrics.md',
      'docs/problems.md',
    ]);
    for (const [file, text] of Object.entries(files)) {
      expect(read(file), `${file} is stale: run node scripts/config-table.mjs`).toBe(text);
    }
  }, 30_000); // loading prettier to format the markdown takes seconds on a busy machine

  it('the configuration reference covers every variable the schema parses, once', () => {
    const documented = envSections().flatMap((s) => s.variables.map((v) => v.name));
    const parsed = [...Object.keys(EnvSchema.shape), ...Object.keys(ModuleEnvSchema.shape)];
    expect(new Set(documented).size).toBe(documented.length);
    expect([...documented].sort()).toEqual([...parsed].sort());
  });

  it('every variable has a description and the defaults are the schema’s', () => {
    const vars = envSections().flatMap((s) => s.variables);
    expect(vars.filter((v) => v.description.trim() === '').map((v) => v.name)).toEqual([]);
    // What the schema yields for an empty environment is what the references print as the default.
    const parsed: Record<string, unknown> = { ...EnvSchema.parse({}), ...ModuleEnvSchema.parse({}) };
    const expected = (value: unknown) =>
      value === undefined || value === ''
        ? undefined
        : Array.isArray(value)
          ? value.join(',')
          : typeof value === 'object'
            ? 'structured'
            : String(value);
    const wrong = vars.filter((v) => {
      const want = expected(parsed[v.name]);
      return want !== 'structured' && want !== v.default;
    });
    expect(wrong.map((v) => `${v.name}=${v.default}`)).toEqual([]);
  });

  it('every problem code in the source is documented, and every documented code is still in the source', () => {
    const found = problemCodesInSource(root);
    expect([...found.keys()].filter((code) => !(code in PROBLEM_DOCS))).toEqual([]);
    const source = ['api', 'modules', 'shared', 'workers', 'dashboard'];
    const stale = Object.keys(PROBLEM_DOCS).filter((code) => {
      if (found.has(code)) return false;
      // Codes passed around as values (StateConflictError(code), a rejection's `code:`) occur as literals.
      return !problemLiteralOccurs(source, code);
    });
    expect(stale).toEqual([]);
  });
});

function problemLiteralOccurs(dirs: string[], code: string): boolean {
  const walk = (dir: string): boolean =>
    readdirSync(`${root}${dir}`, { withFileTypes: true }).some((e) =>
      e.isDirectory()
        ? walk(`${dir}/${e.name}`)
        : e.name.endsWith('.ts') && read(`${dir}/${e.name}`).includes(`'${code}'`),
    );
  return dirs.some(walk);
}
