import { describe, expect, it } from 'vitest';
import { moduleFiles, namesOf, registerModule } from '../../scripts/new-module.ts';

// A registry as the repository ships it (not read from disk: the recipe test runs these checks in a copy
// that already has a third module).
const registry = `import type { ModuleDefinition } from './module.ts';
import { ordersModule } from './orders/module.ts';
import { refundsModule } from './refunds/module.ts';
import { webhooksModule } from './webhooks/module.ts';

export const MODULES: readonly ModuleDefinition[] = [ordersModule, refundsModule, webhooksModule];
`;

describe('npm run module:new (scripts/new-module.ts)', () => {
  it('names a module after its queue: the aggregate of its events, its TypeScript names', () => {
    expect(namesOf('invoices')).toEqual({
      name: 'invoices',
      item: 'invoice',
      Item: 'Invoice',
      moduleConst: 'invoicesModule',
    });
    expect(namesOf('kyc').item).toBe('kycitem');
    for (const bad of ['Invoices', 'in-voices', '1nvoices', 'x', ''])
      expect(() => namesOf(bad), bad).toThrow(/lowercase letters and digits/);
  });

  it('adds the module to the registry once, last', () => {
    const n = namesOf('invoices');
    const once = registerModule(registry, n);
    expect(once).toContain("import { invoicesModule } from './invoices/module.ts';");
    expect(once).toMatch(/\[[^\]]*webhooksModule, invoicesModule\]/);
    expect(registerModule(once, n)).toBe(once);
  });

  it('writes a whole module under modules/<name>/, every placeholder filled', () => {
    const files = moduleFiles(namesOf('invoices'));
    expect(Object.keys(files).sort()).toEqual([
      'modules/invoices/api/index.ts',
      'modules/invoices/domain.ts',
      'modules/invoices/events.ts',
      'modules/invoices/migrations/0001_invoices.sql',
      'modules/invoices/module.ts',
      'modules/invoices/worker/index.ts',
    ]);
    for (const [path, text] of Object.entries(files)) expect(text, path).not.toMatch(/__\w+__/);
    expect(files['modules/invoices/module.ts']).toContain(
      "scopes: { write: 'invoices:write', read: 'invoices:read' }",
    );
    expect(files['modules/invoices/events.ts']).toContain("recorded: 'invoice.recorded'");
  });
});
