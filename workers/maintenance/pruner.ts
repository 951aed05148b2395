import type { Pool } from '../../shared/db/pool.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import { pruneBatch, withPruneLock, type RetainedTable } from './retention.sql.ts';

export interface PrunerConfig {
  /** Published outbox rows are kept this long (`OUTBOX_RETENTION_HOURS`); 0 = forever. */
  outboxRetentionHours: number;
  /** `AUDIT_RETENTION_DAYS`; 0 = forever. */
  auditRetentionDays: number;
  /** Handled (redriven or discarded) dead letters, counted from their handling; 0 = forever. */
  deadLetterRetentionDays: number;
  /** Time between prunes. @defaultValue 300_000 */
  intervalMs?: number;
  /** Rows per DELETE statement. @defaultValue 5_000 */
  batchSize?: number;
}

export interface Pruner {
  /** Prunes every table once (unless another process is pruning); rows deleted per table. */
  pruneOnce(): Promise<Partial<Record<RetainedTable, number>>>;
  close(): Promise<void>;
}

/**
 * Keeps the tables that only grow — the published outbox, the audit log, handled dead letters —
 * within their retention: a prune at start and every `intervalMs`, in bounded batches, by one
 * process of the deployment at a time. A failed prune is logged and tried again next time: it
 * costs disk, never correctness.
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
  let running = true;

  async function pruneTable(table: RetainedTable, ageSeconds: number): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await pruneBatch(deps.pool, table, ageSeconds, batchSize);
      total += n;
      if (n < batchSize || !running) return total;
    }
  }

  async function pruneOnce(): Promise<Partial<Record<RetainedTable, number>>> {
    const pruned: Partial<Record<RetainedTable, number>> = {};
    await withPruneLock(deps.pool, async () => {
      for (const [table, seconds] of retentionSeconds) {
        const started = Date.now();
        const n = await pruneTable(table, seconds);
        pruned[table] = n;
        if (n > 0) log.info({ table, rows: n, ms: Date.now() - started }, 'rows past retention pruned');
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
  if (retentionSeconds.length > 0) tick();

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
