import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readBreakers } from '../../dashboard/overview/breakers.ts';
import {
  breakersKey,
  createBreakerReporter,
  sweepBreakerReports,
  type BreakerReporter,
} from '../../shared/resilience/breaker-reports.ts';
import { eventually, TEST_REDIS_URL, uniqueId } from '../support/env.ts';
import { alive } from '../support/owned-process.ts';

// Issue #20: circuit-breaker reports of replicas that died without a clean shutdown (`kill -9`, no
// `close()` to remove their fields) must not stay in Redis for good, nor count on the Overview.

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EVERY_MS = 100;
const STALE_MS = 600;

const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
const prefixes: string[] = [];
const reporters: BreakerReporter[] = [];
const children: ReturnType<typeof spawn>[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (alive(child)) child.kill('SIGKILL');
  await Promise.all(reporters.splice(0).map((r) => r.close()));
  for (const prefix of prefixes.splice(0)) await redis.del(breakersKey(prefix));
});
afterAll(() => redis.quit());

function newPrefix(): string {
  const prefix = uniqueId('brk');
  prefixes.push(prefix);
  return prefix;
}

/** A real worker-like process that reports its `payment` breaker open, until it is killed. */
function startReplica(prefix: string, replica: string) {
  const script = `
    import { Redis } from 'ioredis';
    import { createBreakerReporter } from './shared/resilience/breaker-reports.ts';
    const redis = new Redis(${JSON.stringify(TEST_REDIS_URL)});
    const breakers = createBreakerReporter(redis, ${JSON.stringify(prefix)}, {
      replica: ${JSON.stringify(replica)}, everyMs: ${EVERY_MS}, staleMs: ${STALE_MS},
    });
    breakers.report('payment', 'open');
    setInterval(() => undefined, 60_000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  return child;
}

const field = (replica: string) => `payment/${replica}`;

describe('circuit-breaker reports', () => {
  it("sweeps a kill -9'd replica's field while other replicas keep reporting", async () => {
    const prefix = newPrefix();
    const key = breakersKey(prefix);
    const survivor = createBreakerReporter(redis, prefix, {
      replica: 'survivor',
      everyMs: EVERY_MS,
      staleMs: STALE_MS,
    });
    reporters.push(survivor);
    survivor.report('payment', 'closed');

    const doomed = startReplica(prefix, 'doomed');
    await eventually(async () => (await redis.hexists(key, field('doomed'))) === 1, {
      what: 'the doomed replica to report',
    });
    doomed.kill('SIGKILL'); // no close(): its field is not removed by itself

    // The survivor's refreshes sweep the dead replica's field out of Redis…
    await eventually(async () => (await redis.hexists(key, field('doomed'))) === 0, {
      timeoutMs: 10_000,
      what: "the dead replica's field to be swept",
    });
    expect(await redis.hexists(key, field('survivor'))).toBe(1);
    // …and the Overview counts the survivor alone: no open breaker.
    const [payment] = await readBreakers(redis, prefix, Date.now(), STALE_MS);
    expect(payment).toMatchObject({ breaker: 'payment', state: 'closed' });
    expect(payment?.replicas).toEqual({ closed: 1, 'half-open': 0, open: 0 });
  });

  it('lets the whole hash expire once no replica reports any more', async () => {
    const prefix = newPrefix();
    const key = breakersKey(prefix);
    const only = startReplica(prefix, 'only');
    await eventually(async () => (await redis.hexists(key, field('only'))) === 1, {
      what: 'the replica to report',
    });
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(STALE_MS);

    only.kill('SIGKILL');
    await eventually(async () => (await redis.exists(key)) === 0, {
      timeoutMs: 10_000,
      what: 'the reports of a deployment with no live replica to expire',
    });
  });

  it('sweeps stale and malformed fields, and nothing else', async () => {
    const prefix = newPrefix();
    const key = breakersKey(prefix);
    const now = Date.now();
    const at = (ms: number) => new Date(ms).toISOString();
    await redis.hset(key, {
      'payment/fresh': JSON.stringify({ state: 'open', since: at(now), reportedAt: at(now) }),
      'payment/gone': JSON.stringify({ state: 'open', since: at(now), reportedAt: at(now - 120_000) }),
      'payment/garbage': 'not json',
    });
    expect(await sweepBreakerReports(redis, prefix, { now })).toBe(2);
    expect(Object.keys(await redis.hgetall(key))).toEqual(['payment/fresh']);

    // An hour later it is stale too: the last field gone, the hash is gone.
    expect(await sweepBreakerReports(redis, prefix, { now: now + 3_600_000 })).toBe(1);
    expect(await redis.exists(key)).toBe(0);
  });
});
