import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { MODULES } from '../../modules/registry.ts';
import { renderModuleManifests } from '../../scripts/render-modules.ts';

const read = (file: string) => readFileSync(new URL(`../../deploy/base/${file}`, import.meta.url), 'utf8');

describe('command modules on Kubernetes', () => {
  it('deploy/base/modules.yaml is what the registry renders (run scripts/render-modules.ts after adding a module)', () => {
    expect(read('modules.yaml')).toBe(renderModuleManifests());
  });

  it('gives every registered module a worker and a ScaledObject on its own queue, in the base kustomization', () => {
    const kustomization = read('kustomization.yaml');
    const docs = ['worker-orders.yaml', 'keda-orders.yaml', 'modules.yaml']
      .filter((f) => kustomization.includes(`- ${f}`))
      .flatMap((f) =>
        parseAllDocuments(read(f)).map((d) => d.toJS() as { kind?: string; metadata?: { name?: string } }),
      );
    for (const m of MODULES) {
      const worker = docs.find(
        (d) => d.kind === 'Deployment' && d.metadata?.name === `conveyor-worker-${m.name}`,
      );
      expect(JSON.stringify(worker), m.name).toContain(`{"name":"WORKER_KINDS","value":"${m.name}"}`);
      const scaled = docs.find(
        (d) => d.kind === 'ScaledObject' && d.metadata?.name === `conveyor-worker-${m.name}`,
      );
      expect(JSON.stringify(scaled), m.name).toContain(`/v1/scaling/${m.name}"`);
    }
  });
});
