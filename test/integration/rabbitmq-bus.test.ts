import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeEvent, EventHeaders } from '../../shared/bus/codec.ts';
import type { Delivery, EventBus, EventHandler, Subscription } from '../../shared/bus/event-bus.ts';
import {
  BusClosedError,
  ConfirmTimeoutError,
  createRabbitmqBus,
  rabbitmqTopology,
  RabbitmqHeaders,
  UnroutableError,
  type RabbitmqBusConfig,
} from '../../shared/bus/rabbitmq/bus.ts';
import { deleteRabbitmqTopology, peekQueue, withAmqpChannel } from '../../shared/bus/rabbitmq/admin.ts';
import { groupTopology } from '../../shared/bus/rabbitmq/topology.ts';
import type { Config } from '../../shared/config/config.ts';
import type { Pool } from '../../shared/db/pool.ts';
import { createPgDeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { createDeadLetterStore } from '../../shared/dead-letters/store.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { placedEvent } from '../contract/contract-events.ts';
import { SnoozeDelivery } from '../../shared/delivery/outcome.ts';
import { dropSchema, eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';

const GROUP = 'projections';

/**
 * A TCP proxy in front of the real broker, to break the link the way networks do: `blackhole()`
 * swallows bytes in both directions (a silent partition: no FIN, no RST), `refuse()` turns new
 * connections away (broker down), `dropAll()` cuts every open connection (broker restart).
 */
async function startProxy(target = { host: '127.0.0.1', port: 5672 }) {
  const sockets = new Set<net.Socket>();
  let mode: 'pass' | 'blackhole' | 'refuse' = 'pass';
  let accepted = 0;
  const server = net.createServer((client) => {
    if (mode === 'refuse') return void client.destroy();
    accepted += 1;
    const upstream = net.connect(target);
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      from.on('data', (chunk) => void (mode === 'pass' && to.write(chunk)));
      from.on('error', () => undefined);
      from.on('close', () => {
        sockets.delete(from);
        to.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    url: `amqp://guest:guest@127.0.0.1:${address.port}`,
    accepted: () => accepted,
    pass: () => void (mode = 'pass'),
    blackhole: () => void (mode = 'blackhole'),
    refuse: () => void (mode = 'refuse'),
    dropAll: () => sockets.forEach((s) => s.destroy()),
    close: async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => server.close(r));
    },
  };
}

describe('RabbitMQ event bus', () => {
  let config: Config;
  let pool: Pool;
  let opened: {
    buses: EventBus[];
    subs: Subscription[];
    groups: Set<string>;
    cleanups: (() => Promise<void>)[];
  };
  const store = () => createDeadLetterStore(pool);

  beforeEach(async () => {
    config = testConfig({
      BUS_MAX_ATTEMPTS: '3',
      BUS_BACKOFF_MS: '20',
      BUS_SNOOZE_MS: '20',
      BUS_SNOOZE_MAX_MS: '100',
      RABBITMQ_CONFIRM_TIMEOUT_MS: '500',
    });
    pool = await migratedPool(config);
    opened = { buses: [], subs: [], groups: new Set([GROUP]), cleanups: [] };
  });

  afterEach(async () => {
    for (const sub of opened.subs.toReversed()) await sub.close().catch(() => undefined);
    for (const bus of opened.buses.toReversed()) await bus.close().catch(() => undefined);
    for (const cleanup of opened.cleanups) await cleanup().catch(() => undefined);
    await deleteRabbitmqTopology(config.bus.rabbitmq.url, rabbitmqTopology(busConfig()), [...opened.groups]);
    await dropSchema(pool, config.database.schema);
    await pool.end();
  });

  function busConfig(overrides: Partial<RabbitmqBusConfig> = {}): RabbitmqBusConfig {
    return {
      ...config.bus.rabbitmq,
      maxAttempts: config.bus.maxAttempts,
      backoffMs: config.bus.backoffMs,
      snoozeMs: config.bus.snoozeMs,
      snoozeMaxMs: config.bus.snoozeMaxMs,
      shutdownGraceMs: 2_000,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      ...overrides,
    };
  }

  async function newBus(overrides: Partial<RabbitmqBusConfig> = {}, start = true): Promise<EventBus> {
    const bus = createRabbitmqBus(
      { logger: testLogger(), deadLetters: createPgDeadLetterSink(pool) },
      busConfig(overrides),
    );
    opened.buses.push(bus);
    if (start) await bus.start();
    return bus;
  }

  async function subscribe(bus: EventBus, handler: EventHandler, group = GROUP): Promise<Subscription> {
    opened.groups.add(group);
    const sub = await bus.subscribe(group, handler);
    opened.subs.push(sub);
    return sub;
  }

  function recorder(then: (e: EventEnvelope, d: Delivery) => Promise<void> = async () => undefined) {
    const received: { event: EventEnvelope; delivery: Delivery; atMs: number }[] = [];
    const handler: EventHandler = async (event, delivery) => {
      received.push({ event, delivery, atMs: Date.now() });
      await then(event, delivery);
    };
    return { received, handler, of: (id: string) => received.filter((r) => r.event.eventId === id) };
  }

  /** The dead-letter row of `event` (the id is deterministic), once it exists. */
  const deadLetterOf = (event: EventEnvelope) =>
    eventually(async () => (await store().get(`rabbitmq-${queues().queue}-${event.eventId}`)) ?? undefined, {
      what: `dead letter of ${event.eventId}`,
    });
  const queues = () => groupTopology(rabbitmqTopology(busConfig()), GROUP);
  const queueDepth = (queue: string) =>
    withAmqpChannel(config.bus.rabbitmq.url, async (ch) => (await ch.checkQueue(queue)).messageCount);
  /** Messages of the group anywhere but its DLQ: the work queue, `undelivered` and every delay queue. */
  const pendingAnywhere = async () => {
    const q = queues();
    let n = 0;
    for (const name of [q.queue, q.undelivered, ...q.delays.map((d) => d.name)]) n += await queueDepth(name);
    return n;
  };
  const outage = () =>
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  const deadLetterRows = async () =>
    (await pool.query<{ id: string }>('SELECT id FROM dead_letters ORDER BY id')).rows;

  it('publishes persistent messages routed by type, with the event id, codec headers and key', async () => {
    const bus = await newBus();
    const tap = `${config.bus.rabbitmq.queue}.tap`;
    opened.cleanups.push(() =>
      withAmqpChannel(config.bus.rabbitmq.url, async (ch) => void (await ch.deleteQueue(tap))),
    );
    await withAmqpChannel(config.bus.rabbitmq.url, async (ch) => {
      await ch.assertQueue(tap, { durable: false });
      await ch.bindQueue(tap, config.bus.rabbitmq.exchange, 'order.*');
    });
    const event = placedEvent();
    await bus.publish([event]);

    const [msg] = await eventually(async () => {
      const got = await peekQueue(config.bus.rabbitmq.url, tap);
      return got.length > 0 && got;
    });
    const { body, headers } = encodeEvent(event);
    expect(msg?.content).toEqual(body);
    expect(msg?.fields.exchange).toBe(config.bus.rabbitmq.exchange);
    expect(msg?.fields.routingKey).toBe('order.placed');
    expect(msg?.properties).toMatchObject({
      messageId: event.eventId,
      deliveryMode: 2,
      correlationId: event.correlationId,
    });
    expect(msg?.properties.headers).toEqual({ ...headers, [RabbitmqHeaders.key]: event.key });
  });

  it('keeps events published before the first subscribe and fans out to every group', async () => {
    const bus = await newBus();
    const audit = recorder();
    await subscribe(bus, audit.handler, 'audit'); // a second group: its own queue
    const early = placedEvent();
    await bus.publish([early]); // the default group's queue exists since start()
    const projections = recorder();
    await subscribe(await newBus({}, false), projections.handler);
    const late = placedEvent();
    await bus.publish([late]);

    await eventually(() => projections.received.length >= 2 && audit.received.length >= 2, {
      what: 'fan-out',
    });
    const both = [early.eventId, late.eventId].sort();
    expect(projections.received.map((r) => r.event.eventId).sort()).toEqual(both);
    expect(audit.received.map((r) => r.event.eventId).sort()).toEqual(both);
  });

  it('bounds concurrent handlers by the prefetch and leaves the rest in the queue', async () => {
    const bus = await newBus({ prefetch: 2 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const rec = recorder(() => gate);
    await subscribe(bus, rec.handler);
    await bus.publish(Array.from({ length: 5 }, () => placedEvent()));

    await eventually(async () => rec.received.length === 2 && (await queueDepth(queues().queue)) === 3, {
      what: '2 in flight, 3 held back by the broker',
    });
    release();
    await eventually(() => rec.received.length === 5, { what: 'the rest after the acks' });
  });

  it('acks only after the handler resolved: close waits for it, then refuses new work', async () => {
    const bus = await newBus();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const rec = recorder(() => gate);
    await subscribe(bus, rec.handler);
    await bus.publish([placedEvent()]);
    await eventually(() => rec.received.length === 1);

    const closing = bus.close();
    expect(bus.close()).toBe(closing); // idempotent
    release();
    await closing;
    expect(await queueDepth(queues().queue)).toBe(0);
    // A closed bus refuses at once instead of reconnecting or hanging.
    await expect(bus.publish([placedEvent()])).rejects.toBeInstanceOf(BusClosedError);
    await expect(bus.subscribe(GROUP, async () => undefined)).rejects.toBeInstanceOf(BusClosedError);
  });

  it('redelivers a message whose consumer connection died mid-handler, and never acks it on the new channel', async () => {
    const proxy = await startProxy();
    opened.cleanups.push(proxy.close);
    const bus = await newBus({ url: proxy.url });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const rec = recorder(async () => {
      if (rec.received.length === 1) await gate; // the first delivery is still running when the link dies
    });
    await subscribe(bus, rec.handler);
    const event = placedEvent();
    await bus.publish([event]);
    await eventually(() => rec.received.length === 1, { what: 'the first delivery' });

    proxy.dropAll();
    await eventually(() => rec.of(event.eventId).length === 2, { what: 'the redelivery after reconnecting' });
    expect(rec.received.map((r) => r.delivery.attempt)).toEqual([1, 1]);
    release(); // the stale handler finishes: its delivery tag belongs to the dead channel
    await eventually(async () => (await queueDepth(queues().queue)) === 0);
    await bus.close();
    expect(rec.received).toHaveLength(2);
    expect(await queueDepth(queues().queue)).toBe(0);
  });

  it('parks a message whose dead letter could not be recorded (database down) and dead-letters it on redelivery', async () => {
    const sink = createPgDeadLetterSink(pool);
    let sinkCalls = 0;
    const bus = createRabbitmqBus(
      {
        logger: testLogger(),
        deadLetters: {
          record: async (d) => {
            if (sinkCalls++ === 0) throw outage();
            await sink.record(d);
          },
        },
      },
      busConfig(),
    );
    opened.buses.push(bus);
    await bus.start();
    const rec = recorder(async () => {
      throw new Error('always fails');
    });
    await subscribe(bus, rec.handler);
    const event = placedEvent();
    await bus.publish([event]);

    const dl = await deadLetterOf(event);
    expect(dl.attempts).toBe(3);
    expect(sinkCalls).toBe(2);
    // Parked, not retried: its redelivery was still the last attempt, tried once more.
    expect(rec.of(event.eventId).map((r) => r.delivery.attempt)).toEqual([1, 2, 3, 3]);
    await eventually(async () => (await peekQueue(config.bus.rabbitmq.url, queues().dlq)).length === 1);
  });

  it('snoozes a handler failing with a connection refused, more often than maxAttempts and the delivery limit: no attempt consumed, no dead letter', async () => {
    const bus = await newBus({ deliveryLimit: 5 });
    let applied = 0;
    const rec = recorder(async (e) => {
      if (rec.of(e.eventId).length <= 12) throw outage();
      applied += 1;
    });
    await subscribe(bus, rec.handler);
    const event = placedEvent();
    await bus.publish([event]);

    await eventually(() => applied > 0, { timeoutMs: 30_000, what: 'the 13th delivery' });
    await bus.close(); // waits for the ack; after it, nothing of the event is left anywhere
    expect(await pendingAnywhere()).toBe(0);
    expect(applied).toBe(1);
    expect(rec.of(event.eventId).map((r) => r.delivery.attempt)).toEqual(Array.from({ length: 13 }, () => 1));
    expect(await peekQueue(config.bus.rabbitmq.url, queues().dlq)).toEqual([]);
    expect(await deadLetterRows()).toEqual([]);
  });

  it('copies nothing to the DLQ while the dead letter cannot be recorded, then exactly one row and one copy', async () => {
    const schema = config.database.schema;
    const bus = await newBus();
    const rec = recorder(async (_e, d) => {
      throw new Error(`failed on attempt ${d.attempt}`);
    });
    await subscribe(bus, rec.handler);
    await pool.query(`ALTER TABLE "${schema}".dead_letters RENAME TO dead_letters_away`);
    let away = true;
    try {
      const event = placedEvent();
      await bus.publish([event]);
      // Dead-lettered on attempt 3, the record refused, parked; then twice more.
      await eventually(() => rec.of(event.eventId).filter((r) => r.delivery.attempt === 3).length >= 3, {
        what: 'the parked event delivered again',
      });
      expect(await peekQueue(config.bus.rabbitmq.url, queues().dlq)).toEqual([]);
      expect(await peekQueue(config.bus.rabbitmq.url, queues().undelivered)).toEqual([]);
      expect((await pool.query(`SELECT id FROM "${schema}".dead_letters_away`)).rows).toEqual([]);

      await pool.query(`ALTER TABLE "${schema}".dead_letters_away RENAME TO dead_letters`);
      away = false;
      const dl = await deadLetterOf(event);
      expect(dl).toMatchObject({ attempts: 3, subjectId: event.key });
      expect(dl.error).toMatch('failed on attempt 3');
      await eventually(async () => (await peekQueue(config.bus.rabbitmq.url, queues().dlq)).length > 0, {
        what: 'the DLQ copy',
      });
      await bus.close();
      expect(await pendingAnywhere()).toBe(0);
      expect(await deadLetterRows()).toEqual([{ id: dl.id }]);
      const copies = await peekQueue(config.bus.rabbitmq.url, queues().dlq);
      expect(copies.map((m) => m.properties.headers?.[EventHeaders.eventId])).toEqual([event.eventId]);
      expect(rec.of(event.eventId).every((r) => r.delivery.attempt <= 3)).toBe(true);
    } finally {
      if (away) await pool.query(`ALTER TABLE "${schema}".dead_letters_away RENAME TO dead_letters`);
    }
  });

  it('holds a snooze longer than the longest delay queue until it is due', async () => {
    const bus = await newBus();
    const longest = Math.max(...queues().delays.map((d) => d.ttlMs));
    const delayMs = longest * 3;
    const rec = recorder(async (e) => {
      if (rec.of(e.eventId).length === 1) throw new SnoozeDelivery('later, please', delayMs);
    });
    await subscribe(bus, rec.handler);
    const event = placedEvent();
    await bus.publish([event]);

    await eventually(() => rec.of(event.eventId).length === 2, { what: 'the snoozed event' });
    const [first, second] = rec.of(event.eventId);
    expect((second?.atMs ?? 0) - (first?.atMs ?? 0)).toBeGreaterThanOrEqual(delayMs - 25);
    expect(second?.delivery.attempt).toBe(1);
  });

  it('dead-letters by itself a message the consumer keeps dying on, before the broker limit', async () => {
    const bus = await newBus({ deliveryLimit: 2, shutdownGraceMs: 50 });
    const hang = recorder(() => new Promise(() => undefined)); // the handler never returns: a crash
    const event = placedEvent();
    await bus.publish([event]);
    for (let life = 1; life <= 2; life++) {
      const sub = await subscribe(
        await newBus({ deliveryLimit: 2, shutdownGraceMs: 50 }, false),
        hang.handler,
      );
      await eventually(() => hang.received.length === life, { what: `delivery ${life}` });
      await sub.close(); // grace elapses, the connection closes unacked: the broker counts a return
    }
    const last = recorder();
    await subscribe(bus, last.handler);

    const dl = await deadLetterOf(event);
    expect(dl.error).toMatch(/delivered 3 times without an ack/);
    expect(dl.subjectId).toBe(event.key);
    expect(last.received).toEqual([]);
    expect(await peekQueue(config.bus.rabbitmq.url, queues().dlq)).toHaveLength(1);
  });

  it('past x-delivery-limit the broker moves a message to `undelivered`, never the DLQ, and the consumer dead-letters it with a row', async () => {
    await newBus({ deliveryLimit: 1 }); // declares the topology
    const event = placedEvent();
    await (await newBus({ deliveryLimit: 1 }, false)).publish([event]);
    let deliveries = 0;
    const deadline = Date.now() + 10_000;
    await withAmqpChannel(config.bus.rabbitmq.url, async (ch) => {
      while (Date.now() < deadline) {
        const msg = await ch.get(queues().queue, { noAck: false });
        if (msg === false) {
          if ((await ch.checkQueue(queues().undelivered)).messageCount > 0) break;
          continue; // the broker dead-letters asynchronously
        }
        deliveries += 1;
        ch.nack(msg, false, true); // a foreign consumer returning it: the broker counts each
      }
    });
    expect(deliveries).toBe(2); // the first delivery + 1 allowed redelivery
    expect(await peekQueue(config.bus.rabbitmq.url, queues().dlq)).toEqual([]);

    const rec = recorder();
    await subscribe(await newBus({ deliveryLimit: 1 }, false), rec.handler);
    const dl = await deadLetterOf(event);
    expect(dl.error).toMatch(/the broker gave up on it \(delivery_limit\)/);
    expect(dl.subjectId).toBe(event.key);
    await eventually(async () => (await peekQueue(config.bus.rabbitmq.url, queues().dlq)).length === 1, {
      what: 'the DLQ copy',
    });
    await eventually(async () => (await queueDepth(queues().undelivered)) === 0);
    expect(rec.received).toEqual([]);
  });

  it('rejects a publish no queue receives (the outbox keeps the row) instead of losing it', async () => {
    const bus = await newBus();
    await withAmqpChannel(config.bus.rabbitmq.url, (ch) => ch.deleteQueue(queues().queue));
    await expect(bus.publish([placedEvent()])).rejects.toBeInstanceOf(UnroutableError);
  });

  it('rejects a publish on our own confirm deadline over a silent link, then recovers', async () => {
    const proxy = await startProxy();
    opened.cleanups.push(proxy.close);
    const bus = await newBus({ url: proxy.url, confirmTimeoutMs: 300 });
    proxy.blackhole();
    const started = Date.now();
    await expect(bus.publish([placedEvent()])).rejects.toBeInstanceOf(ConfirmTimeoutError);
    expect(Date.now() - started).toBeLessThan(3_000);

    proxy.pass();
    const rec = recorder();
    await subscribe(bus, rec.handler);
    const event = placedEvent();
    await bus.publish([event]); // on a fresh connection: the silent one was dropped
    await eventually(() => rec.of(event.eventId).length === 1);
  });

  it('reconnects the consumer with backoff after the broker went away, and publishes fail meanwhile', async () => {
    const proxy = await startProxy();
    opened.cleanups.push(proxy.close);
    const bus = await newBus({ url: proxy.url, connectTimeoutMs: 1_000 });
    const rec = recorder();
    await subscribe(bus, rec.handler);
    const before = placedEvent();
    await bus.publish([before]);
    await eventually(() => rec.of(before.eventId).length === 1);

    proxy.refuse();
    proxy.dropAll(); // the "broker" restarts and stays down for a while
    await expect(bus.publish([placedEvent()])).rejects.toThrow();
    const acceptedWhileDown = proxy.accepted();
    proxy.pass();

    const after = placedEvent();
    await eventually(() => bus.publish([after]).then(() => true), { what: 'a publish on a new connection' });
    await eventually(() => rec.of(after.eventId).length >= 1, { what: 'the consumer to resume' });
    expect(proxy.accepted()).toBeGreaterThanOrEqual(acceptedWhileDown + 2); // publisher + consumer reconnected
  });

  it('redrives a dead letter to its origin queue only, without the dead-letter headers', async () => {
    const bus = await newBus();
    let failing = true;
    const projections = recorder(async () => {
      if (failing) throw new Error('downstream down');
    });
    const audit = recorder();
    await subscribe(bus, projections.handler);
    await subscribe(bus, audit.handler, 'audit');
    const event = placedEvent();
    await bus.publish([event]);
    const dl = await deadLetterOf(event);
    expect(dl).toMatchObject({
      attempts: 3,
      origin: queues().queue,
      correlationId: event.correlationId,
      subjectId: event.key,
    });
    expect(Object.keys(dl.headers).filter((h) => h.startsWith('x-'))).toEqual([]);
    const [copy] = await peekQueue(config.bus.rabbitmq.url, queues().dlq);
    expect(copy?.properties.headers).toMatchObject({
      [RabbitmqHeaders.error]: 'downstream down',
      [RabbitmqHeaders.attempts]: 3,
      [RabbitmqHeaders.originQueue]: queues().queue,
      [EventHeaders.eventId]: event.eventId,
    });

    failing = false;
    await bus.redrive(dl);
    await eventually(() => projections.of(event.eventId).length === 4, { what: 'the redriven delivery' });
    expect(projections.of(event.eventId).at(-1)?.delivery.attempt).toBe(1);
    expect(audit.of(event.eventId)).toHaveLength(1); // the other group already had it
  });
});
