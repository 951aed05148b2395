import type { ModuleDefinition } from './module.ts';

/** Worker kinds and queue names the core uses itself: no module may take them. */
const RESERVED = new Set(['outbox', 'projections', 'events']);

/**
 * Checks the registry before anything starts: a module name becomes a queue, a worker kind, a metrics
 * label and an environment prefix, so it must be lowercase letters and digits, unique, not one of the
 * core's names, and no two modules may declare the same event type.
 * @throws {Error} naming every problem.
 */
export function assertValidModules(modules: readonly Pick<ModuleDefinition, 'name' | 'events'>[]): void {
  const problems: string[] = [];
  const names = new Set<string>();
  const owners = new Map<string, string>();
  for (const m of modules) {
    if (!/^[a-z][a-z0-9]{0,30}$/.test(m.name))
      problems.push(`module name ${JSON.stringify(m.name)}: use lowercase letters and digits`);
    if (RESERVED.has(m.name)) problems.push(`module name ${m.name} is reserved by the core`);
    if (names.has(m.name)) problems.push(`module name ${m.name} is registered twice`);
    names.add(m.name);
    for (const type of Object.keys(m.events)) {
      const other = owners.get(type);
      if (other) problems.push(`event type ${type} is declared by modules ${other} and ${m.name}`);
      owners.set(type, m.name);
    }
  }
  if (problems.length > 0) throw new Error(`invalid modules/registry.ts:\n  - ${problems.join('\n  - ')}`);
}
