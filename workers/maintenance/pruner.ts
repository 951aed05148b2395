import type { Pool } from '../../shared/db/pool.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import { REBUILD_LOCK_ID } from '../projections/projector.ts';
import { pruneBatch, withPruneLock, type RetainedTable } from './retention.sql.ts';

export interface PrunerConfig {
  /** Published outbox rows are kept this long (`OUTBOX_RETENTION_HOURS`); 0 = forever. */
  outboxRetentionHours: number;
  /** `AUDIT_RETENTION_DAYS`; 0 = forever. */
  auditRetentionDays: number;
  /** Handled (redriven or discarded) dead letters, counted from their handling; 0 = forever. */
  deadLetterRetentionDays: number;
  /**
   * The projections' inbox remembers an event this long after it occurred (`INBOX_RETENTION_HOURS`);
   * 0 = forever. A delivery of an event older than that which the inbox no longer holds is refused
   * (dead-lettered), never applied twice: see {@link createPruner}. @defaultValue 168
   */
  inboxRetentionHours?: number;
  /** How long the inbox pruner waits for live projection batches in flight before it skips a round. @defaultValue 30_000 */
  inboxBarrierTimeoutMs?: number;
  /** Time between prunes. @defaultValue 300_000 */
  intervalMs?: number;
  /** Rows per DELETE statement. @defaultValue 5_000 */
  batchSize?: number;
}

/** Every table retention prunes, the projections' inbox included. */
export type PrunedTable = RetainedTable | 'projection_inbox';

export interface Pruner {
  /** Prunes every table once (unless another process is pruning); rows deleted per table. */
  pruneOnce(): Promise<Partial<Record<PrunedTable, number>>>;
  close(): Promise<void>;
}

/**
 * Keeps the tables that only grow — the published outbox, the audit log, handled dead letters —
 * within their retention: a prune at start and every `intervalMs`, in bounded batches, by one
 * process of the deployment at a time. A failed prune is logged and tried again next time: it
 * costs disk, never correctness.
 *
 * The projections' inbox is pruned by its events' `occurredAt`, behind a horizon
 * (`projection_history.inbox_horizon`): first the horizon moves to now − `inboxRetentionHours` (committed),
 * then the pruner takes the rebuild lock exclusively once — every projection batch that might still
 * claim with the old horizon has then committed — and only then deletes rows below the horizon. A
 * projection batch refuses an event older than the horizon that the inbox no longer holds. Every prune
 * that removes history a rebuild could not replay (a published outbox event; an inbox row whose event the
 * outbox no longer has) first sets `projection_history.history_pruned_at`, which makes
 * `projections:rebuild` refuse unless told to drop that history.
 * @example const pruner = createPruner({ pool, logger }, { outboxRetentionHours: 168, auditRetentionDays: 90, deadLetterRetentionDays: 30 });
 */
export function createPruner(deps: { pool: Pool; logger: Logger }, config: PrunerConfig): Pruner {
  const log = deps.logger.child({ component: 'retention' });
  const batchSize = config.batchSize ?? 5_000;
  const hour = 3_600;
  const retentionSeconds: [RetainedTable, number][] = (
    [
      ['outbox', config.outboxRetentionHours * hour],
      ['audit_log', config.auditRetentionDays * 24 * hour],
      ['dead_letters', config.deadLetterRetentionDays * 24 * hour],
    ] as [RetainedTable, number][]
  ).filter(([, seconds]) => seconds > 0);
  const inboxSeconds = (config.inboxRetentionHours ?? 168) * hour;
  let running = true;

  /** Marks the history lost before the outbox loses a published event the read models hold. */
  async function markOutboxHistory(ageSeconds: number): Promise<void> {
    await deps.pool.query({
      name: 'conveyor-mark-outbox-history',
      text: `UPDATE projection_history SET history_pruned_at = coalesce(history_pruned_at, now())
              WHERE history_pruned_at IS NULL AND EXISTS (
                SELECT 1 FROM outbox WHERE published_at < now() - make_interval(secs => $1) AND quarantined_at IS NULL)`,
      values: [ageSeconds],
    });
  }

  /**
   * Moves the horizon just past the newest row to forget (rows of this release: occurred before
   * now − retention; of the previous release: processed a day before that, when it moves to now − retention),
   * so only events older than what the inbox really forgot are refused. Then waits out the projection
   * batches that may have read the old horizon. Returns the horizon to delete below, or undefined.
   */
  async function moveInboxHorizon(ageSeconds: number): Promise<string | undefined> {
    // As text: a JavaScript Date would cut the microsecond the horizon sits past its newest row.
    const { rows } = await deps.pool.query<{ horizon: string | null }>(
      `WITH t AS (SELECT now() - make_interval(secs => $1) AS cut)
       UPDATE projection_history SET inbox_horizon = greatest(
           inbox_horizon,
           (SELECT max(occurred_at) + interval '1 microsecond' FROM projection_inbox, t WHERE occurred_at < t.cut),
           (SELECT t.cut FROM t WHERE EXISTS (SELECT 1 FROM projection_inbox
              WHERE occurred_at IS NULL AND processed_at < t.cut - interval '1 day')))
       RETURNING CASE WHEN inbox_horizon > '-infinity' THEN inbox_horizon::text END AS horizon`,
      [ageSeconds],
    );
    const horizon = rows[0]?.horizon;
    if (!horizon) return undefined;
    const client = await deps.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT set_config('lock_timeout', $1, true)`, [
        `${config.inboxBarrierTimeoutMs ?? 30_000}ms`,
      ]);
      await client.query('SELECT pg_advisory_xact_lock($1)', [REBUILD_LOCK_ID]);
      await client.query('COMMIT');
      return horizon;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      log.warn(
        { err },
        'projection batches (or a rebuild) held the inbox barrier; inbox prune skipped this round',
      );
      return undefined;
    } finally {
      client.release();
    }
  }

  // A deleted row whose event the outbox no longer has (pruned before this release, or by hand) is
  // history a rebuild cannot replay: marked in the same statement.
  const inboxBatch = (rows: string) => `
    WITH gone AS (
      DELETE FROM projection_inbox WHERE (consumer, event_id) IN (
        SELECT consumer, event_id FROM projection_inbox WHERE ${rows} LIMIT $2)
      RETURNING event_id),
    marked AS (
      UPDATE projection_history SET history_pruned_at = coalesce(history_pruned_at, now())
       WHERE history_pruned_at IS NULL AND EXISTS (SELECT 1 FROM gone g WHERE NOT EXISTS (
               SELECT 1 FROM outbox o WHERE o.event_id = g.event_id AND o.quarantined_at IS NULL))
      RETURNING 1)
    SELECT (SELECT count(*) FROM gone)::int AS n, (SELECT count(*) FROM marked)::int AS marked`;
  const INBOX_BATCHES = [
    // rows of this release carry their event's occurredAt, compared with the horizon as is
    ['conveyor-prune-inbox', inboxBatch('occurred_at < $1::timestamptz')],
    // rows of the previous release only their processing time: a day later, for clock skew
    [
      'conveyor-prune-inbox-legacy',
      inboxBatch(`occurred_at IS NULL AND processed_at < $1::timestamptz - interval '1 day'`),
    ],
  ] as const;

  async function pruneInbox(ageSeconds: number): Promise<number> {
    const horizon = await moveInboxHorizon(ageSeconds);
    if (!horizon) return 0;
    let total = 0;
    for (const [name, text] of INBOX_BATCHES) {
      for (;;) {
        const { rows } = await deps.pool.query<{ n: number }>({ name, text, values: [horizon, batchSize] });
        const n = rows[0]?.n ?? 0;
        total += n;
        if (n < batchSize || !running) break;
      }
    }
    return total;
  }

  async function pruneTable(table: RetainedTable, ageSeconds: number): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await pruneBatch(deps.pool, table, ageSeconds, batchSize);
      total += n;
      if (n < batchSize || !running) return total;
    }
  }

  async function pruneOnce(): Promise<Partial<Record<PrunedTable, number>>> {
    const pruned: Partial<Record<PrunedTable, number>> = {};
    await withPruneLock(deps.pool, async () => {
      for (const [table, seconds] of retentionSeconds) {
        const started = Date.now();
        if (table === 'outbox') await markOutboxHistory(seconds);
        const n = await pruneTable(table, seconds);
        pruned[table] = n;
        if (n > 0) log.info({ table, rows: n, ms: Date.now() - started }, 'rows past retention pruned');
      }
      if (inboxSeconds > 0) {
        const started = Date.now();
        const n = await pruneInbox(inboxSeconds);
        pruned.projection_inbox = n;
        if (n > 0) {
          log.info(
            { table: 'projection_inbox', rows: n, ms: Date.now() - started },
            'rows past retention pruned',
          );
        }
      }
    });
    return pruned;
  }

  let timer: NodeJS.Timeout | undefined;
  let current: Promise<unknown> = Promise.resolve();
  const tick = () => {
    current = pruneOnce()
      .catch((err: unknown) => log.warn({ err }, 'retention prune failed; trying again next interval'))
      .finally(() => {
        if (running) timer = setTimeout(tick, config.intervalMs ?? 300_000);
      });
  };
  if (retentionSeconds.length > 0 || inboxSeconds > 0) tick();

  let closing: Promise<void> | undefined;
  return {
    pruneOnce,
    close: () =>
      (closing ??= (async () => {
        running = false;
        clearTimeout(timer);
        await current;
      })()),
  };
}
