import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { OrdersQueues } from '../../modules/orders/queue.ts';
import { createFairQueue, type FairQueue } from '../../shared/fairness/fair-queue.ts';
import { createPool, type Pool } from '../../shared/db/pool.ts';
import { createCommandQueue, type CommandQueue } from '../../shared/queue/command-queue.ts';
import { sha256 } from '../../shared/security/api-keys.ts';
import type { LoadResult } from '../load.ts';
import type { ProcessMonitor } from '../monitor.ts';
import { runOpenLoop } from '../open-loop.ts';
import type { Progress } from '../progress.ts';
import { createStack, type Stack } from '../stack.ts';
import { verifyRun, waitProjected, type Verification } from '../verify.ts';
import type { OrderTimes } from './analysis.ts';
import { flood } from './flood.ts';
import { startPrivateRedis, type PrivateRedis } from './private-redis.ts';

/**
 * One Conveyor deployment for the fairness bench: the real API and worker processes (bench/stack.ts)
 * on a private redis-server and an isolated PostgreSQL schema, with one API key per tenant.
 */
export interface FairStack {
  stack: Stack;
  redis: PrivateRedis;
  /** The bench's own connection to the private Redis (INFO, backlog samples, job counts). */
  client: Redis;
  pool: Pool;
  queue: CommandQueue;
  /** The orders queue's fair view (for backlog samples), whether or not the platform runs with fairness. */
  fair: FairQueue;
  /** API key secret per tenant (key id). */
  secrets: Record<string, string>;
  apiUrl: string;
  /** Every order id an API answered `queued` for, in this stack. */
  accepted: string[];
  /** Requests whose outcome the bench never learned (errors, timeouts, non-202 single posts, item errors). */
  unknownOutcomes: number;
  pendingJobs(): Promise<number>;
  close(): Promise<void>;
}

export interface FairStackOptions {
  name: string;
  /** FAIRNESS for the platform's processes. */
  fairness: boolean;
  /** Tenants (= API key ids) to create keys for. */
  tenants: readonly string[];
  /** TENANTS for the platform (weights, limits); '' = every tenant at the defaults. */
  tenantPolicies?: string;
  logLevel: string;
  platformEnv: Record<string, string>;
  monitor: ProcessMonitor;
  progress: Progress;
  live: Set<{ close(): Promise<void> }>;
  /** Where a start-up that had to be retried is recorded (it shows in the results). */
  notes: string[];
}

export const WARMUP_TENANT = 'warmup';

/**
 * Starts redis, the API and one worker process, and pushes warm-up orders through every hop. A stack
 * that fails to come up is started afresh once; the first failure is kept in `o.notes`.
 */
export async function startFairStack(o: FairStackOptions): Promise<FairStack> {
  try {
    return await startOnce(o);
  } catch (err) {
    const first = (err instanceof Error ? err.message : String(err)).split('\n').slice(0, 3).join(' | ');
    o.notes.push(`${o.name}: the stack failed to start once and was started again: ${first}`);
    o.progress.done(`${o.name}: start-up failed (${first}); starting it again`);
    return startOnce(o);
  }
}

async function startOnce(o: FairStackOptions): Promise<FairStack> {
  const redis = await startPrivateRedis();
  const tenants = [...o.tenants, WARMUP_TENANT];
  const secrets = Object.fromEntries(tenants.map((t) => [t, randomBytes(18).toString('base64url')]));
  const apiKeys = tenants
    .map((t) => `${t}:orders:write+orders:read:${sha256(secrets[t]!).toString('hex')}`)
    .join(',');
  const stack = createStack({
    name: o.name,
    bus: 'bullmq',
    logLevel: o.logLevel,
    monitor: o.monitor,
    cpuProfDir: undefined,
    env: {
      ...o.platformEnv,
      REDIS_URL: redis.url,
      API_KEYS: apiKeys,
      FAIRNESS: String(o.fairness),
      TENANTS: o.tenantPolicies ?? '',
    },
  });
  o.monitor.watch(`redis-${o.name}`, redis.pid);
  const client = new Redis(redis.url, { maxRetriesPerRequest: null });
  const pool = createPool({ ...stack.config.database, poolMax: 2, statementTimeoutMs: 120_000 });
  const queue = createCommandQueue(client, stack.config.redis.queuePrefix, OrdersQueues.commands);
  const fair = createFairQueue(OrdersQueues.commands, queue.toKey(''), {
    depth: stack.config.fairness.depth,
    holdMs: stack.config.fairness.holdMs,
  });
  let closing: Promise<void> | undefined;
  const self: FairStack = {
    stack,
    redis,
    client,
    pool,
    queue,
    fair,
    secrets,
    apiUrl: '',
    accepted: [],
    unknownOutcomes: 0,
    async pendingJobs() {
      const counts = await queue.getJobCounts('waiting', 'paused', 'active', 'delayed', 'prioritized');
      return Object.values(counts).reduce((a, b) => a + b, 0);
    },
    close: () =>
      (closing ??= (async () => {
        await queue.close().catch(() => undefined);
        await stack.close().catch(() => undefined);
        client.disconnect();
        await pool.end().catch(() => undefined);
        await redis.stop();
        o.live.delete(self);
      })()),
  };
  o.live.add(self);
  try {
    await stack.startApi(1);
    await stack.startWorkers(1);
    self.apiUrl = stack.apiUrls[0]!;
    // Every hop once (batch route, single route, worker, relay, projections), then the JIT warmed on both routes.
    const warm = await flood(
      {
        url: self.apiUrl,
        tenant: WARMUP_TENANT,
        secret: secrets[WARMUP_TENANT]!,
        tag: 'warm',
        orders: 2_000,
        orderSize: 3,
        lanes: 2,
        progress: o.progress,
      },
      self.accepted,
    );
    self.unknownOutcomes += warm.itemErrors;
    const single = await runOpenLoop({
      urls: [self.apiUrl],
      ratePerS: 200,
      durationS: 2,
      path: '/v1/orders',
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${secrets[WARMUP_TENANT]!}` },
      body: JSON.stringify({
        customerId: 'warm-single',
        currency: 'EUR',
        items: [{ sku: 's', quantity: 1, unitPriceCents: 100 }],
      }),
      acceptedIds: self.accepted,
    });
    self.unknownOutcomes += single.scheduled - single.accepted;
    await waitProjected(pool, self.accepted.length, {
      label: `${o.name} warm-up`,
      timeoutMs: 120_000,
      progress: o.progress,
      pendingJobs: self.pendingJobs,
      check: stack.assertAlive,
    });
  } catch (err) {
    await self.close();
    throw err;
  }
  return self;
}

/** Where one command's time went in Redis and the worker: BullMQ's own timestamps (ms since the epoch). */
export interface JobStage {
  /** The job built and sent by the API (`timestamp`): after admission, before the add reaches Redis. */
  addedAt: number;
  /** A worker took it (`processedOn`). */
  pickedAt: number;
  /** Added held (a delay in its options): it waited for its tenant's turn. */
  held: boolean;
}

/**
 * Completed jobs of `tenants` finished in [from, to], filtered inside Redis (the bench reads a few
 * thousand hashes, not every flood job's data), a page of {@link STAGE_PAGE} ids per script call so
 * Redis never stops for long while the measurement runs. BullMQ keeps the last 100,000 completed jobs,
 * so read before older ones are trimmed.
 */
const JOB_STAGES = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #ids, 2 do
  local id = ids[i]
  local h = redis.call('HMGET', ARGV[4] .. id, 'data', 'timestamp', 'processedOn', 'opts')
  if h[1] then
    for k = 5, #ARGV do
      if string.find(h[1], ARGV[k], 1, true) then
        out[#out + 1] = { id, h[2] or '0', h[3] or '0', h[4] or '{}' }
        break
      end
    end
  end
end
return { out, #ids / 2, ids[#ids] or ARGV[2] }
`;

const STAGE_PAGE = 1_000;

export async function readJobStages(
  s: FairStack,
  tenants: readonly string[],
  from: number,
  to: number,
): Promise<Map<string, JobStage>> {
  const out = new Map<string, JobStage>();
  const patterns = tenants.map((t) => `"acceptedBy":${JSON.stringify(t)}`);
  let min = from;
  for (;;) {
    const [rows, seen, lastScore] = (await s.client.eval(
      JOB_STAGES,
      1,
      s.queue.toKey('completed'),
      min,
      to,
      STAGE_PAGE,
      s.queue.toKey(''),
      ...patterns,
    )) as [[string, string, string, string][], number, string];
    for (const [id, timestamp, processedOn, opts] of rows) {
      const delay = (JSON.parse(opts) as { delay?: number }).delay ?? 0;
      out.set(id, { addedAt: Number(timestamp), pickedAt: Number(processedOn), held: delay > 0 });
    }
    // The next page starts at the last score seen (inclusive: jobs finished in the same ms; the map dedupes).
    if (seen < STAGE_PAGE || Number(lastScore) <= min) break;
    min = Number(lastScore);
  }
  return out;
}

/** Every order's timestamps, from the write model and the projection inbox. */
export async function readOrderTimes(pool: Pool): Promise<OrderTimes[]> {
  const { rows } = await pool.query<{
    order_id: string;
    tenant: string | null;
    customer_id: string;
    acc: number;
    dec: number;
    proj: number | null;
  }>(
    `SELECT o.order_id::text, o.accepted_by AS tenant, o.customer_id,
            (extract(epoch FROM o.accepted_at) * 1000)::float8 AS acc,
            (extract(epoch FROM o.decided_at) * 1000)::float8 AS dec,
            (extract(epoch FROM i.processed_at) * 1000)::float8 AS proj
       FROM orders o
       LEFT JOIN outbox ob ON ob.aggregate_id = o.order_id::text
       LEFT JOIN projection_inbox i ON i.event_id = ob.event_id`,
  );
  return rows.map((r) => ({
    orderId: r.order_id,
    tenant: r.tenant ?? '',
    customerId: r.customer_id,
    acceptedAt: r.acc,
    decidedAt: r.dec,
    projectedAt: r.proj,
  }));
}

/**
 * {@link verifyRun}, and when anything was dead-lettered, why (the stack's schema is dropped right
 * after, so the reasons must be kept now): the commonest errors, appended to its problems.
 */
export async function verifyStack(s: FairStack): Promise<Verification> {
  const v = await verifyRun(s.pool, s.accepted, s.unknownOutcomes);
  if (v.deadLetters > 0) {
    const { rows } = await s.pool.query<{ origin: string; error: string; attempts: number; n: number }>(
      `SELECT origin, left(error, 200) AS error, max(attempts)::int AS attempts, count(*)::int AS n
         FROM dead_letters GROUP BY 1, 2 ORDER BY 4 DESC LIMIT 5`,
    );
    for (const r of rows)
      v.problems.push(`dead letters from ${r.origin}: ${r.n} × "${r.error}" (up to ${r.attempts} attempts)`);
    const { rows: statuses } = await s.pool.query<{ status: string; n: number }>(
      'SELECT status, count(*)::int AS n FROM orders GROUP BY 1 ORDER BY 1',
    );
    v.problems.push(`orders by status: ${statuses.map((x) => `${x.status} ${x.n}`).join(', ')}`);
  }
  return v;
}

/** Orders in the write model (every tenant, or one). */
export async function decidedCount(pool: Pool, tenant?: string): Promise<number> {
  const { rows } = tenant
    ? await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM orders WHERE accepted_by = $1', [
        tenant,
      ])
    : await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM orders');
  return rows[0]!.n;
}

/** Polls until `tenant` has `expected` orders decided; returns when (ms since the epoch). */
export async function waitDecided(
  s: FairStack,
  tenant: string,
  expected: number,
  o: { timeoutMs: number; progress: Progress; label: string },
): Promise<number> {
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    const n = await decidedCount(s.pool, tenant);
    o.progress.update(o.label, n, expected);
    if (n >= expected) return Date.now();
    s.stack.assertAlive();
    if (Date.now() > deadline)
      throw new Error(`${o.label}: ${n} of ${expected} decided after ${o.timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Non-202 answers and lost requests of load phases: outcomes the bench cannot know. */
export const unknownOf = (loads: readonly Pick<LoadResult, 'errors' | 'non2xx' | 'timeouts'>[]) =>
  loads.reduce((n, l) => n + l.errors + l.non2xx + l.timeouts, 0);
