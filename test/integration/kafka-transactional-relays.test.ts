import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  chaosEnv,
  linesWith,
  makeOrders,
  openDb,
  placeBatch,
  startApi,
  startWorkers,
  teardown,
  type Env,
} from '../chaos/harness.ts';
import { awaitReconciled } from '../chaos/reconcile.ts';
import { logRecords, type Proc } from '../support/processes.ts';

const ORDERS = 1_000;

/** Epoch ms of a pino record. */
const at = (l: Record<string, unknown>) => Date.parse(String(l.time));

// Every relay replica is deployed with the same KAFKA_TRANSACTIONAL_ID. Two producers with one
// transactional id fence each other (the second InitProducerId bumps the epoch: the first one's
// transactions fail with PRODUCER_FENCED). Each relay leases its own slot `<id>-<n>` in Redis
// (shared/bus/kafka/transactional-slot.ts), so two relay processes — like two pods — publish side by
// side without a single failed send.
describe('two outbox relays with the same KAFKA_TRANSACTIONAL_ID', () => {
  let env: Env | undefined;
  let db: pg.Pool | undefined;
  const procs: (Proc | undefined)[] = [];
  beforeAll(() => {
    env = chaosEnv({
      EVENT_BUS: 'kafka',
      KAFKA_TRANSACTIONAL_ID: 'conveyor-relay',
      KAFKA_PARTITIONS: '3',
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      // Small batches, so both relays take turns on the backlog.
      OUTBOX_BATCH_SIZE: '25',
    });
  });
  afterAll(async () => {
    if (env) await teardown(env, procs);
    await db?.end();
  });

  it('both keep publishing, neither is fenced, every order reconciles', { timeout: 120_000 }, async () => {
    const e = env!;
    db = openDb(e);
    // The relays log every published event (debug) and the transactional id they use.
    const [api, , relayA, relayB] = await Promise.all([
      startApi(e, procs),
      startWorkers(e, 'orders,projections', {}, procs),
      startWorkers(e, 'outbox', { LOG_LEVEL: 'debug' }, procs),
      startWorkers(e, 'outbox', { LOG_LEVEL: 'debug' }, procs),
    ]);
    const relays = [relayA, relayB];
    const ids = relays.map((r) => linesWith(r, 'kafka transactional producer ready')[0]?.transactionalId);
    expect(ids[0]).toMatch(/^conveyor-relay-\d+$/);
    expect(ids[1]).toMatch(/^conveyor-relay-\d+$/);
    expect(ids[0]).not.toBe(ids[1]);

    const accepted = await placeBatch(api.url, makeOrders(ORDERS, 'tx-relays'));
    const report = await awaitReconciled(db, accepted, { explainWith: procs, timeoutMs: 90_000 });
    expect(report.byStatus).toEqual({ completed: ORDERS * 0.9, rejected: ORDERS * 0.1, dead_lettered: 0 });

    // Both published, during the same stretch of time.
    const published = relays.map((r) => linesWith(r, 'event published'));
    expect(published[0]!.length).toBeGreaterThan(0);
    expect(published[1]!.length).toBeGreaterThan(0);
    expect(published[0]!.length + published[1]!.length).toBeGreaterThanOrEqual(ORDERS);
    const [a, b] = published.map((lines) => [at(lines[0]!), at(lines.at(-1)!)] as const);
    expect(a![0] <= b![1] && b![0] <= a![1]).toBe(true);
    // And never failed: a fenced producer fails its transactions and the relay backs off.
    for (const relay of relays) {
      const failures = logRecords(relay).filter(
        (l) =>
          l.msg === 'kafka send failed; the producer is replaced by a new one for the next send' ||
          l.msg === 'outbox relay failed; backing off',
      );
      expect(failures.map((l) => JSON.stringify(l.err).slice(0, 300))).toEqual([]);
      expect(relay.child.exitCode).toBeNull();
    }
  });
});
