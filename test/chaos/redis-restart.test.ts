import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../support/env.ts';
import { request } from '../support/http.ts';
import type { Proc } from '../support/processes.ts';
import { ownRedis, type OwnRedis } from '../support/redis-server.ts';
import { chaosEnv, makeOrders, openDb, startApi, startWorkers, teardown } from './harness.ts';
import { awaitReconciled } from './reconcile.ts';

/** Clients posting single orders in a loop, recording what the API answered. */
function startTraffic(apiUrl: string, clients: number) {
  const accepted: string[] = [];
  const statuses = new Map<number, number>();
  const errors: string[] = [];
  let running = true;
  let sent = 0;
  const client = async (n: number) => {
    for (let i = 0; running; i++) {
      const [order] = makeOrders(1, `redis-${n}-${i % 5}`);
      try {
        const res = await request<{ orderId?: string }>(`${apiUrl}/v1/orders`, {
          method: 'POST',
          json: order,
        });
        sent++;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status === 202 && res.body.orderId) accepted.push(res.body.orderId);
        // Back off on 503 like a well-behaved client would (the API sends Retry-After).
        if (res.status === 503) await new Promise((r) => setTimeout(r, 50));
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
  };
  const done = Promise.all(Array.from({ length: clients }, (_, n) => client(n)));
  return {
    accepted,
    statuses,
    errors,
    sent: () => sent,
    count: (status: number) => statuses.get(status) ?? 0,
    async stop() {
      running = false;
      await done;
    },
  };
}

// Scenario 3: Redis (the queue) is killed -9 and restarted while orders are being posted. While it is
// down the API answers 503 and never 202; with AOF (fsync always) every job it acknowledged survives
// the restart, and every order that got a 202 is decided exactly once.
describe('chaos: Redis restarts mid-run', () => {
  let redis: OwnRedis;
  let env: Record<string, string>;
  let db: pg.Pool;
  const procs: (Proc | undefined)[] = [];

  beforeAll(async () => {
    redis = await ownRedis();
    // Events travel over RabbitMQ here: the BullMQ bus's consumer keeps BullMQ's default 30 s job lock,
    // so event jobs caught in flight by the crash would only come back after ~60 s (lock + stalled
    // check). The orders queue — what this scenario is about — recovers in ~3 s (2 s lock).
    env = chaosEnv({
      REDIS_URL: redis.url,
      REDIS_COMMAND_TIMEOUT_MS: '500',
      REDIS_REQUIRE_NOEVICTION: 'true',
      EVENT_BUS: 'rabbitmq',
    });
    db = openDb(env);
  });
  afterAll(async () => {
    await teardown(env, procs);
    await db?.end();
    await redis?.stop();
  });

  it('503 while Redis is down, never a 202 for a lost order; every accepted order reconciles', async () => {
    const [api, workers] = await Promise.all([
      startApi(env, procs),
      startWorkers(env, 'orders,outbox,projections', {}, procs),
    ]);
    const traffic = startTraffic(api.url, 4);
    try {
      await eventually(() => traffic.accepted.length >= 50, { what: '50 orders accepted before the crash' });
      await redis.kill();
      const acceptedAtCrash = traffic.accepted.length;
      await eventually(() => traffic.count(503) >= 10, { what: 'the API to answer 503 while Redis is down' });
      // Answers to requests sent after the crash: only 503s (a 202 here would be a lie).
      expect(traffic.accepted.length - acceptedAtCrash).toBeLessThanOrEqual(4); // at most the requests in flight at the kill

      await redis.start();
      const acceptedAtRestart = traffic.accepted.length;
      await eventually(() => traffic.accepted.length >= acceptedAtRestart + 50, {
        timeoutMs: 30_000,
        what: 'orders accepted again after the restart',
      });
    } finally {
      await traffic.stop();
    }
    expect([...traffic.statuses.keys()].sort()).toEqual([202, 503]);
    expect(traffic.errors).toEqual([]);

    // A 503'd request may still have been stored just before the crash: allowed, as long as it is decided.
    const report = await awaitReconciled(db, traffic.accepted, {
      explainWith: procs,
      allowUnaccepted: true,
      timeoutMs: 90_000,
    });
    expect(report.deadLetters).toBe(0);
    expect(report.byStatus.dead_lettered).toBe(0);
    expect(report.unaccepted).toBeLessThanOrEqual(4);
    // The same processes rode out the restart: they reconnected, nobody crashed.
    expect([api.child.exitCode, workers.child.exitCode, workers.child.signalCode]).toEqual([
      null,
      null,
      null,
    ]);
  });
});
