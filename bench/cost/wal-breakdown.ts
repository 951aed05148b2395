/**
 * Where a drained order's WAL goes, by relation and record kind (issue #25). Drains N pre-enqueued
 * orders through one `workers/main.ts` process on an isolated schema (as bench/stages.ts), reads the
 * WAL written meanwhile with the pg_walinspect extension and attributes each record to the relation
 * of its first block reference (heap, btree, full-page image) or, for commit and other block-less
 * records, to the transactions that touched the schema. pg_walinspect reads the whole cluster's WAL:
 * records of other schemas (other tests running beside it) are left out, so the numbers hold on a
 * shared server; only FPIs depend on when the server checkpoints.
 *
 *   node --import tsx bench/cost/wal-breakdown.ts [orders=2000] [variant ...]
 *
 * A variant is `name` or `name:KEY=VALUE,...,sql=<statements>` — env overrides for the worker and
 * SQL run in the schema after migrating (`;`-separated; e.g. `sql=ALTER TABLE outbox SET (fillfactor = 100)`
 * measures the schema before migration 0016). Variants run in turn, alternating, `ROUNDS` times.
 *
 * Environment: ROUNDS (default 1); WARMUP=k drains k orders before the window; CHECKPOINT=1 checkpoints
 * just before it (the window then pays the full-page images of a checkpoint cycle); KEEP_SCHEMA=1 keeps
 * the drained schema. A role with `ALTER ROLE … SET wal_compression = lz4` in a variant's DATABASE_URL
 * measures FPI compression without touching the server's settings. Also prints rows per table
 * (pg_stat_user_tables), writing transactions (commit records of transactions that wrote in the
 * schema) and the CPU of the worker's backends (bench/cost/pg.ts).
 */
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import pg from 'pg';
import { loadConfig } from '../../shared/config/config.ts';
import { migrate } from '../../shared/db/migrate.ts';
import { createPool } from '../../shared/db/pool.ts';
import { createOrdersQueue, PLACE_ORDER_JOB } from '../../modules/orders/queue.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import { isolatedEnv } from '../../test/support/env.ts';
import { makeOrderJobs } from '../baselines/naive-orders.ts';
import { MODULES } from '../../modules/registry.ts';
import { backendCpu } from './pg.ts';

interface Variant {
  name: string;
  env: Record<string, string>;
  sql: string[];
}

interface Breakdown {
  variant: string;
  orders: number;
  walBytes: number;
  fpiBytes: number;
  transactions: number;
  rows: Map<string, { ins: number; upd: number; hot: number; del: number }>;
  /** `relation|rmgr|record type` → records, bytes, of which FPI bytes. */
  records: Map<string, { n: number; bytes: number; fpi: number }>;
  ms: number;
  /** CPU of the worker's PostgreSQL backends during the window (bench/cost/pg.ts `backendCpu`), ms. */
  pgCpuMs: number;
}

function parseVariant(spec: string): Variant {
  const [name, rest = ''] = spec.split(/:(.*)/s) as [string, string?];
  const env: Record<string, string> = {};
  const sql: string[] = [];
  for (const pair of rest ? rest.split(/,(?=[A-Za-z_]+=)/) : []) {
    const at = pair.indexOf('=');
    const key = pair.slice(0, at);
    const value = pair.slice(at + 1);
    if (key === 'sql') sql.push(value);
    else env[key] = value;
  }
  return { name, env, sql };
}

async function drain(n: number, variant: Variant): Promise<Breakdown> {
  const env = isolatedEnv({ LOG_LEVEL: 'warn', METRICS_PORT: '0', ...variant.env });
  const config = loadConfig(env, { modules: MODULES });
  const schema = config.database.schema;
  const pool = createPool({ ...config.database, poolMax: 2 });
  await migrate(pool, schema, MODULES);
  for (const s of variant.sql) await pool.query(s);
  await pool.query('CREATE EXTENSION IF NOT EXISTS pg_walinspect WITH SCHEMA public');
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const queue = createOrdersQueue(redis, config.redis.queuePrefix);
  await queue.pause();
  const opts = commandJobOptions({ attempts: 5, backoffMs: 1_000, keepCompletedSeconds: 3_600 });
  const warmup = Number(process.env.WARMUP ?? 0);
  const jobs = makeOrderJobs(warmup + n, `wal-${variant.name}`, 3);
  const enqueue = async (from: number, to: number) => {
    for (let i = from; i < to; i += 1_000) {
      await queue.addBulk(
        jobs
          .slice(i, Math.min(i + 1_000, to))
          .map((data) => ({ name: PLACE_ORDER_JOB, data, opts: { ...opts, jobId: data.orderId } })),
      );
    }
  };
  if (warmup === 0) await enqueue(0, n);
  const worker = spawn(process.execPath, ['--import', 'tsx', 'workers/main.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((r) => worker.once('exit', r));
  for (;;) {
    if ((await queue.getWorkersCount()) > 0) break;
    if (worker.exitCode !== null) throw new Error(`workers exited with ${worker.exitCode}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const db = new pg.Client({
    connectionString: config.database.url,
    options: `-c search_path=${schema},public`,
  });
  await db.connect();
  const tableStats = async () =>
    (
      await db.query<{ relname: string; ins: string; upd: string; hot: string; del: string }>(
        `SELECT relname, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_hot_upd AS hot, n_tup_del AS del
           FROM pg_stat_user_tables WHERE schemaname = $1`,
        [schema],
      )
    ).rows;
  // WARMUP=k drains k orders first (the tables and indexes then have pages to touch again); CHECKPOINT=1
  // then checkpoints, so the measured window pays the full-page images a checkpoint costs in production.
  if (warmup > 0) {
    await queue.pause();
    const w0 = Date.now();
    await enqueue(0, warmup);
    await queue.resume();
    await waitDrained(db, warmup, w0);
    await queue.pause();
    await enqueue(warmup, warmup + n);
  }
  if (process.env.CHECKPOINT) await db.query('CHECKPOINT');
  await db.query('SELECT pg_stat_clear_snapshot()');
  const before = await tableStats();
  const startLsn = (await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn() AS lsn')).rows[0]!.lsn;
  const cpu = backendCpu(pool, worker.pid!, Number(new URL(config.database.url).port || 5432));
  await cpu.start();
  const t0 = Date.now();
  await queue.resume();
  await waitDrained(db, warmup + n, t0);
  const ms = Date.now() - t0;
  const { cpuMs: pgCpuMs } = await cpu.stop();
  // Let stragglers (the last batch's bookkeeping) commit, then stop the worker before closing the window.
  worker.kill('SIGTERM');
  await exited;
  const endLsn = (await db.query<{ lsn: string }>('SELECT pg_current_wal_flush_lsn() AS lsn')).rows[0]!.lsn;
  // Table stats are flushed by backends at exit / every second: poll until the inserts show.
  let after = await tableStats();
  for (let i = 0; i < 40; i += 1) {
    const orders = after.find((r) => r.relname === 'orders');
    const prev = before.find((r) => r.relname === 'orders');
    if (orders && Number(orders.ins) - Number(prev?.ins ?? 0) >= n) break;
    await new Promise((r) => setTimeout(r, 250));
    await db.query('SELECT pg_stat_clear_snapshot()');
    after = await tableStats();
  }
  const rows = new Map<string, { ins: number; upd: number; hot: number; del: number }>();
  for (const a of after) {
    const b = before.find((r) => r.relname === a.relname);
    const d = {
      ins: Number(a.ins) - Number(b?.ins ?? 0),
      upd: Number(a.upd) - Number(b?.upd ?? 0),
      hot: Number(a.hot) - Number(b?.hot ?? 0),
      del: Number(a.del) - Number(b?.del ?? 0),
    };
    if (d.ins + d.upd + d.del > 0) rows.set(a.relname, d);
  }
  // Every relation of the schema (tables, their indexes, their TOAST tables and TOAST indexes).
  const { rows: rels } = await db.query<{ node: string; name: string }>(
    `SELECT c.relfilenode::text AS node, c.relname AS name FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relfilenode <> 0
     UNION ALL
     SELECT t.relfilenode::text, c.relname || ' (toast)' FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class t ON t.oid = c.reltoastrelid WHERE n.nspname = $1
     UNION ALL
     SELECT i.relfilenode::text, c.relname || ' (toast idx)' FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index x ON x.indrelid = c.reltoastrelid
       JOIN pg_class i ON i.oid = x.indexrelid WHERE n.nspname = $1`,
    [schema],
  );
  const relName = new Map(rels.map((r) => [r.node, r.name]));
  const { rows: wal } = await db.query<{
    xid: string;
    rm: string;
    type: string;
    len: number;
    fpi: number;
    block_ref: string | null;
  }>(
    `SELECT xid::text, resource_manager AS rm, record_type AS type, record_length AS len, fpi_length AS fpi, block_ref
       FROM pg_get_wal_records_info($1, $2)`,
    [startLsn, endLsn],
  );
  const records = new Map<string, { n: number; bytes: number; fpi: number }>();
  const ours = new Set<string>();
  const add = (key: string, len: number, fpi: number) => {
    const cur = records.get(key) ?? { n: 0, bytes: 0, fpi: 0 };
    records.set(key, { n: cur.n + 1, bytes: cur.bytes + len, fpi: cur.fpi + fpi });
  };
  const pending: typeof wal = [];
  for (const r of wal) {
    const node = r.block_ref ? /rel \d+\/\d+\/(\d+)/.exec(r.block_ref)?.[1] : undefined;
    const name = node ? relName.get(node) : undefined;
    if (name) {
      add(`${name}|${r.rm}|${r.type}`, r.len, r.fpi);
      if (r.xid !== '0') ours.add(r.xid);
    } else if (!node) pending.push(r);
  }
  // Block-less records (commits, running-xacts, ...) of transactions that wrote in the schema.
  let transactions = 0;
  for (const r of pending) {
    if (r.xid === '0' || !ours.has(r.xid)) continue;
    add(`(commit/xact)|${r.rm}|${r.type}`, r.len, r.fpi);
    if (r.rm === 'Transaction' && /COMMIT|ABORT/.test(r.type)) transactions += 1;
  }
  let walBytes = 0;
  let fpiBytes = 0;
  for (const v of records.values()) {
    walBytes += v.bytes;
    fpiBytes += v.fpi;
  }
  await db.end();
  await queue.obliterate({ force: true });
  await queue.close();
  redis.disconnect();
  // KEEP_SCHEMA=1 leaves the drained schema in place (to look at its rows); it is printed.
  if (process.env.KEEP_SCHEMA) console.log(`kept schema ${schema}`);
  else await pool.query(`DROP SCHEMA ${schema} CASCADE`);
  await pool.end();
  return { variant: variant.name, orders: n, walBytes, fpiBytes, transactions, rows, records, ms, pgCpuMs };
}

/** Waits until `total` events are published and projected (orders of a warm-up included). */
async function waitDrained(db: pg.Client, total: number, t0: number): Promise<void> {
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const { rows } = await db.query<{ published: number; projected: number }>(
      `SELECT (SELECT count(*) FROM outbox WHERE published_at IS NOT NULL)::int AS published,
              (SELECT count(*) FROM projection_inbox)::int AS projected`,
    );
    if (rows[0]!.published >= total && rows[0]!.projected >= total) return;
    if (Date.now() - t0 > 600_000) throw new Error(`drain stalled: ${JSON.stringify(rows[0])}`);
  }
}

const fmt = (v: number, d = 1) => v.toFixed(d).padStart(9);

function report(b: Breakdown): void {
  const per = (v: number) => v / b.orders;
  console.log(
    `\n== ${b.variant}: ${b.orders} orders in ${(b.ms / 1000).toFixed(1)}s — WAL ${per(b.walBytes).toFixed(0)} B/order ` +
      `(FPI ${per(b.fpiBytes).toFixed(0)}), ${per(b.transactions).toFixed(3)} writing xacts/order`,
  );
  const byRel = new Map<string, { bytes: number; fpi: number }>();
  for (const [key, v] of b.records) {
    const rel = key.split('|')[0]!;
    const cur = byRel.get(rel) ?? { bytes: 0, fpi: 0 };
    byRel.set(rel, { bytes: cur.bytes + v.bytes, fpi: cur.fpi + v.fpi });
  }
  console.log('relation                                  B/order   FPI B/order');
  for (const [rel, v] of [...byRel].sort((x, y) => y[1].bytes - x[1].bytes))
    console.log(`${rel.padEnd(40)} ${fmt(per(v.bytes))} ${fmt(per(v.fpi))}`);
  console.log('\nrelation|rmgr|record                                    recs/order  B/order  FPI B/order');
  for (const [key, v] of [...b.records].sort((x, y) => y[1].bytes - x[1].bytes).slice(0, 40))
    console.log(`${key.padEnd(58)} ${fmt(per(v.n), 3)} ${fmt(per(v.bytes))} ${fmt(per(v.fpi))}`);
  let total = 0;
  console.log('\ntable                      ins/order upd/order hot/order del/order');
  for (const [t, r] of [...b.rows].sort((x, y) => y[1].ins + y[1].upd - x[1].ins - x[1].upd)) {
    total += r.ins + r.upd + r.del;
    console.log(
      `${t.padEnd(26)} ${fmt(per(r.ins), 3)} ${fmt(per(r.upd), 3)} ${fmt(per(r.hot), 3)} ${fmt(per(r.del), 3)}`,
    );
  }
  console.log(`rows written per order: ${per(total).toFixed(2)}`);
}

async function main(): Promise<void> {
  const [countArg, ...specs] = process.argv.slice(2);
  const n = Number(countArg ?? 2_000);
  const variants = (specs.length > 0 ? specs : ['baseline']).map(parseVariant);
  const rounds = Number(process.env.ROUNDS ?? 1);
  const results: Breakdown[] = [];
  for (let round = 0; round < rounds; round += 1) {
    for (const v of variants) {
      const b = await drain(n, v);
      report(b);
      results.push(b);
    }
  }
  console.log(
    '\n== summary (per order): variant | WAL B | non-FPI WAL B | FPI B | writing xacts | rows | drain s | PG CPU ms',
  );
  for (const b of results) {
    let rows = 0;
    for (const r of b.rows.values()) rows += r.ins + r.upd + r.del;
    console.log(
      `${b.variant.padEnd(20)} ${fmt(b.walBytes / n, 0)} ${fmt((b.walBytes - b.fpiBytes) / n, 0)} ${fmt(b.fpiBytes / n, 0)} ${fmt(b.transactions / n, 3)} ${fmt(rows / n, 2)} ${fmt(b.ms / 1000)} ${fmt(b.pgCpuMs / n, 3)}`,
    );
  }
}

await main();
