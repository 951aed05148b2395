import { randomUUID } from 'node:crypto';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventHeaders } from '../../shared/bus/codec.ts';
import { sqsGroupQueues } from '../../shared/bus/sqs/bus.ts';
import { deleteSqsTopology, peekQueue, withSqsClient } from '../../shared/bus/sqs/admin.ts';
import { queueUrlOf } from '../../shared/bus/sqs/topology.ts';
import { loadConfig } from '../../shared/config/config.ts';
import { PROJECTOR_CONSUMER } from '../../workers/projections/projector.ts';
import { releaseSqsEndpoint, sqsEndpoint } from '../support/elasticmq-server.ts';
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
import { MODULES } from '../../modules/registry.ts';

// EVENT_BUS=sqs under a crash at the point where at-least-once delivery produces duplicates: a
// projection consumer SIGKILLed after its transaction committed, before SQS got the delete (the
// NODE_ENV=test-only CHAOS_KILL_AFTER_PROJECTION_COMMIT hook). SQS makes the undeleted messages
// visible again once their visibility timeout passes and hands them to the next consumer; the
// projections' inbox turns the second application into a no-op. Meanwhile a foreign producer drops
// poison into the projections queue: it is dead-lettered (DLQ + dead_letters) and consumption goes on.
describe('chaos: kill -9 between projection commit and SQS delete, poison amid the traffic (EVENT_BUS=sqs)', () => {
  let env: Record<string, string>;
  let db: pg.Pool;
  let api: Proc & { url: string };
  const procs: (Proc | undefined)[] = [];
  const sqsTarget = () => ({
    endpoint: env.SQS_ENDPOINT!,
    region: loadConfig(env, { modules: MODULES }).bus.sqs.region,
  });
  const queues = () => sqsGroupQueues(loadConfig(env, { modules: MODULES }).bus.sqs, PROJECTOR_CONSUMER);

  beforeAll(async () => {
    env = chaosEnv({
      EVENT_BUS: 'sqs',
      SQS_ENDPOINT: await sqsEndpoint(),
      // A crashed consumer's messages come back after this; short, so the scenario stays short.
      SQS_VISIBILITY_TIMEOUT_SECONDS: '5',
      SQS_WAIT_TIME_SECONDS: '1',
      SQS_PREFETCH: '20',
      OUTBOX_BATCH_SIZE: '25',
      PROJECTIONS_BATCH_SIZE: '20',
    });
    env.SQS_QUEUE_PREFIX = `chaos-${env.QUEUE_PREFIX!}`;
    db = openDb(env);
    [api] = await Promise.all([
      startApi(env, procs),
      startWorkers(env, 'outbox', {}, procs),
      startWorkers(env, 'orders', {}, procs),
    ]);
  });
  afterAll(async () => {
    await teardown(env, procs);
    await deleteSqsTopology(sqsTarget(), loadConfig(env, { modules: MODULES }).bus.sqs, [
      PROJECTOR_CONSUMER,
    ]).catch(() => undefined);
    await db?.end();
    await releaseSqsEndpoint();
  });

  it('redelivers what a killed consumer committed but never deleted, absorbed by the inbox; poison is dead-lettered', async () => {
    const doomed = await startWorkers(env, 'projections', { CHAOS_KILL_AFTER_PROJECTION_COMMIT: '2' }, procs);
    const accepted = await placeBatch(api.url, makeOrders(150, 'sqs'));
    await doomed.exited;
    expect(killedBySigkill(doomed)).toBe(true);
    // Committed but never deleted: in the inbox, and still in SQS (in flight until the timeout).
    const committed = new Set(
      (await db.query<{ id: string }>('SELECT event_id AS id FROM projection_inbox')).rows.map((r) => r.id),
    );
    expect(committed.size).toBeGreaterThan(0);

    // A foreign producer's poison, queued among the events the next consumer still has to project.
    const poisonId = `poison-${randomUUID()}`;
    await withSqsClient(sqsTarget(), async (client) => {
      await client.send(
        new SendMessageCommand({
          QueueUrl: await queueUrlOf(client, queues().queue),
          MessageBody: '{"order": not json',
          MessageAttributes: { [EventHeaders.eventId]: { DataType: 'String', StringValue: poisonId } },
        }),
      );
    });

    const projections = await startWorkers(env, 'projections', {}, procs);
    const report = await awaitReconciled(db, accepted, { explainWith: procs });
    expect(report.byStatus).toEqual({ completed: 135, rejected: 15, dead_lettered: 0 });
    // SQS handed the committed-but-undeleted events to the new consumer; they changed nothing.
    const again = linesWith(projections, 'event projected').filter((l) => committed.has(l.eventId as string));
    expect(again.length).toBeGreaterThan(0);
    expect(again.every((l) => (l.attempt as number) >= 2)).toBe(true);

    const { rows } = await eventually(
      async () => {
        const r = await db.query<{
          id: string;
          transport: string;
          origin: string;
          error: string;
          attempts: number;
        }>(
          `SELECT id, transport, origin, error, attempts FROM dead_letters WHERE headers->>'event-id' = $1`,
          [poisonId],
        );
        return r.rows.length > 0 && r;
      },
      { what: 'the poison in dead_letters' },
    );
    // Dead-lettered on its first handling. Its receive count may be 2: a long poll the killed consumer
    // left open can still take a message (SQS hands it to a request nobody reads any more), which then
    // comes back after the visibility timeout.
    expect(rows).toEqual([
      {
        // The delivery core's one scheme: transport, origin queue, the event id it carries.
        id: `sqs-${queues().queue}-${poisonId}`,
        transport: 'sqs',
        origin: queues().queue,
        error: 'message is not valid JSON',
        attempts: expect.any(Number),
      },
    ]);
    expect(rows[0]!.attempts).toBeLessThanOrEqual(2);
    const inDlq = await peekQueue(sqsTarget(), queues().dlq);
    expect(inDlq.map((m) => m.Body)).toEqual(['{"order": not json']);
    // Nothing else was dead-lettered: every real event was projected.
    const all = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM dead_letters');
    expect(all.rows).toEqual([{ n: 1 }]);
  });
});
