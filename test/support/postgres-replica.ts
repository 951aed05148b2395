import pg from 'pg';
import { eventually } from './env.ts';
import { ownPostgres, type OwnPostgres } from './postgres-server.ts';

/** A private primary and its streaming replica, with replay under the test's control. */
export interface ReplicatedPostgres {
  primary: OwnPostgres;
  replica: OwnPostgres;
  /** Pauses WAL replay on the replica and waits until it is paused: from then on it stops changing. */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  /** Waits until the replica has replayed everything the primary had written when this was called. */
  caughtUp(options?: { timeoutMs?: number }): Promise<void>;
  /** Stops and removes both clusters. Idempotent. */
  destroy(): Promise<void>;
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * `initdb` a primary, create `databases` on it, `pg_basebackup -R` a replica from it and start both on
 * spare ports: about two seconds, so once per test file. The machine's cluster allows no replication
 * connections, hence a primary of our own.
 * @example
 * const pgs = await replicatedPostgres(['conveyor']);
 * await pgs.pauseReplay(); // the replica keeps answering, as of now
 */
export async function replicatedPostgres(databases: readonly string[] = []): Promise<ReplicatedPostgres> {
  const primary = await ownPostgres();
  let replica: OwnPostgres | undefined;
  try {
    for (const db of databases) await primary.createDatabase(db);
    replica = await ownPostgres({ standbyOf: primary.port });
  } catch (err) {
    await primary.destroy();
    throw err;
  }
  const standby = replica;
  const replayState = async () =>
    (await query<{ state: string }>(standby.url(), 'SELECT pg_get_wal_replay_pause_state() AS state'))[0]!
      .state;
  let destroyed: Promise<void> | undefined;
  return {
    primary,
    replica: standby,
    async pauseReplay() {
      await query(standby.url(), 'SELECT pg_wal_replay_pause()');
      await eventually(async () => (await replayState()) === 'paused', { what: 'replay paused' });
    },
    async resumeReplay() {
      await query(standby.url(), 'SELECT pg_wal_replay_resume()');
    },
    async caughtUp({ timeoutMs = 20_000 } = {}) {
      const [head] = await query<{ lsn: string }>(primary.url(), 'SELECT pg_current_wal_lsn()::text AS lsn');
      await eventually(
        async () => {
          const [r] = await query<{ behind: number }>(
            standby.url(),
            'SELECT pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::float8 AS behind',
            [head!.lsn],
          );
          return r!.behind <= 0;
        },
        { timeoutMs, what: `the replica to replay up to ${head!.lsn}` },
      );
    },
    destroy: () =>
      (destroyed ??= (async () => {
        await standby.destroy();
        await primary.destroy();
      })()),
  };
}
