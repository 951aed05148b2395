import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type { Pool } from '../../shared/db/pool.ts';

/**
 * What PostgreSQL did for one isolated schema during a window, counted so that other sessions on the
 * machine's shared database do not show: rows per table from `pg_stat_user_tables` of the schema, WAL
 * from `pg_walinspect` (records that touch the schema's relations, plus the commit records of their
 * transactions), CPU of the backends a given process is connected to. Machine-wide numbers (WAL LSN
 * difference, `pg_stat_database` transactions) are kept beside them, labelled as such.
 */

/** Row changes of one table: inserted, updated (HOT included), deleted. */
export interface TableRows {
  table: string;
  inserted: number;
  updated: number;
  hotUpdated: number;
  deleted: number;
}

export interface PgSnapshot {
  tables: Map<string, Omit<TableRows, 'table'>>;
  lsn: string;
  /** pg_stat_database of the whole database: commits + rollbacks (other sessions included). */
  dbXacts: number;
  /** pg_stat_wal of the whole server. */
  walBytes: number;
}

/**
 * The schema `pg_walinspect` is installed in (one per database): created in `schema` when absent
 * (dropped with it); undefined when it cannot be had (PostgreSQL < 15, contrib missing, no superuser).
 */
export async function enableWalInspect(pool: Pool, schema: string): Promise<string | undefined> {
  const where = async () =>
    (
      await pool.query<{ nspname: string }>(
        `SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
          WHERE e.extname = 'pg_walinspect'`,
      )
    ).rows[0]?.nspname;
  try {
    const existing = await where();
    if (existing) return existing;
    await pool.query(`CREATE EXTENSION IF NOT EXISTS pg_walinspect SCHEMA "${schema}"`);
    return await where();
  } catch {
    return undefined;
  }
}

async function tableStats(pool: Pool, schema: string): Promise<PgSnapshot['tables']> {
  const { rows } = await pool.query<{ t: string; i: string; u: string; h: string; d: string }>(
    `SELECT relname AS t, n_tup_ins AS i, n_tup_upd AS u, n_tup_hot_upd AS h, n_tup_del AS d
       FROM pg_stat_user_tables WHERE schemaname = $1`,
    [schema],
  );
  return new Map(
    rows.map((r) => [
      r.t,
      { inserted: Number(r.i), updated: Number(r.u), hotUpdated: Number(r.h), deleted: Number(r.d) },
    ]),
  );
}

export async function pgSnapshot(pool: Pool, schema: string): Promise<PgSnapshot> {
  const tables = await tableStats(pool, schema);
  const { rows } = await pool.query<{ lsn: string; xacts: string; wal: string }>(
    `SELECT pg_current_wal_lsn()::text AS lsn, d.xact_commit + d.xact_rollback AS xacts, w.wal_bytes AS wal
       FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()`,
  );
  const r = rows[0]!;
  return { tables, lsn: r.lsn, dbXacts: Number(r.xacts), walBytes: Number(r.wal) };
}

const rowSum = (t: PgSnapshot['tables']) =>
  [...t.values()].reduce((s, r) => s + r.inserted + r.updated + r.deleted, 0);

/**
 * Waits until the schema's table statistics stop moving (backends report them at most once a second,
 * and an idle one up to 10 s later): two readings `quietMs` apart agree and `ready` holds, or the
 * deadline passes (then the last reading is used; the report says so).
 */
export async function settledTableStats(
  pool: Pool,
  schema: string,
  ready: (tables: PgSnapshot['tables']) => boolean,
  { quietMs = 1_500, timeoutMs = 30_000 } = {},
): Promise<{ tables: PgSnapshot['tables']; settled: boolean }> {
  const deadline = Date.now() + timeoutMs;
  let last = await tableStats(pool, schema);
  for (;;) {
    await new Promise((r) => setTimeout(r, quietMs));
    const now = await tableStats(pool, schema);
    if (ready(now) && rowSum(now) === rowSum(last)) return { tables: now, settled: true };
    if (Date.now() > deadline) return { tables: now, settled: false };
    last = now;
  }
}

export function tableDeltas(before: PgSnapshot['tables'], after: PgSnapshot['tables']): TableRows[] {
  return [...after]
    .map(([table, a]) => {
      const b = before.get(table) ?? { inserted: 0, updated: 0, hotUpdated: 0, deleted: 0 };
      return {
        table,
        inserted: a.inserted - b.inserted,
        updated: a.updated - b.updated,
        hotUpdated: a.hotUpdated - b.hotUpdated,
        deleted: a.deleted - b.deleted,
      };
    })
    .filter((t) => t.inserted + t.updated + t.deleted > 0)
    .sort((x, y) => y.inserted + y.updated + y.deleted - (x.inserted + x.updated + x.deleted));
}

/** WAL of one schema between two LSNs, by resource manager; the commit records of its transactions included. */
export interface SchemaWal {
  bytes: number;
  /** Of which full-page images. */
  fpiBytes: number;
  records: number;
  /** Transactions that wrote to the schema (their commit records). */
  commits: number;
  byKind: { kind: string; bytes: number; records: number }[];
}

/**
 * Reads the WAL between `startLsn` and `endLsn` with pg_walinspect (installed in `extSchema`) and keeps the
 * records whose block references name a relation of `schema` (tables, indexes, TOAST), plus the
 * transaction records (commits) of the transaction ids those records carry.
 */
export async function schemaWal(
  pool: Pool,
  schema: string,
  extSchema: string,
  startLsn: string,
  endLsn: string,
): Promise<SchemaWal> {
  const { rows } = await pool.query<{ kind: string; bytes: string; fpi: string; records: string }>(
    `WITH rels AS (
       SELECT pg_relation_filenode(c.oid)::text AS node FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
       UNION
       SELECT pg_relation_filenode(c.reltoastrelid)::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.reltoastrelid <> 0
       UNION
       SELECT pg_relation_filenode(i.indexrelid)::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index i ON i.indrelid = c.reltoastrelid
        WHERE n.nspname = $1 AND c.reltoastrelid <> 0),
     w AS (SELECT * FROM "${extSchema}".pg_get_wal_records_info($2::pg_lsn, $3::pg_lsn)),
     -- A record's first block reference names its relation (a B-tree split's others are the same index).
     ours AS (
       SELECT w.* FROM w WHERE substring(w.block_ref FROM 'rel \\d+/\\d+/(\\d+)') IN (SELECT node FROM rels)),
     xids AS (SELECT DISTINCT xid FROM ours WHERE xid <> '0'::xid),
     commits AS (SELECT w.* FROM w WHERE w.resource_manager = 'Transaction' AND w.xid IN (SELECT xid FROM xids))
     SELECT resource_manager || ':' || split_part(record_type, ' ', 1) AS kind,
            sum(record_length)::text AS bytes, sum(fpi_length)::text AS fpi, count(*)::text AS records
       FROM (SELECT * FROM ours UNION ALL SELECT * FROM commits) r GROUP BY 1 ORDER BY 2 DESC`,
    [schema, startLsn, endLsn],
  );
  const byKind = rows
    .map((r) => ({ kind: r.kind, bytes: Number(r.bytes), records: Number(r.records), fpi: Number(r.fpi) }))
    .sort((a, b) => b.bytes - a.bytes);
  return {
    bytes: byKind.reduce((s, k) => s + k.bytes, 0),
    fpiBytes: byKind.reduce((s, k) => s + k.fpi, 0),
    records: byKind.reduce((s, k) => s + k.records, 0),
    commits: byKind.filter((k) => k.kind.startsWith('Transaction:COMMIT')).reduce((s, k) => s + k.records, 0),
    byKind: byKind.map(({ kind, bytes, records }) => ({ kind, bytes, records })),
  };
}

/** Bytes between two LSNs (`X/Y` hex). */
export function lsnDiff(a: string, b: string): number {
  const n = (lsn: string) => {
    const [hi, lo] = lsn.split('/');
    return BigInt(`0x${hi}`) * 2n ** 32n + BigInt(`0x${lo}`);
  };
  return Number(n(b) - n(a));
}

/** utime + stime of a process in ticks (1/100 s), undefined once it is gone. */
export function procTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/** Local TCP ports of `pid`'s sockets connected to `remotePort` (its /proc fds matched against /proc/net/tcp*). */
function localPortsTo(pid: number, remotePort: number): number[] {
  let inodes: Set<string>;
  try {
    inodes = new Set(
      readdirSync(`/proc/${pid}/fd`)
        .map((fd) => {
          try {
            return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
          } catch {
            return undefined;
          }
        })
        .filter((i): i is string => i !== undefined),
    );
  } catch {
    return [];
  }
  const ports: number[] = [];
  for (const file of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !inodes.has(f[9]!)) continue;
      const local = parseInt(f[1]!.split(':')[1]!, 16);
      const remote = parseInt(f[2]!.split(':')[1]!, 16);
      if (remote === remotePort) ports.push(local);
    }
  }
  return ports;
}

/**
 * CPU of the PostgreSQL backends serving process `pid` (matched by its sockets' local ports against
 * `pg_stat_activity.client_port`), sampled every `intervalMs`: a backend seen for the first time counts
 * from then (from 0 if it started after `start()`). The WAL writer, checkpointer and autovacuum are
 * not included. A backend that exits loses at most one interval.
 */
export function backendCpu(pool: Pool, pid: number, pgPort: number, intervalMs = 250) {
  const seen = new Map<number, { from: number; last: number }>();
  let startedAt = new Date();
  let timer: NodeJS.Timeout | undefined;
  let sampling: Promise<void> = Promise.resolve();
  const sample = async () => {
    const ports = localPortsTo(pid, pgPort);
    if (ports.length === 0) return;
    const { rows } = await pool.query<{ pid: number; started: Date }>(
      'SELECT pid, backend_start AS started FROM pg_stat_activity WHERE client_port = ANY($1::int[])',
      [ports],
    );
    for (const r of rows) {
      const ticks = procTicks(r.pid);
      if (ticks === undefined) continue;
      const s = seen.get(r.pid);
      if (s) s.last = ticks;
      else seen.set(r.pid, { from: r.started >= startedAt ? 0 : ticks, last: ticks });
    }
  };
  return {
    async start() {
      startedAt = new Date();
      await sample();
      timer = setInterval(() => {
        sampling = sampling.then(sample).catch(() => undefined);
      }, intervalMs);
    },
    /** CPU ms used by the backends since `start()`, and how many there were. */
    async stop(): Promise<{ cpuMs: number; backends: number }> {
      clearInterval(timer);
      await sampling;
      await sample().catch(() => undefined);
      const ticks = [...seen.values()].reduce((s, b) => s + b.last - b.from, 0);
      return { cpuMs: ticks * 10, backends: seen.size };
    },
  };
}
