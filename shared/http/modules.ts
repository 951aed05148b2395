import type { OpenAPIHono, z } from '@hono/zod-openapi';
import type { ModuleDefinition } from '../modules/module.ts';
import type { Pool } from '../db/pool.ts';
import type { ApiDeps, ApiEnv } from './context.ts';
import type { JobTarget } from './enqueue.ts';
import type { RedisCall } from './redis-call.ts';

/** A module's command queue as the API enqueues into it. */
export interface CommandTarget extends JobTarget {
  module: ModuleDefinition;
  /**
   * The same queue on a connection of its own, for big bulks (a batch route's `addBulkExactly`): a
   * 1,000-job pipeline and its admission then never sit in front of a single command's round trips on
   * the shared connection. Absent: use the target itself.
   */
  bulk?: JobTarget | undefined;
}

/**
 * Fields a module adds to a resource another module owns — e.g. refunds add `refundedCents` and the
 * refunds to an `order`. The owner declares the resource names it extends (see its README) and asks
 * for the extra fields of many rows in one call.
 */
export interface ResourceExtension<Row = Record<string, unknown>> {
  /** The added fields (merged into the owner's OpenAPI schema). */
  shape: z.ZodRawShape;
  /**
   * The added fields of each row, in the rows' order; one query for all of them. `scope` carries what
   * the rows share but do not hold (e.g. the customer id of a customer's totals).
   */
  load(
    pool: Pool,
    rows: readonly Row[],
    scope: Readonly<Record<string, string>>,
  ): Promise<Record<string, unknown>[]>;
}
export type ResourceExtensions = Readonly<Record<string, ResourceExtension<never>>>;

/** What the core hands a module's HTTP side: its queue, the shared edge, and the others' extensions. */
export interface ModuleApiContext {
  app: OpenAPIHono<ApiEnv>;
  deps: ApiDeps;
  /** This module's command queue. */
  commands: CommandTarget;
  /** Every module's command queue by name (e.g. a refund checks its order's job). */
  commandQueues: ReadonlyMap<string, CommandTarget>;
  /** A Redis call within the request's time budget (two command timeouts): 503 beyond it. */
  redisCall: RedisCall;
  timeoutMs: number;
  /** What other modules add to `resource`. */
  extensions(resource: string): readonly ResourceExtension<never>[];
}

/**
 * Merges every extension's fields into rows of a resource, one query per extension.
 * @example const orders = await extend(ctx.extensions('order'), pool, rows);
 */
export async function extend<Row extends object>(
  extensions: readonly ResourceExtension<never>[],
  pool: Pool,
  rows: readonly Row[],
  scope: Readonly<Record<string, string>> = {},
): Promise<Row[]> {
  if (extensions.length === 0 || rows.length === 0) return [...rows];
  const extras = await Promise.all(
    extensions.map((e) => (e as unknown as ResourceExtension<Row>).load(pool, rows, scope)),
  );
  return rows.map((row, i) => Object.assign({}, row, ...extras.map((x) => x[i])) as Row);
}

/** The shape of a resource with every extension's fields (for its OpenAPI schema). */
export function extendedShape(extensions: readonly ResourceExtension<never>[]): z.ZodRawShape {
  return Object.assign({}, ...extensions.map((e) => e.shape)) as z.ZodRawShape;
}
