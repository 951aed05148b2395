import { eventually } from '../support/env.ts';
import { logRecords, type Proc } from '../support/processes.ts';

/** Anything that runs SQL on the scenario's schema (a pg Pool or Client with its search_path). */
export interface Queryable {
  query<T extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: T[] }>;
}

export type FinalStatus = 'completed' | 'rejected' | 'dead_lettered';

export interface ReconcileOptions {
  /**
   * Orders in the write model that no client saw a 202 for are tolerated (a request that timed out
   * after its job was stored, e.g. while Redis went down: the client got a 503, the order still ran).
   * @defaultValue false
   */
  allowUnaccepted?: boolean;
}

export interface ReconcileReport {
  accepted: number;
  /** Orders in the write model by final status. */
  byStatus: Record<FinalStatus, number>;
  unaccepted: number;
  deadLetters: number;
  /** Empty when the write model, the outbox, the inbox and every read model agree. */
  problems: string[];
}

const sample = (ids: readonly string[]) => ids.slice(0, 5).join(', ') + (ids.length > 5 ? ', …' : '');

/**
 * Checks one scenario's schema end to end:
 * - every accepted order id is in the write model exactly once, decided (`completed`, `rejected` or
 *   `dead_lettered`), with exactly one outbox event per order (exactly-once effect);
 * - every outbox event is published and was applied once by the projections (inbox);
 * - `order_view` mirrors the write model row for row (status, total, customer);
 * - `daily_stats` and `customer_stats` totals equal the write model's counts and revenue.
 */
export async function reconcile(
  db: Queryable,
  accepted: readonly string[],
  options: ReconcileOptions = {},
): Promise<ReconcileReport> {
  const problems: string[] = [];
  const one = async <T extends Record<string, unknown>>(sql: string, params?: unknown[]) =>
    (await db.query<T>(sql, params)).rows;

  const missing = await one<{ id: string }>(
    `SELECT a.id FROM unnest($1::uuid[]) AS a(id) LEFT JOIN orders o ON o.order_id = a.id WHERE o.order_id IS NULL`,
    [accepted],
  );
  if (missing.length > 0)
    problems.push(
      `${missing.length} accepted orders not decided in the write model (${sample(missing.map((m) => m.id))})`,
    );
  const unaccepted = await one<{ id: string }>(
    `SELECT order_id AS id FROM orders WHERE NOT (order_id = ANY($1::uuid[]))`,
    [accepted],
  );
  if (unaccepted.length > 0 && !options.allowUnaccepted) {
    problems.push(
      `${unaccepted.length} orders in the write model that were never accepted (${sample(unaccepted.map((u) => u.id))})`,
    );
  }
  const statusRows = await one<{ status: FinalStatus; n: number }>(
    `SELECT status, count(*)::int AS n FROM orders GROUP BY status`,
  );
  const byStatus: Record<FinalStatus, number> = { completed: 0, rejected: 0, dead_lettered: 0 };
  for (const r of statusRows) byStatus[r.status] = r.n;

  // Exactly-once effect: one event per decided order, none for orders that do not exist.
  const eventsPerOrder = await one<{ id: string; n: number }>(
    `SELECT o.order_id AS id, count(x.id)::int AS n FROM orders o LEFT JOIN outbox x ON x.aggregate_id = o.order_id::text
     GROUP BY o.order_id HAVING count(x.id) <> 1`,
  );
  if (eventsPerOrder.length > 0) {
    problems.push(
      `${eventsPerOrder.length} orders without exactly one outbox event (${sample(eventsPerOrder.map((e) => `${e.id}×${e.n}`))})`,
    );
  }
  const [outbox] = await one<{ total: number; unpublished: number; unprojected: number; inbox: number }>(
    `SELECT (SELECT count(*)::int FROM outbox) AS total,
            (SELECT count(*)::int FROM outbox WHERE published_at IS NULL) AS unpublished,
            (SELECT count(*)::int FROM outbox x WHERE NOT EXISTS
               (SELECT 1 FROM projection_inbox i WHERE i.consumer = 'projections' AND i.event_id = x.event_id)) AS unprojected,
            (SELECT count(*)::int FROM projection_inbox WHERE consumer = 'projections') AS inbox`,
  );
  if (outbox!.unpublished > 0) problems.push(`${outbox!.unpublished} outbox events not published`);
  if (outbox!.unprojected > 0) problems.push(`${outbox!.unprojected} outbox events not projected`);
  if (outbox!.inbox !== outbox!.total)
    problems.push(`inbox holds ${outbox!.inbox} events, outbox ${outbox!.total}`);

  const viewDiff = await one<{ id: string; w: string | null; v: string | null }>(
    `SELECT coalesce(o.order_id, v.order_id) AS id, o.status AS w, v.status AS v
       FROM orders o FULL JOIN order_view v ON v.order_id = o.order_id
      WHERE o.order_id IS NULL OR v.order_id IS NULL OR v.status <> o.status
         OR v.total_cents IS DISTINCT FROM o.total_cents OR v.customer_id IS DISTINCT FROM o.customer_id`,
  );
  if (viewDiff.length > 0) {
    problems.push(
      `order_view differs from the write model for ${viewDiff.length} orders (${sample(viewDiff.map((d) => `${d.id}: ${d.w} vs ${d.v}`))})`,
    );
  }

  const dailyDiff = await one<{ currency: string }>(
    `WITH w AS (SELECT currency, count(*) FILTER (WHERE status = 'completed')::bigint AS c,
                       count(*) FILTER (WHERE status = 'rejected')::bigint AS r,
                       count(*) FILTER (WHERE status = 'dead_lettered')::bigint AS d,
                       coalesce(sum(total_cents) FILTER (WHERE status = 'completed'), 0)::bigint AS rev
                  FROM orders GROUP BY currency),
          s AS (SELECT currency, sum(completed_count)::bigint AS c, sum(rejected_count)::bigint AS r,
                       sum(dead_lettered_count)::bigint AS d, sum(revenue_cents)::bigint AS rev
                  FROM daily_stats GROUP BY currency)
     SELECT coalesce(w.currency, s.currency) AS currency FROM w FULL JOIN s ON s.currency = w.currency
      WHERE (w.c, w.r, w.d, w.rev) IS DISTINCT FROM (s.c, s.r, s.d, s.rev)`,
  );
  if (dailyDiff.length > 0)
    problems.push(`daily_stats differ from the write model for ${sample(dailyDiff.map((d) => d.currency))}`);

  const customerDiff = await one<{ customer: string }>(
    `WITH w AS (SELECT customer_id, currency, count(*) FILTER (WHERE status = 'completed')::bigint AS c,
                       count(*) FILTER (WHERE status = 'rejected')::bigint AS r,
                       coalesce(sum(total_cents) FILTER (WHERE status = 'completed'), 0)::bigint AS rev
                  FROM orders WHERE status <> 'dead_lettered' GROUP BY customer_id, currency)
     SELECT coalesce(w.customer_id, s.customer_id) || '/' || coalesce(w.currency, s.currency) AS customer
       FROM w FULL JOIN customer_stats s ON s.customer_id = w.customer_id AND s.currency = w.currency
      WHERE (w.c, w.r, w.rev) IS DISTINCT FROM (s.completed_count, s.rejected_count, s.revenue_cents)`,
  );
  if (customerDiff.length > 0)
    problems.push(
      `customer_stats differ from the write model for ${sample(customerDiff.map((d) => d.customer))}`,
    );

  const [dl] = await one<{ n: number }>(`SELECT count(*)::int AS n FROM dead_letters`);
  return { accepted: accepted.length, byStatus, unaccepted: unaccepted.length, deadLetters: dl!.n, problems };
}

/**
 * Polls {@link reconcile} until everything agrees (the pipeline is eventually consistent) and returns
 * the report; on timeout fails with the last list of problems.
 */
export async function awaitReconciled(
  db: Queryable,
  accepted: readonly string[],
  options: ReconcileOptions & {
    timeoutMs?: number;
    /** Processes whose last warnings and errors a timeout reports (why the pipeline stalled). */
    explainWith?: readonly (Proc | undefined)[];
  } = {},
): Promise<ReconcileReport> {
  let last: ReconcileReport | undefined;
  try {
    return await eventually(
      async () => {
        last = await reconcile(db, accepted, options);
        return last.problems.length === 0 ? last : undefined;
      },
      {
        timeoutMs: options.timeoutMs ?? 60_000,
        intervalMs: 250,
        what: `${accepted.length} accepted orders to reconcile`,
      },
    );
  } catch (err) {
    const detail = last
      ? last.problems.map((p) => `  - ${p}`).join('\n')
      : '  (no report: the database did not answer)';
    const complaints = (options.explainWith ?? []).flatMap((proc) =>
      proc
        ? logRecords(proc)
            .filter((l) => typeof l.level === 'number' && l.level >= 40)
            .slice(-8)
            .map((l) => `  ${JSON.stringify(l).slice(0, 600)}`)
        : [],
    );
    const logs =
      complaints.length > 0 ? `\nlast warnings and errors of the processes:\n${complaints.join('\n')}` : '';
    throw new Error(`${(err as Error).message}; still wrong:\n${detail}${logs}`, { cause: err });
  }
}
