import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MODULES } from '../../modules/registry.ts';
import { createEnvSchema, createModuleEnvSchema } from '../../shared/config/config.ts';

const EnvSchema = createEnvSchema(MODULES);
const ModuleEnvSchema = createModuleEnvSchema(MODULES);

const read = (file: string) => readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');

describe('configuration docs', () => {
  const variables = [...Object.keys(EnvSchema.shape), ...Object.keys(ModuleEnvSchema.shape)];

  it('.env.example documents every variable, and only real ones', () => {
    const example = read('.env.example');
    const listed = [...example.matchAll(/^#?\s?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]);
    expect(variables.filter((v) => !listed.includes(v))).toEqual([]);
    expect(listed.filter((v) => !variables.includes(v!))).toEqual([]);
  });

  it('the configuration reference (docs/configuration.md) lists every variable', () => {
    const readme = read('docs/configuration.md');
    expect(variables.filter((v) => !readme.includes(`\`${v}\``))).toEqual([]);
  });
});
