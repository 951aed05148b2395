import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ModuleDefinition } from '../../shared/modules/module.ts';
import { MODULES } from '../../modules/registry.ts';
import { renderModuleFiles, splice } from '../../scripts/render-modules.ts';

const read = (file: string) => readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');

describe('files rendered from the module registry (scripts/render-modules.ts)', () => {
  it.each(Object.entries(renderModuleFiles()))(
    '%s is what the registry renders (run `node --import tsx scripts/render-modules.ts` after adding a module)',
    (file, rendered) => {
      expect(read(file)).toBe(rendered);
    },
  );

  it('gives a module added to the registry its compose workers, and its manifests', () => {
    const extra = { ...MODULES.find((m) => m.name === 'refunds')!, name: 'invoices' } as ModuleDefinition;
    const files = renderModuleFiles([...MODULES, extra]);
    expect(files['docker-compose.yml']).toContain('  worker-invoices:\n    <<: *worker\n');
    expect(files['docker-compose.yml']).toContain('WORKER_KINDS: invoices\n');
    expect(files['docker-compose.cluster.yml']).toContain(
      '  worker-invoices:\n    environment: *conveyor-kafka-cluster\n',
    );
    expect(files['deploy/base/modules.yaml']).toContain('name: conveyor-worker-invoices');
    expect(files['deploy/base/modules.yaml']).toContain('/v1/scaling/invoices');
  });

  it('refuses a file whose generated section markers are gone', () => {
    expect(() => splice('services:\n  api: {}\n', '', 'x.yml')).toThrow(/x\.yml: no generated section/);
  });
});
