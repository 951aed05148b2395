/**
 * Where a drain spends its time: pre-enqueues a backlog on the `orders` queue (paused), starts one
 * `workers/main.ts` process, resumes the queue and samples how far each stage got — orders decided
 * (write model), events published (outbox marked), events projected (inbox) — every second.
 * A stage that trails the one before it is the bottleneck.
 *
 *   node --import tsx bench/stages.ts [orders=20000] [KEY=VALUE ...]   # extra platform env
 *   STAGES_CPU_PROF=/tmp/prof node --import tsx bench/stages.ts        # plus a CPU profile of the worker
 */
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import pg from 'pg';
import { loadConfig } from '../shared/config/config.ts';
import { migrate } from '../shared/db/migrate.ts';
import { createPool } from '../shared/db/pool.ts';
import { createOrdersQueue, PLACE_ORDER_JOB } from '../modules/orders/queue.ts';
import { commandJobOptions } from '../shared/queue/command-queue.ts';
import { isolatedEnv } from '../test/support/env.ts';
import { makeOrderJobs } from './baselines/naive-orders.ts';
import { MODULES } from '../modules/registry.ts';

async function main(): Promise<void> {
  const [countArg, ...pairs] = process.argv.slice(2);
  const n = Number(countArg ?? 20_000);
  const extra = Object.fromEntries(
    pairs.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]),
  );
  const env = isolatedEnv({ LOG_LEVEL: 'warn', METRICS_PORT: '0', ...extra });
  const config = loadConfig(env, { modules: MODULES });
  const pool = createPool({ ...config.database, poolMax: 2 });
  await migrate(pool, config.database.schema, MODULES);
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const queue = createOrdersQueue(redis, config.redis.queuePrefix);
  await queue.pause();
  const opts = commandJobOptions({ attempts: 5, backoffMs: 1_000, keepCompletedSeconds: 3_600 });
  // The same order commands the bench's baselines process (3 items each).
  const jobs = makeOrderJobs(n, 'stages', 3);
  for (let i = 0; i < n; i += 1_000) {
    await queue.addBulk(
      jobs.slice(i, i + 1_000).map((data) => ({
        name: PLACE_ORDER_JOB,
        data,
        opts: { ...opts, jobId: data.orderId },
      })),
    );
  }
  const profDir = process.env.STAGES_CPU_PROF;
  const worker = spawn(
    process.execPath,
    [...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), '--import', 'tsx', 'workers/main.ts'],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const exited = new Promise((r) => worker.once('exit', r));
  for (;;) {
    if ((await queue.getWorkersCount()) > 0) break;
    if (worker.exitCode !== null) throw new Error(`workers exited with ${worker.exitCode}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const db = new pg.Client({
    connectionString: config.database.url,
    options: `-c search_path=${config.database.schema}`,
  });
  await db.connect();
  const t0 = Date.now();
  await queue.resume();
  const row = async () =>
    (
      await db.query<{ decided: number; published: number; projected: number }>(
        `SELECT (SELECT count(*) FROM orders)::int AS decided,
                (SELECT count(*) FROM outbox WHERE published_at IS NOT NULL)::int AS published,
                (SELECT count(*) FROM projection_inbox)::int AS projected`,
      )
    ).rows[0]!;
  let last = { decided: 0, published: 0, projected: 0 };
  let lastT = t0;
  for (;;) {
    await new Promise((r) => setTimeout(r, 1_000));
    const now = Date.now();
    const r = await row();
    const rate = (a: number, b: number) => Math.round(((a - b) * 1000) / (now - lastT));
    console.log(
      `${((now - t0) / 1000).toFixed(1)}s decided ${r.decided} (${rate(r.decided, last.decided)}/s) published ${r.published} (${rate(r.published, last.published)}/s) projected ${r.projected} (${rate(r.projected, last.projected)}/s)`,
    );
    last = r;
    lastT = now;
    if (r.projected >= n) break;
  }
  console.log(`drain: ${Math.round((n * 1000) / (Date.now() - t0))} orders/s end to end`);
  worker.kill('SIGTERM');
  await exited;
  await db.end();
  await queue.obliterate({ force: true });
  await queue.close();
  redis.disconnect();
  await pool.query(`DROP SCHEMA ${config.database.schema} CASCADE`);
  await pool.end();
}

await main();
