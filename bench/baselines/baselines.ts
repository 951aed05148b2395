import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Logger, run as runGraphile, makeWorkerUtils, type Task } from 'graphile-worker';
import { createPool, type Pool } from '../../shared/db/pool.ts';
import { migrate } from '../../shared/db/migrate.ts';
import type { OrderJob } from '../../modules/orders/domain.ts';
import { PLACE_ORDER_JOB } from '../../modules/orders/queue.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import { TEST_DATABASE_URL, TEST_REDIS_URL, uniqueId } from '../../test/support/env.ts';
import type { Progress } from '../progress.ts';
import { applyNaively, makeOrderJobs, verifyBaseline } from './naive-orders.ts';
import { MODULES } from '../../modules/registry.ts';

/** One baseline's drain of a pre-enqueued backlog. */
export interface BaselineResult {
  name: 'ceiling' | 'naive' | 'peer';
  description: string;
  jobs: number;
  drainMs: number;
  perS: number;
  verified: { ok: boolean; problems: string[] };
  settings: Record<string, unknown>;
}

export interface BaselineOptions {
  jobs: number;
  orderSize: number;
  progress: Progress;
}

/** Conveyor's defaults, so the baselines get the same prefetch and the same Postgres pool. */
const CONCURRENCY = 50;
const POOL_MAX = 10;
/** graphile-worker's documented performance configuration (worker.graphile.org/docs/performance). */
const GRAPHILE = {
  concurrentJobs: 24,
  maxPoolSize: 25,
  localQueue: { size: 500 },
  completeJobBatchDelay: 0,
  failJobBatchDelay: 0,
};

const rate = (n: number, ms: number) => Math.round(n / (ms / 1000));

async function addInChunks(queue: Queue, jobs: readonly OrderJob[]): Promise<void> {
  const opts = commandJobOptions({ attempts: 5, backoffMs: 1_000, keepCompletedSeconds: 3_600 });
  for (let i = 0; i < jobs.length; i += 1_000) {
    await queue.addBulk(
      jobs
        .slice(i, i + 1_000)
        .map((data) => ({ name: PLACE_ORDER_JOB, data, opts: { ...opts, jobId: data.orderId } })),
    );
  }
}

/**
 * Enqueues every job with addBulk (Conveyor's job options), then times a BullMQ worker draining them
 * with `processor` — from the worker's creation to its last completion.
 */
async function bullmqDrain(
  label: string,
  jobs: readonly OrderJob[],
  processor: (data: OrderJob) => Promise<void>,
  progress: Progress,
): Promise<number> {
  const prefix = uniqueId('bb');
  const connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue('orders', { connection, prefix });
  try {
    await addInChunks(queue, jobs);
    let completed = 0;
    let lastAt = 0;
    const started = performance.now();
    const worker = new Worker<OrderJob>('orders', (job) => processor(job.data), {
      connection: new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null }),
      prefix,
      concurrency: CONCURRENCY,
    });
    const failures: Error[] = [];
    worker.on('failed', (_job, err) => failures.push(err));
    await new Promise<void>((resolve, reject) => {
      worker.on('completed', () => {
        completed += 1;
        lastAt = performance.now();
        if (completed % 500 === 0) progress.update(label, completed, jobs.length);
        if (completed === jobs.length) resolve();
      });
      const guard = setInterval(() => {
        if (failures.length > 0) reject(new Error(`${label}: job failed: ${failures[0]!.message}`));
      }, 200);
      worker.on('closed', () => clearInterval(guard));
    }).finally(() => worker.close());
    await (worker.opts.connection as Redis).quit();
    return lastAt - started;
  } finally {
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    await connection.quit();
  }
}

async function withSchema<T>(fn: (pool: Pool, schema: string) => Promise<T>): Promise<T> {
  const schema = uniqueId('bn');
  const pool = createPool({ url: TEST_DATABASE_URL, schema, poolMax: POOL_MAX, statementTimeoutMs: 60_000 });
  try {
    await migrate(pool, schema, MODULES);
    return await fn(pool, schema);
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await pool.end();
  }
}

/** (a) The raw ceiling: a BullMQ worker that does nothing, draining the same jobs. */
export async function runCeiling(options: BaselineOptions): Promise<BaselineResult> {
  const jobs = makeOrderJobs(options.jobs, 'ceil', options.orderSize);
  const ms = await bullmqDrain('ceiling', jobs, async () => undefined, options.progress);
  return {
    name: 'ceiling',
    description: 'BullMQ worker with an empty processor (addBulk, then drain)',
    jobs: jobs.length,
    drainMs: Math.round(ms),
    perS: rate(jobs.length, ms),
    verified: { ok: true, problems: [] },
    settings: { concurrency: CONCURRENCY },
  };
}

/** (b) The naive pipeline: a BullMQ worker, one Postgres transaction per job, read models row by row. */
export async function runNaive(options: BaselineOptions): Promise<BaselineResult> {
  return withSchema(async (pool, schema) => {
    const jobs = makeOrderJobs(options.jobs, 'naive', options.orderSize);
    const ms = await bullmqDrain(
      'naive',
      jobs,
      async (job) => {
        const client = await pool.connect();
        try {
          await applyNaively(client, schema, job);
        } finally {
          client.release();
        }
      },
      options.progress,
    );
    const verified = await verifyBaseline(pool, schema, jobs);
    return {
      name: 'naive',
      description: 'BullMQ worker, one transaction per job: insert order, upsert view and stats rows',
      jobs: jobs.length,
      drainMs: Math.round(ms),
      perS: rate(jobs.length, ms),
      verified,
      settings: { concurrency: CONCURRENCY, poolMax: POOL_MAX },
    };
  });
}

/**
 * (c) The peer: graphile-worker 0.17 doing the naive order work in its own transaction per job, tuned
 * as its performance page recommends (local queue of 500, batched completions and failures).
 */
export async function runPeer(options: BaselineOptions): Promise<BaselineResult> {
  return withSchema(async (pool, schema) => {
    const gwSchema = `${schema}_gw`;
    const jobs = makeOrderJobs(options.jobs, 'peer', options.orderSize);
    const logger = new Logger(() => () => undefined);
    const utils = await makeWorkerUtils({ connectionString: TEST_DATABASE_URL, schema: gwSchema, logger });
    try {
      await utils.migrate();
      for (let i = 0; i < jobs.length; i += 1_000) {
        await utils.addJobs(
          jobs.slice(i, i + 1_000).map((payload) => ({ identifier: 'place_order', payload })),
        );
      }
    } finally {
      await utils.release();
    }
    let completed = 0;
    let lastAt = 0;
    let failure: Error | undefined;
    const placeOrder: Task = async (payload, helpers) => {
      await helpers.withPgClient((client) => applyNaively(client, schema, payload as OrderJob));
    };
    const started = performance.now();
    const runner = await runGraphile({
      noHandleSignals: true,
      taskList: { place_order: placeOrder },
      logger,
      preset: {
        worker: { connectionString: TEST_DATABASE_URL, schema: gwSchema, pollInterval: 1_000, ...GRAPHILE },
      },
    });
    try {
      await new Promise<void>((resolve, reject) => {
        runner.events.on('job:success', () => {
          completed += 1;
          lastAt = performance.now();
          if (completed % 500 === 0) options.progress.update('peer', completed, jobs.length);
          if (completed === jobs.length) resolve();
        });
        runner.events.on('job:error', ({ error }) => {
          failure ??= error instanceof Error ? error : new Error(String(error));
          reject(failure);
        });
      });
    } finally {
      await runner.stop();
      await pool.query(`DROP SCHEMA IF EXISTS "${gwSchema}" CASCADE`).catch(() => undefined);
    }
    const verified = await verifyBaseline(pool, schema, jobs);
    const ms = lastAt - started;
    return {
      name: 'peer',
      description: 'graphile-worker 0.17.3, the same naive transaction per job',
      jobs: jobs.length,
      drainMs: Math.round(ms),
      perS: rate(jobs.length, ms),
      verified,
      settings: { ...GRAPHILE },
    };
  });
}
