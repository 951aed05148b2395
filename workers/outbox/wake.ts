import type { Pool } from '../../shared/db/pool.ts';

const CHANNEL_PREFIX = 'outbox_';

/** The channel the relays LISTEN on: per schema, so isolated deployments (and tests) do not wake each other. */
export const outboxChannel = (schema: string) => `${CHANNEL_PREFIX}${schema}`;

/**
 * Wakes the relays after outbox rows were committed: a NOTIFY in a transaction of its own, sent after
 * the write's commit rather than from a trigger inside it. PostgreSQL serializes the commits of every
 * transaction that notifies on one database-wide lock, held until the commit record is flushed: a
 * trigger made every order write wait for the previous one's flush (40% of the backends' samples with
 * four worker replicas, bench/scaling). Here only these tiny transactions take that lock, with
 * `synchronous_commit` off (a lost wake-up costs nothing: the relay also polls), and one process has
 * at most one in flight — a wake asked for meanwhile is sent once it returns.
 * @example const wake = createOutboxWaker(pool); await decideOrders(...); wake();
 */
export function createOutboxWaker(pool: Pool): () => void {
  let inFlight = false;
  let again = false;
  const send = (): void => {
    inFlight = true;
    again = false;
    pool
      .query(
        // The pool's search_path starts with its schema: current_schema() is what outboxChannel() takes.
        `BEGIN; SET LOCAL synchronous_commit TO off; SELECT pg_notify('${CHANNEL_PREFIX}' || current_schema(), ''); COMMIT`,
      )
      .catch(() => undefined) // the relay's poll covers a lost wake-up
      .finally(() => {
        inFlight = false;
        if (again) send();
      });
  };
  return () => {
    if (inFlight) again = true;
    else send();
  };
}
