import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../support/env.ts';
import type { Proc } from '../support/processes.ts';
import {
  chaosEnv,
  killedBySigkill,
  linesWith,
  makeOrders,
  openDb,
  placeBatch,
  startApi,
  startWorkers,
  teardown,
} from './harness.ts';
import { awaitReconciled } from './reconcile.ts';

// Scenario 2: a crash at the two points where at-least-once delivery produces duplicates — the outbox
// relay after the broker confirmed a publish but before it marked the rows published, and a projection
// consumer after its transaction committed but before the broker got the ack. On RabbitMQ (which
// never deduplicates) the events really arrive twice; the projections' inbox makes the second time a
// no-op. Each process kills itself at the exact point through a NODE_ENV=test-only hook.
describe('chaos: kill -9 between publish and mark, and between commit and ack (EVENT_BUS=rabbitmq)', () => {
  let env: Record<string, string>;
  let db: pg.Pool;
  let api: Proc & { url: string };
  let relay: Proc;
  const procs: (Proc | undefined)[] = [];
  const accepted: string[] = [];
  const inboxIds = async () =>
    new Set(
      (await db.query<{ id: string }>(`SELECT event_id AS id FROM projection_inbox`)).rows.map((r) => r.id),
    );

  beforeAll(async () => {
    env = chaosEnv({
      EVENT_BUS: 'rabbitmq',
      OUTBOX_BATCH_SIZE: '25',
      PROJECTIONS_BATCH_SIZE: '20',
      RABBITMQ_PREFETCH: '20',
    });
    db = openDb(env);
    [api, relay] = await Promise.all([
      startApi(env, procs),
      startWorkers(env, 'outbox', {}, procs),
      startWorkers(env, 'orders', {}, procs),
    ]);
  });
  afterAll(async () => {
    await teardown(env, procs);
    await db?.end();
  });

  it('a projection consumer killed after commit, before ack: redelivered events are absorbed by the inbox', async () => {
    const doomed = await startWorkers(env, 'projections', { CHAOS_KILL_AFTER_PROJECTION_COMMIT: '2' }, procs);
    accepted.push(...(await placeBatch(api.url, makeOrders(150, 'ack'))));
    await doomed.exited;
    expect(killedBySigkill(doomed)).toBe(true);
    // Committed but never acknowledged: these events are in the inbox and still owned by the broker.
    const committed = await inboxIds();
    expect(committed.size).toBeGreaterThan(0);

    const projections = await startWorkers(env, 'projections', {}, procs);
    await awaitReconciled(db, accepted, { explainWith: procs });
    // The broker redelivered committed events to the new consumer; they changed nothing (reconciled).
    const again = linesWith(projections, 'event projected').filter((l) => committed.has(l.eventId as string));
    expect(again.length).toBeGreaterThan(0);
  });

  it('the outbox relay killed after publish, before mark: re-published events are absorbed by the inbox', async () => {
    // Replace the healthy relay with one that dies right after its first confirmed publish.
    expect(await relay.kill('SIGTERM')).toBe(0);
    const doomed = await startWorkers(env, 'outbox', { CHAOS_KILL_AFTER_PUBLISH: '1' }, procs);
    const batch = await placeBatch(api.url, makeOrders(150, 'mark'));
    accepted.push(...batch);
    await doomed.exited;
    expect(killedBySigkill(doomed)).toBe(true);

    // Published (the projections applied them) yet still unpublished in the outbox: they go out again.
    const projectedButUnmarked = await eventually(
      async () => {
        const { rows } = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM outbox x JOIN projection_inbox i ON i.event_id = x.event_id
            WHERE x.published_at IS NULL`,
        );
        return rows[0]!.n > 0 ? rows[0]!.n : undefined;
      },
      { what: 'events projected while their outbox rows are unmarked' },
    );
    expect(projectedButUnmarked).toBeGreaterThan(0);

    relay = await startWorkers(env, 'outbox', {}, procs);
    const report = await awaitReconciled(db, accepted, { explainWith: procs });
    expect(report.byStatus).toEqual({ completed: 270, rejected: 30, dead_lettered: 0 });
    expect(report.deadLetters).toBe(0);
  });
});
