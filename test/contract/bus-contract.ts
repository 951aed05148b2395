import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeEvent, EventHeaders } from '../../shared/bus/codec.ts';
import type { EventBus, EventHandler, Subscription } from '../../shared/bus/event-bus.ts';
import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import {
  createPgDeadLetterSink,
  type DeadLetterRecord,
  type DeadLetterSink,
} from '../../shared/dead-letters/dead-letter.ts';
import { createDeadLetterStore } from '../../shared/dead-letters/store.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import { createProjector, PROJECTOR_CONSUMER } from '../../workers/projections/projector.ts';
import { CancelDelivery, PoisonMessageError, SnoozeDelivery } from '../../shared/delivery/outcome.ts';
import { dropSchema, eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';
import { DAY, placedEvent, recorder, rejectedEvent, sentinelRecorder } from './contract-events.ts';

export { placedEvent } from './contract-events.ts';

/**
 * The second subscription group of the group cases; the first is `PROJECTOR_CONSUMER`, the default
 * group. A transport's `cleanup` hook deletes what this group left (queues, consumer group).
 */
export const SECOND_GROUP = 'audit';

/** What every contract case gets: an isolated Conveyor (own schema, queue prefix, topic, group, exchange). */
export interface BusContractContext {
  /** From `testConfig()`: unique Postgres schema, BullMQ prefix, Kafka topic/group, RabbitMQ exchange/queue. */
  config: Config;
  /** Migrated pool on `config.database.schema` (dropped after the case). */
  pool: Pool;
  logger: Logger;
  /** `createPgDeadLetterSink(pool)`: pass it as the bus's `deps.deadLetters`. */
  deadLetters: DeadLetterSink;
  /** Pass these to the bus: the contract's retry cases count on them. */
  maxAttempts: number;
  backoffMs: number;
  /**
   * Pass these too (`config.bus.snoozeMs`/`snoozeMaxMs`, 50 and 200 ms here): the snooze cases snooze
   * five times, which the production defaults (1 s doubling to 30 s) would stretch to half a minute.
   */
  snoozeMs: number;
  snoozeMaxMs: number;
}

/** A message read back from the transport's own dead-letter queue/topic. */
export interface TransportDeadLetter {
  payload: Buffer;
  headers: Record<string, string>;
}

/** What the contract needs to know about, or do with, one transport. */
export interface BusContractHooks {
  /** Whether events of one key are delivered in publish order (Kafka, RabbitMQ: yes; BullMQ: no). */
  ordersPerKey: boolean;
  /**
   * Whether re-publishing an event the transport still remembers is dropped at publish time (BullMQ:
   * job id = event id). Then the exactly-once case waits for one delivery per copy less.
   * @defaultValue false
   */
  dedupesRepublished?: boolean;
  /**
   * Whether `close()` gives up on a handler still running after the bus's grace period, leaving its
   * delivery unacknowledged (Kafka: offset uncommitted). Enables the hung-consumer case; keep the
   * grace short (~1 s) in `makeBus`. BullMQ's worker waits for active jobs forever: false.
   * @defaultValue false
   */
  closeAbandonsInFlight?: boolean;
  /** Extra environment for `testConfig()`. */
  env?: Record<string, string>;
  /** Publishes raw bytes with the transport's own client (no codec) to where `subscribe` consumes. */
  publishRaw(ctx: BusContractContext, body: Buffer, headers: Record<string, string>): Promise<void>;
  /** Every message currently in the transport's own dead-letter queue/topic. */
  transportDeadLetters(ctx: BusContractContext): Promise<TransportDeadLetter[]>;
  /** Deletes the transport's resources (topics, queues, exchanges) and closes clients the hooks opened. */
  cleanup?(ctx: BusContractContext): Promise<void>;
}

/** Creates a bus for the context; the contract calls `start()` on it and closes it after the case. */
export type MakeBus = (ctx: BusContractContext) => Promise<EventBus>;

/**
 * The EventBus contract, run against a real broker: delivery with metadata, per-key ordering,
 * at-least-once after a crash, exactly-once effect through the real projector, poison isolation,
 * retry-then-succeed, dead letters after exhausted retries, redrive, and subscription groups (every
 * group gets every event, one group's members share them, retries and dead letters stay per group).
 * And every outcome of the delivery core (shared/delivery): a snooze or a PostgreSQL outage consumes no
 * attempt, a cancel is acknowledged, the last attempt dead-letters exactly once (row, then one native
 * copy), a dead letter that cannot be recorded is parked until it can, and a redrive that fails again
 * reopens the same dead letter.
 *
 * @example
 * describeBusContract('kafka', async (ctx) => createKafkaBus(ctx, {...}), { ordersPerKey: true, publishRaw, transportDeadLetters });
 */
export function describeBusContract(name: string, makeBus: MakeBus, hooks: BusContractHooks): void {
  describe(`EventBus contract: ${name}`, () => {
    let ctx: BusContractContext;
    let opened: { buses: EventBus[]; subs: Subscription[] };

    beforeEach(async () => {
      const config = testConfig({
        BUS_MAX_ATTEMPTS: '3',
        BUS_BACKOFF_MS: '20',
        BUS_SNOOZE_MS: '50',
        BUS_SNOOZE_MAX_MS: '200',
        ...hooks.env,
      });
      const pool = await migratedPool(config);
      ctx = {
        config,
        pool,
        logger: testLogger(),
        deadLetters: createPgDeadLetterSink(pool),
        maxAttempts: config.bus.maxAttempts,
        backoffMs: config.bus.backoffMs,
        snoozeMs: config.bus.snoozeMs,
        snoozeMaxMs: config.bus.snoozeMaxMs,
      };
      opened = { buses: [], subs: [] };
    });

    afterEach(async () => {
      for (const sub of opened.subs.toReversed()) await sub.close().catch(() => undefined);
      for (const bus of opened.buses.toReversed()) await bus.close().catch(() => undefined);
      await hooks.cleanup?.(ctx).catch(() => undefined);
      await dropSchema(ctx.pool, ctx.config.database.schema).catch(() => undefined);
      await ctx.pool.end();
    });

    async function newBus(): Promise<EventBus> {
      const bus = await makeBus(ctx);
      opened.buses.push(bus);
      await bus.start();
      return bus;
    }

    async function subscribe(
      bus: EventBus,
      handler: EventHandler,
      group: string = PROJECTOR_CONSUMER,
    ): Promise<Subscription> {
      const sub = await bus.subscribe(group, handler);
      opened.subs.push(sub);
      return sub;
    }

    const store = () => createDeadLetterStore(ctx.pool);
    const deadLetters = () => store().list({ limit: 100 });
    async function deadLetterOf(eventId: string): Promise<DeadLetterRecord> {
      return eventually(
        async () => (await deadLetters()).find((d) => d.headers[EventHeaders.eventId] === eventId),
        {
          what: `dead letter of event ${eventId}`,
        },
      );
    }

    it('delivers a published event with its id, type, correlation id and payload', async () => {
      const bus = await newBus();
      const rec = recorder();
      await subscribe(bus, rec.handler);
      const event = placedEvent();
      await bus.publish([event]);

      const [got] = await eventually(() => rec.of(event.eventId).length > 0 && rec.of(event.eventId), {
        what: 'the event',
      });
      expect(got?.event).toEqual(event);
      expect(got?.delivery).toEqual({ attempt: 1, transport: bus.kind });
    });

    it.skipIf(!hooks.ordersPerKey)('delivers the events of one key in publish order', async () => {
      const bus = await newBus();
      // Work of varying length, recorded when it completes, exposes an adapter that runs one key's
      // events concurrently.
      const completed: EventEnvelope[] = [];
      await subscribe(bus, async (e) => {
        await new Promise((r) => setTimeout(r, Math.random() * 4));
        completed.push(e);
      });
      const [a, b] = [randomUUID(), randomUUID()];
      const published: EventEnvelope[] = [];
      for (let round = 0; round < 3; round++) {
        const batch = Array.from({ length: 10 }, (_, i) =>
          placedEvent(i % 3 === 0 ? b : a, 100 + round * 10 + i),
        );
        published.push(...batch);
        await bus.publish(batch);
      }

      await eventually(() => completed.length >= published.length, { what: 'every event' });
      for (const key of [a, b]) {
        const sent = published.filter((e) => e.key === key).map((e) => e.eventId);
        const got = completed.filter((e) => e.key === key).map((e) => e.eventId);
        expect(got).toEqual(sent);
      }
    });

    it('redelivers an event to a new subscription when the consumer dies after the effect, before the ack', async () => {
      const event = placedEvent();
      const effects: string[] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const first = recorder(async (e) => {
        effects.push(e.eventId); // the effect is done...
        await gate;
        throw new Error('consumer crashed before acknowledging'); // ...but never acknowledged
      });
      const bus1 = await newBus();
      await subscribe(bus1, first.handler);
      await bus1.publish([event]);
      await eventually(() => first.received.length > 0, { what: 'the first delivery' });

      const closing = bus1.close();
      release();
      await closing;

      const bus2 = await newBus();
      const second = recorder();
      await subscribe(bus2, second.handler);
      await eventually(() => second.of(event.eventId).length > 0, { what: 'the redelivery' });
      // At least once: a closing consumer may take a retry once more before it is gone.
      expect(effects.length).toBeGreaterThan(0);
      expect(new Set(effects)).toEqual(new Set([event.eventId]));
    });

    it.skipIf(!hooks.closeAbandonsInFlight)(
      'redelivers an event whose handler hung past the close deadline',
      async () => {
        const event = placedEvent();
        const effects: string[] = [];
        let release!: () => void;
        const hung = new Promise<void>((r) => (release = r));
        const bus1 = await newBus();
        await subscribe(bus1, async (e) => {
          effects.push(e.eventId);
          await hung; // the process is wedged: neither success nor failure reaches the bus
        });
        await bus1.publish([event]);
        await eventually(() => effects.length > 0, { what: 'the first delivery' });
        try {
          await bus1.close();
          const bus2 = await newBus();
          const second = recorder();
          await subscribe(bus2, second.handler);
          await eventually(() => second.of(event.eventId).length > 0, { what: 'the redelivery' });
          expect(effects).toEqual([event.eventId]);
        } finally {
          release();
        }
      },
    );

    it('applies each event exactly once to the read models despite duplicates and redelivery', async () => {
      const projector = createProjector({
        pool: ctx.pool,
        logger: ctx.logger,
        batchSize: 20,
        batchWaitMs: 5,
      });
      const [a, b, c] = [placedEvent(undefined, 1_000), placedEvent(undefined, 2_500), rejectedEvent()];
      const events = [a, b, c];
      const ok = new Map<string, number>();
      let lostAck = false;
      const bus = await newBus();
      await subscribe(bus, async (e, d) => {
        await projector.handle(e, d);
        if (e.eventId === a.eventId && !lostAck) {
          lostAck = true; // committed, but the acknowledgement is "lost": the bus must redeliver
          throw new Error('ack lost');
        }
        ok.set(e.eventId, (ok.get(e.eventId) ?? 0) + 1);
      });
      await bus.publish(events);
      await bus.publish(events);

      const copies = hooks.dedupesRepublished ? 1 : 2;
      await eventually(() => lostAck && events.every((e) => (ok.get(e.eventId) ?? 0) >= copies), {
        what: 'every copy of every event',
      });
      await projector.drain();
      const q = async (sql: string) => (await ctx.pool.query(sql)).rows;
      expect(await q('SELECT count(*)::int AS n FROM projection_inbox')).toEqual([{ n: 3 }]);
      expect(await q('SELECT order_id, status, total_cents FROM order_view ORDER BY total_cents')).toEqual([
        { order_id: c.key, status: 'rejected', total_cents: 500 },
        { order_id: a.key, status: 'completed', total_cents: 1_000 },
        { order_id: b.key, status: 'completed', total_cents: 2_500 },
      ]);
      expect(
        await q(`SELECT to_char(day, 'YYYY-MM-DD') AS day, currency, completed_count, rejected_count,
                        dead_lettered_count, revenue_cents FROM daily_stats`),
      ).toEqual([
        {
          day: DAY,
          currency: 'EUR',
          completed_count: 2,
          rejected_count: 1,
          dead_lettered_count: 0,
          revenue_cents: 3_500,
        },
      ]);
      expect(
        await q('SELECT customer_id, completed_count, revenue_cents FROM customer_stats ORDER BY 1'),
      ).toEqual([
        { customer_id: 'cust-1', completed_count: 2, revenue_cents: 3_500 },
        { customer_id: 'cust-2', completed_count: 0, revenue_cents: 0 },
      ]);
    });

    it('dead-letters poison at once and keeps consuming', async () => {
      const bus = await newBus();
      const rec = recorder();
      await subscribe(bus, rec.handler);
      const notJson = Buffer.from('{"this is": not json');
      const badSchema = Buffer.from(
        JSON.stringify({ eventId: 'not-a-uuid', type: 'order.placed', version: 1 }),
      );
      await hooks.publishRaw(ctx, notJson, { [EventHeaders.eventId]: 'poison-1' });
      await hooks.publishRaw(ctx, badSchema, { [EventHeaders.eventId]: 'poison-2' });
      const good = placedEvent();
      await bus.publish([good]);

      await eventually(() => rec.of(good.eventId).length > 0, { what: 'the good event after the poison' });
      const dls = await eventually(async () => {
        const all = await deadLetters();
        return all.length >= 2 && all;
      });
      expect(dls).toHaveLength(2);
      const byId = new Map(dls.map((d) => [d.headers[EventHeaders.eventId], d]));
      expect(byId.get('poison-1')).toMatchObject({
        transport: bus.kind,
        kind: 'event',
        attempts: 1,
        payload: notJson,
      });
      expect(byId.get('poison-1')?.error).toMatch(/not valid JSON/);
      expect(byId.get('poison-2')).toMatchObject({
        transport: bus.kind,
        kind: 'event',
        attempts: 1,
        payload: badSchema,
      });
      expect(byId.get('poison-2')?.error).toMatch(/not a valid event/);
      for (const d of dls) expect(d.id).not.toContain(':');
      expect(rec.received.map((r) => r.event.eventId)).toEqual([good.eventId]);

      const inDlq = await eventually(async () => {
        const all = await hooks.transportDeadLetters(ctx);
        return all.length >= 2 && all;
      });
      expect(inDlq.map((m) => m.payload.toString('hex')).sort()).toEqual(
        [notJson, badSchema].map((b) => b.toString('hex')).sort(),
      );
    });

    it('retries a failing handler with backoff and processes the event once it succeeds', async () => {
      const bus = await newBus();
      const rec = sentinelRecorder(async (_e, d) => {
        if (d.attempt < 3) throw new Error(`transient failure ${d.attempt}`);
      });
      await subscribe(bus, rec.handler);
      const event = placedEvent();
      await bus.publish([event]);

      await eventually(() => rec.of(event.eventId).length >= 3, { what: 'the third attempt' });
      const attempts = rec.of(event.eventId);
      expect(attempts.map((r) => r.delivery.attempt)).toEqual([1, 2, 3]);
      // Full jitter keeps each delay at least half the exponential step (minus timer slack).
      for (let i = 1; i < attempts.length; i++) {
        const gap = (attempts[i]?.atMs ?? 0) - (attempts[i - 1]?.atMs ?? 0);
        expect(gap).toBeGreaterThanOrEqual((ctx.backoffMs * 2 ** (i - 1)) / 2 - 5);
      }
      expect(await deadLetters()).toEqual([]);
      expect(await hooks.transportDeadLetters(ctx)).toEqual([]);
      // Succeeded on attempt 3: acknowledged, not delivered again (nor dead-lettered) by the time a sentinel passed.
      await sentinelPassed(bus, rec, event.key);
      expect(rec.of(event.eventId)).toHaveLength(3);
      expect(await deadLetters()).toEqual([]);
    });

    it('in one multi-event publish, retries only the failing event and dead-letters only the hopeless one', async () => {
      const bus = await newBus();
      const events = Array.from({ length: 12 }, (_, i) => placedEvent(randomUUID(), 100 + i));
      const flaky = events[3]!;
      const hopeless = events[7]!;
      const rec = recorder(async (e, d) => {
        if (e.eventId === flaky.eventId && d.attempt < 2) throw new Error('transient failure');
        if (e.eventId === hopeless.eventId) throw new Error(`hopeless on attempt ${d.attempt}`);
      });
      await subscribe(bus, rec.handler);
      await bus.publish(events);

      const dl = await deadLetterOf(hopeless.eventId);
      expect(dl).toMatchObject({ payload: encodeEvent(hopeless).body, attempts: ctx.maxAttempts });
      await eventually(() => rec.of(flaky.eventId).length >= 2, { what: 'the flaky event retried' });
      expect(rec.of(flaky.eventId).map((r) => r.delivery.attempt)).toEqual([1, 2]);
      expect(rec.of(hopeless.eventId).map((r) => r.delivery.attempt)).toEqual(
        Array.from({ length: ctx.maxAttempts }, (_, i) => i + 1),
      );
      // Everything else was delivered once, and the dead letters hold the hopeless event alone.
      for (const e of events.filter((x) => x !== flaky && x !== hopeless)) {
        expect(rec.of(e.eventId).map((r) => r.delivery.attempt)).toEqual([1]);
      }
      expect((await deadLetters()).map((d) => d.headers[EventHeaders.eventId])).toEqual([hopeless.eventId]);
    });

    it('dead-letters an event after exhausted retries with its bytes, headers, error and attempts', async () => {
      const bus = await newBus();
      const rec = recorder(async (_e, d) => {
        throw new Error(`handler failed on attempt ${d.attempt}`);
      });
      await subscribe(bus, rec.handler);
      const event = placedEvent();
      await bus.publish([event]);

      const dl = await deadLetterOf(event.eventId);
      const { body, headers } = encodeEvent(event);
      expect(dl).toMatchObject({
        transport: bus.kind,
        kind: 'event',
        payload: body,
        headers: expect.objectContaining(headers),
        attempts: ctx.maxAttempts,
        correlationId: event.correlationId,
        status: 'pending',
      });
      expect(dl.error).toMatch(`handler failed on attempt ${ctx.maxAttempts}`);
      expect(dl.id).not.toContain(':');
      expect(dl.origin).not.toBe('');
      expect(rec.of(event.eventId).map((r) => r.delivery.attempt)).toEqual([1, 2, 3]);

      const [inDlq] = await eventually(async () => {
        const all = await hooks.transportDeadLetters(ctx);
        return all.length > 0 && all;
      });
      expect(inDlq?.payload).toEqual(body);
      expect(inDlq?.headers).toMatchObject(headers);
    });

    it('redrives a dead letter back to its origin, where it is processed', async () => {
      const bus = await newBus();
      let failing = true;
      const rec = recorder(async () => {
        if (failing) throw new Error('downstream is down');
      });
      await subscribe(bus, rec.handler);
      const event = placedEvent();
      await bus.publish([event]);
      const dl = await deadLetterOf(event.eventId);
      expect(rec.of(event.eventId)).toHaveLength(ctx.maxAttempts);

      failing = false;
      await bus.redrive(dl);
      await eventually(() => rec.of(event.eventId).length > ctx.maxAttempts, { what: 'the redriven event' });
      const redriven = rec.of(event.eventId).at(-1);
      expect(redriven?.event).toEqual(event);
      expect(redriven?.delivery.attempt).toBe(1);
    });

    /** Publishes a sentinel (see `sentinelRecorder`) and waits until it succeeded. */
    async function sentinelPassed(
      bus: EventBus,
      rec: ReturnType<typeof sentinelRecorder>,
      key?: string,
    ): Promise<void> {
      const sentinel = rec.sentinel(key);
      await bus.publish([sentinel]);
      await eventually(() => rec.passed(sentinel.eventId), { what: 'the sentinel event' });
    }

    /** The messages of an event in the transport's own dead-letter queue/topic. */
    async function transportDeadLettersOf(eventId: string): Promise<TransportDeadLetter[]> {
      return (await hooks.transportDeadLetters(ctx)).filter(
        (m) => m.headers[EventHeaders.eventId] === eventId,
      );
    }

    async function deadLetterRows(): Promise<{ id: string; eventId: string }[]> {
      const { rows } = await ctx.pool.query<{ id: string; eventId: string }>(
        `SELECT id, headers->>'${EventHeaders.eventId}' AS "eventId" FROM dead_letters ORDER BY id`,
      );
      return rows;
    }

    /**
     * Fails the first `times` deliveries of an event with `failure` (a snooze), then succeeds; every
     * delivery must be attempt 1 and the event handled once, without a dead letter.
     */
    async function expectNoAttemptConsumed(failure: () => Error, times: number): Promise<void> {
      const bus = await newBus();
      const rec = sentinelRecorder(async (e) => {
        if (rec.of(e.eventId).length <= times) throw failure();
      });
      await subscribe(bus, rec.handler);
      const event = placedEvent();
      await bus.publish([event]);

      // Done, or an attempt was consumed (a snooze taken for a retry): stop waiting at the first sign.
      await eventually(
        () =>
          rec.of(event.eventId).length > times || rec.of(event.eventId).some((r) => r.delivery.attempt > 1),
        { timeoutMs: 45_000, what: `delivery ${times + 1} of the snoozed event` },
      );
      await sentinelPassed(bus, rec, event.key);
      expect(rec.of(event.eventId).map((r) => r.delivery.attempt)).toEqual(
        Array.from({ length: times + 1 }, () => 1),
      );
      expect(await deadLetters()).toEqual([]);
      expect(await hooks.transportDeadLetters(ctx)).toEqual([]);
    }

    it('snoozes a delivery without consuming an attempt, more often than maxAttempts, then handles it once', async () => {
      await expectNoAttemptConsumed(() => new SnoozeDelivery('dependency down'), ctx.maxAttempts + 2);
    });

    it('treats a PostgreSQL outage as a snooze: no attempt consumed, no dead letter', async () => {
      await expectNoAttemptConsumed(
        () => Object.assign(new Error('the database system is starting up'), { code: '57P03' }),
        ctx.maxAttempts + 2,
      );
    });

    it('dead-letters on the last attempt exactly once: one row, one native copy, no redelivery', async () => {
      const bus = await newBus();
      const rec = sentinelRecorder(async (e, d) => {
        throw new Error(`handler failed on attempt ${d.attempt}`);
      });
      await subscribe(bus, rec.handler);
      const event = placedEvent();
      await bus.publish([event]);

      const dl = await deadLetterOf(event.eventId);
      expect(dl.id.startsWith(`${bus.kind}-`)).toBe(true);
      expect(dl).toMatchObject({ attempts: ctx.maxAttempts, subjectId: event.key, status: 'pending' });
      await eventually(async () => (await transportDeadLettersOf(event.eventId)).length > 0, {
        what: 'the native dead-letter copy',
      });
      // A fourth delivery, or a second dead letter, would have come by the time a sentinel passed.
      await sentinelPassed(bus, rec, event.key);
      expect(rec.of(event.eventId).map((r) => r.delivery.attempt)).toEqual([1, 2, 3]);
      expect(await deadLetterRows()).toEqual([{ id: dl.id, eventId: event.eventId }]);
      expect(await transportDeadLettersOf(event.eventId)).toHaveLength(1);
      expect(await hooks.transportDeadLetters(ctx)).toHaveLength(1);
    });

    it('parks a dead letter that cannot be recorded, without a native copy, and records it once it can', async () => {
      const schema = ctx.config.database.schema;
      const bus = await newBus();
      const rec = sentinelRecorder(async () => {
        throw new PoisonMessageError('never valid');
      });
      await subscribe(bus, rec.handler);
      await ctx.pool.query(`ALTER TABLE "${schema}".dead_letters RENAME TO dead_letters_away`);
      let away = true;
      try {
        const event = placedEvent();
        await bus.publish([event]);
        await eventually(() => rec.of(event.eventId).length >= 2, {
          timeoutMs: 30_000,
          what: 'the parked event delivered again',
        });
        expect(await transportDeadLettersOf(event.eventId)).toEqual([]);
        const { rows } = await ctx.pool.query(`SELECT id FROM "${schema}".dead_letters_away`);
        expect(rows).toEqual([]);

        await ctx.pool.query(`ALTER TABLE "${schema}".dead_letters_away RENAME TO dead_letters`);
        away = false;
        const dl = await deadLetterOf(event.eventId);
        // Parking gives the attempt back: every delivery was the first, and so is the dead letter's.
        expect(dl).toMatchObject({ attempts: 1, subjectId: event.key });
        expect(dl.error).toMatch('never valid');
        await eventually(async () => (await transportDeadLettersOf(event.eventId)).length > 0, {
          what: 'the native dead-letter copy',
        });
        await sentinelPassed(bus, rec, event.key);
        expect(rec.of(event.eventId).every((r) => r.delivery.attempt === 1)).toBe(true);
        expect(await deadLetterRows()).toEqual([{ id: dl.id, eventId: event.eventId }]);
        expect(await transportDeadLettersOf(event.eventId)).toHaveLength(1);
      } finally {
        if (away) {
          await ctx.pool.query(`ALTER TABLE "${schema}".dead_letters_away RENAME TO dead_letters`);
        }
      }
    });

    it('records a redriven event that fails again under its dead letter’s id, pending again with the new error', async () => {
      const bus = await newBus();
      const rec = sentinelRecorder(async (e) => {
        throw new PoisonMessageError(rec.of(e.eventId).length === 1 ? 'first' : 'second');
      });
      await subscribe(bus, rec.handler);
      const event = placedEvent();
      await bus.publish([event]);
      const dl = await deadLetterOf(event.eventId);
      expect(dl.error).toMatch('first');

      // What the API does: claim it (status redriven), then send it back.
      expect(await store().resolve(dl.id, 'redriven', 'test')).toBe(true);
      await bus.redrive(dl);
      // Pending again — under its id, or (wrongly) as a second dead letter under another id.
      const pending = await eventually(
        async () => {
          const rows = await store().list({ status: 'pending', limit: 10 });
          return rows.length > 0 && rows;
        },
        { what: 'the redriven event dead-lettered again' },
      );
      expect(pending.map((d) => d.id)).toEqual([dl.id]);
      expect(pending[0]?.error).toMatch('second');
      expect(pending[0]?.error).not.toMatch('first');
      expect(pending[0]).toMatchObject({ attempts: 1, subjectId: event.key, redriveCount: 1 });
      expect(rec.of(event.eventId).map((r) => r.delivery.attempt)).toEqual([1, 1]);
      expect(await deadLetterRows()).toEqual([{ id: dl.id, eventId: event.eventId }]);
    });

    it('acknowledges a cancelled delivery: handled once, no dead letter, never delivered again', async () => {
      const bus1 = await newBus();
      const first = sentinelRecorder(async () => {
        throw new CancelDelivery('not wanted');
      });
      await subscribe(bus1, first.handler);
      const event = placedEvent();
      await bus1.publish([event]);
      await eventually(() => first.of(event.eventId).length > 0, { what: 'the cancelled event' });
      await sentinelPassed(bus1, first, event.key);
      await bus1.close();

      // Acknowledged, not merely held: a new consumer of the group does not get it either (an unacked
      // RabbitMQ delivery is requeued when its channel closes, an uncommitted Kafka offset re-read).
      const bus2 = await newBus();
      const second = sentinelRecorder();
      await subscribe(bus2, second.handler);
      await sentinelPassed(bus2, second, event.key);
      expect(first.of(event.eventId).map((r) => r.delivery.attempt)).toEqual([1]);
      expect(second.of(event.eventId)).toEqual([]);
      expect(await deadLetters()).toEqual([]);
      expect(await hooks.transportDeadLetters(ctx)).toEqual([]);
    });

    it('gives every subscription group every event, singles and multi-event batches alike', async () => {
      const bus = await newBus();
      const projections = recorder();
      const audit = recorder();
      await subscribe(bus, projections.handler);
      // The second group consumes in "another process": its own bus, which the publisher never saw.
      await subscribe(await newBus(), audit.handler, SECOND_GROUP);
      const single = placedEvent();
      // More than one BullMQ batch job (100 events each), spread over every Kafka partition.
      const batch = Array.from({ length: 130 }, (_, i) => placedEvent(randomUUID(), 100 + i));
      const small = [placedEvent(), rejectedEvent()];
      await bus.publish([single]);
      await bus.publish(batch);
      await bus.publish(small);

      const all = [single, ...batch, ...small].map((e) => e.eventId);
      for (const [group, rec] of [
        [PROJECTOR_CONSUMER, projections],
        [SECOND_GROUP, audit],
      ] as const) {
        await eventually(() => all.every((id) => rec.of(id).length > 0), {
          what: `every event in group ${group}`,
        });
        expect(new Set(rec.received.map((r) => r.event.eventId))).toEqual(new Set(all));
        expect(rec.received.every((r) => r.delivery.attempt === 1)).toBe(true);
      }
    });

    it('shares one group’s events among its subscribers: together they get every event', async () => {
      const [bus1, bus2] = [await newBus(), await newBus()];
      const first = recorder();
      const second = recorder();
      const sub1 = await subscribe(bus1, first.handler);
      await subscribe(bus2, second.handler);
      const both = () => new Set([...first.received, ...second.received].map((r) => r.event.eventId));

      const events = Array.from({ length: 40 }, (_, i) => placedEvent(randomUUID(), 100 + i));
      await bus1.publish(events.slice(0, 30));
      for (const e of events.slice(30)) await bus2.publish([e]);
      const ids = events.map((e) => e.eventId);
      await eventually(() => ids.every((id) => both().has(id)), { what: 'every event in the group' });
      expect(both()).toEqual(new Set(ids));
      // Competing, not each member its own copy: at least once allows a duplicate (a rebalance, a
      // stalled job), never every event to both. (That the second member got a share is not promised.)
      const toBoth = ids.filter((id) => first.of(id).length > 0 && second.of(id).length > 0);
      expect(toBoth.length).toBeLessThan(ids.length);

      // The group outlives a member: what is published after it left goes to the other one.
      await sub1.close();
      const later = Array.from({ length: 10 }, (_, i) => placedEvent(randomUUID(), 200 + i));
      await bus1.publish(later);
      await eventually(() => later.every((e) => second.of(e.eventId).length > 0), {
        what: 'the later events at the remaining member',
      });
    });

    it('keeps retries, dead letters and redrives within the group that failed', async () => {
      const bus = await newBus();
      const failing = placedEvent();
      const others = Array.from({ length: 4 }, (_, i) => placedEvent(randomUUID(), 100 + i));
      let broken = true;
      const projections = recorder();
      const audit = recorder(async (e) => {
        if (broken && e.eventId === failing.eventId) throw new Error('audit store is down');
      });
      await subscribe(bus, projections.handler);
      await subscribe(bus, audit.handler, SECOND_GROUP);
      // Inside a multi-event publish: on BullMQ the failing event is split out of its batch job.
      await bus.publish([others[0]!, failing, ...others.slice(1)]);

      const dl = await deadLetterOf(failing.eventId);
      expect(audit.of(failing.eventId).map((r) => r.delivery.attempt)).toEqual(
        Array.from({ length: ctx.maxAttempts }, (_, i) => i + 1),
      );
      const all = [failing, ...others].map((e) => e.eventId);
      await eventually(() => all.every((id) => projections.of(id).length > 0), {
        what: 'every event in the default group',
      });
      // The default group handled it once: the other group's retries never reached it.
      expect(projections.of(failing.eventId).map((r) => r.delivery.attempt)).toEqual([1]);
      expect(others.map((e) => audit.of(e.eventId).length)).toEqual(others.map(() => 1));
      expect((await deadLetters()).map((d) => d.id)).toEqual([dl.id]);

      broken = false;
      await bus.redrive(dl);
      await eventually(() => audit.of(failing.eventId).length > ctx.maxAttempts, {
        what: 'the redriven event in the group that dead-lettered it',
      });
      expect(audit.of(failing.eventId).at(-1)?.delivery.attempt).toBe(1);
      // A marker of the same key published after the redrive: once the default group has it, a
      // redriven copy sent its way before it would have arrived too (Kafka: same partition, in order).
      const marker = placedEvent(failing.key);
      await bus.publish([marker]);
      await eventually(() => projections.of(marker.eventId).length > 0, { what: 'the marker' });
      expect(projections.of(failing.eventId)).toHaveLength(1);
      expect(audit.of(failing.eventId)).toHaveLength(ctx.maxAttempts + 1);
    });
  });
}
