import { describe, expect, it } from 'vitest';
import { MODULES } from '../../modules/registry.ts';
import { assertValidModules } from '../../shared/modules/validate.ts';

describe('module registry', () => {
  it('accepts the registered modules', () => {
    expect(() => assertValidModules(MODULES)).not.toThrow();
  });

  it('refuses names that would collide with the core or each other, and shared event types', () => {
    const orders = MODULES[0]!;
    expect(() => assertValidModules([{ ...orders, name: 'events' }])).toThrow(/reserved/);
    expect(() => assertValidModules([{ ...orders, name: 'Bad-Name' }])).toThrow(/lowercase/);
    expect(() => assertValidModules([orders, { ...orders, events: {} }])).toThrow(/registered twice/);
    expect(() => assertValidModules([orders, { ...orders, name: 'copy' }])).toThrow(/declared by modules/);
  });
});
