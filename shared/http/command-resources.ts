import type { CommandResource } from '../modules/module.ts';

/**
 * The command resources each API app's modules registered, keyed by the app (a WeakMap: one test
 * process may build several apps; none outlives its app). A module registers from its `routes(ctx)`
 * with `ctx.app`; the core's results middleware and stream routes read them per request.
 */
const byApp = new WeakMap<object, CommandResource[]>();

/** Registers a module's command resource on `app` (call from the module's `routes(ctx)` with `ctx.app`). */
export function registerCommandResource(app: object, resource: CommandResource): void {
  const list = byApp.get(app) ?? [];
  if (list.some((r) => r.path === resource.path)) throw new Error(`command resource ${resource.path} twice`);
  list.push(resource);
  byApp.set(app, list);
}

/** What `app`'s modules registered so far. */
export function commandResources(app: object): readonly CommandResource[] {
  return byApp.get(app) ?? [];
}

/** A resource's path as a matcher: the command id of a path (or `Location`) it names exactly, else undefined. */
export function pathMatcher(path: string): (candidate: string) => string | undefined {
  const parts = path.split('/');
  const params = parts.filter((p) => p.startsWith(':')).length;
  if (params !== 1) throw new Error(`a command resource path names one id: ${path}`);
  const pattern = new RegExp(
    `^${parts.map((p) => (p.startsWith(':') ? '([^/?#]+)' : p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/')}$`,
  );
  return (candidate) => {
    const m = pattern.exec(candidate);
    return m ? decodeURIComponent(m[1]!) : undefined;
  };
}
