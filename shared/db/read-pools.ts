import type { Pool } from './pool.ts';

/** Why a query-side read was answered by the primary although a replica is configured. */
export type FallbackReason = 'miss' | 'error';

/** How far the replica is behind the primary, as `conveyor_pg_replica_lag_*` exports it. */
export interface ReplicaLag {
  /** WAL bytes the primary has written that the replica has not replayed yet; 0 when caught up. */
  bytes: number;
  /**
   * 0 when the replica has replayed everything the primary had written when asked; else the age of
   * the last transaction it replayed (so it grows while replay is stuck or paused).
   */
  seconds: number;
}

export interface ReadPoolsOptions {
  /** The primary: commands, workers, migrations — and the fallback of every query-side read. */
  primary: Pool;
  /** The streaming replica's pool (`DATABASE_READ_URL`), read-only; absent = read the primary. */
  replica?: Pool | undefined;
  /** Called for each read sent to the replica. */
  onReplicaRead?: () => void;
  /**
   * Called for each read the primary answered instead: ids the replica lacked (`miss`), or a replica
   * that is down, or behind on the schema or cancelled the query for replay (`error`).
   */
  onFallback?: (reason: FallbackReason, error?: unknown) => void;
  /**
   * After a replica error, reads go straight to the primary this long instead of each waiting for a
   * connect timeout. @defaultValue 5000
   */
  errorCooldownMs?: number;
  now?: () => number;
}

/** Rows of one lookup and the pool they were read from (read related data from the same one). */
export interface PoolRows<V> {
  pool: Pool;
  rows: V[];
}

/**
 * Where the query side reads. With a replica: lists and aggregates read it (the primary only if it
 * fails), and lookups by id read it first and ask the primary for the ids it has not replayed yet, so
 * replica lag never turns an accepted resource into a 404. Without one, everything reads the primary.
 */
export interface ReadPools {
  readonly primary: Pool;
  /** The replica's pool, when one is configured. */
  readonly replica: Pool | undefined;
  /** Runs a read on the replica (the primary without one, or while the replica fails). */
  read<T>(fn: (pool: Pool) => Promise<T>): Promise<T>;
  /**
   * Resources by id: `replicaFetch` on the replica, then `primaryFetch` on the primary for the ids the
   * replica did not return (or all of them, without a replica or while it fails). One call each.
   */
  byIds<V>(
    ids: readonly string[],
    idOf: (row: V) => string,
    replicaFetch: (pool: Pool, ids: readonly string[]) => Promise<V[]>,
    primaryFetch: (pool: Pool, ids: readonly string[]) => Promise<V[]>,
  ): Promise<PoolRows<V>[]>;
  /** The replica's lag behind the primary; rejects without a replica. */
  lag(): Promise<ReplicaLag>;
}

/**
 * @example
 * const reads = createReadPools({ primary: rt.pool, replica: createPool({ ...db, url: db.readUrl, readOnly: true }) });
 * const page = await reads.read((pool) => customerOrders(pool, customerId, 50, null));
 */
export function createReadPools(options: ReadPoolsOptions): ReadPools {
  const { primary, replica } = options;
  const cooldownMs = options.errorCooldownMs ?? 5_000;
  const now = options.now ?? Date.now;
  let skipReplicaUntil = 0;

  /** The replica when configured and not cooling down after an error. */
  const usableReplica = (): Pool | undefined => {
    if (!replica) return undefined;
    if (now() < skipReplicaUntil) {
      options.onFallback?.('error');
      return undefined;
    }
    return replica;
  };
  /** Whether the primary should answer a read the replica failed (rethrows the replica's own). */
  const failed = (err: unknown): void => {
    const kind = replicaFailure(err);
    if (kind === undefined) throw err;
    // Down or refusing connections: spare each read the connect timeout for a while.
    if (kind === 'unavailable') skipReplicaUntil = now() + cooldownMs;
    options.onFallback?.('error', err);
  };

  async function byIds<V>(
    ids: readonly string[],
    idOf: (row: V) => string,
    replicaFetch: (pool: Pool, ids: readonly string[]) => Promise<V[]>,
    primaryFetch: (pool: Pool, ids: readonly string[]) => Promise<V[]>,
  ): Promise<PoolRows<V>[]> {
    if (ids.length === 0) return [];
    const groups: PoolRows<V>[] = [];
    let misses = ids;
    const target = usableReplica();
    if (target) {
      options.onReplicaRead?.();
      try {
        const rows = await replicaFetch(target, ids);
        groups.push({ pool: target, rows });
        const found = new Set(rows.map(idOf));
        misses = ids.filter((id) => !found.has(id));
        // Not replayed yet (or never accepted: only the primary and the queue can tell).
        if (misses.length > 0) options.onFallback?.('miss');
      } catch (err) {
        failed(err);
      }
    }
    if (misses.length > 0) groups.push({ pool: primary, rows: await primaryFetch(primary, misses) });
    return groups;
  }

  return {
    primary,
    replica,
    async read(fn) {
      const target = usableReplica();
      if (!target) return fn(primary);
      options.onReplicaRead?.();
      try {
        return await fn(target);
      } catch (err) {
        failed(err);
        return fn(primary);
      }
    },
    byIds,
    async lag() {
      if (!replica) throw new Error('no read replica configured');
      return replicaLag(primary, replica);
    },
  };
}

const SQLSTATE = /^[0-9A-Z]{5}$/;

/**
 * Whether a replica's error is one the primary would not have: `unavailable` (no connection, shutting
 * down, out of connections) or `behind` (a query cancelled by a conflict with replay, 40001; a table,
 * column or schema a recent migration added and the replica has not replayed). Anything else — a
 * statement timeout, a bug — would fail on the primary too: rerunning it there only doubles the load.
 */
export function replicaFailure(err: unknown): 'unavailable' | 'behind' | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !SQLSTATE.test(code)) return 'unavailable'; // socket or pool error
  if (code.startsWith('08') || code.startsWith('57P') || code.startsWith('53')) return 'unavailable';
  if (['40001', '42P01', '42703', '3F000', '42883'].includes(code)) return 'behind';
  return undefined;
}

/**
 * Compares the primary's current WAL position with what the replica has replayed. The primary is
 * asked first, so a replica that replays in between reads as caught up, never as behind.
 * `pg_last_xact_replay_timestamp()` alone would not do: on an idle primary it only grows.
 */
export async function replicaLag(primary: Pool, replica: Pool): Promise<ReplicaLag> {
  const { rows: head } = await primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  const { rows } = await replica.query<{ bytes: number | null; seconds: number | null }>(
    `SELECT pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::float8 AS bytes,
            extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 AS seconds`,
    [head[0]!.lsn],
  );
  const bytes = Math.max(0, rows[0]?.bytes ?? 0);
  // Not a standby (pg_last_wal_replay_lsn() is null): nothing to replay, no lag.
  if (rows[0]?.bytes === null || bytes === 0) return { bytes: 0, seconds: 0 };
  return { bytes, seconds: Math.max(0, rows[0]?.seconds ?? 0) };
}
