import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventBus } from '../../shared/bus/event-bus.ts';
import { migrate } from '../../shared/db/migrate.ts';
import { createPool, withTransaction, type Pool } from '../../shared/db/pool.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { insertOutbox } from '../../shared/db/outbox.sql.ts';
import { createRelay } from '../../workers/outbox/relay.ts';
import { createOutboxWaker } from '../../workers/outbox/wake.ts';
import { applyEvents, loadEventCatalog } from '../../workers/projections/projector.ts';
import { dropSchema, eventually, migratedPool, testConfig, testLogger } from '../support/env.ts';
import { MODULES } from '../../modules/registry.ts';

const config = testConfig();
let pool: Pool;

/** Our own EventBus interface, recording what the relay publishes (the relay is the unit under test). */
function recordingBus(): EventBus & { published: EventEnvelope[] } {
  const published: EventEnvelope[] = [];
  return {
    kind: 'bullmq',
    published,
    start: async () => undefined,
    publish: async (events) => {
      published.push(...events);
    },
    subscribe: async () => ({ close: async () => undefined }),
    redrive: async () => undefined,
    close: async () => undefined,
  };
}

function placed(orderId: string, customerId: string, totalCents: number, day = '2026-03-01'): EventEnvelope {
  return {
    eventId: randomUUID(),
    type: 'order.placed',
    version: 1,
    key: orderId,
    correlationId: `corr-${orderId.slice(0, 8)}`,
    occurredAt: `${day}T10:00:00.000Z`,
    payload: {
      orderId,
      customerId,
      currency: 'EUR',
      totalCents,
      items: [{ sku: 's', quantity: 1, unitPriceCents: totalCents }],
      attempts: 1,
      acceptedAt: `${day}T09:59:59.000Z`,
      completedAt: `${day}T10:00:00.000Z`,
    },
  };
}

beforeAll(async () => {
  pool = await migratedPool(config);
});
afterAll(async () => {
  await dropSchema(pool, config.database.schema);
  await pool.end();
});

describe('migrations', () => {
  it('apply once when several processes migrate at the same time, recorded in schema_migrations', async () => {
    const schema = `${config.database.schema}_m`;
    const pools = Array.from({ length: 4 }, () => createPool({ ...config.database, schema, poolMax: 1 }));
    try {
      const applied = await Promise.all(pools.map((p) => migrate(p, schema, MODULES)));
      const total = applied.flat();
      expect(new Set(total).size).toBe(total.length); // no file applied twice
      expect(total.length).toBeGreaterThanOrEqual(2);
      const { rows } = await pools[0]!.query(`SELECT name FROM "${schema}".schema_migrations ORDER BY name`);
      expect(rows.map((r) => r.name)).toEqual([...total].sort());
    } finally {
      await pools[0]!.query(`DROP SCHEMA "${schema}" CASCADE`);
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});

describe('outbox relay', () => {
  it('is woken by the NOTIFY a writer sends after its commit (the poll is an hour away) and marks rows published', async () => {
    const bus = recordingBus();
    const relay = createRelay(
      { pool, bus, logger: testLogger() },
      {
        databaseUrl: config.database.url,
        schema: config.database.schema,
        batchSize: 100,
        pollIntervalMs: 3_600_000,
      },
    );
    try {
      const channel = `LISTEN "outbox_${config.database.schema}"`;
      await eventually(
        async () =>
          (await pool.query('SELECT 1 FROM pg_stat_activity WHERE query = $1', [channel])).rowCount! > 0,
      );
      const event = placed(randomUUID(), 'c-n', 100);
      await withTransaction(pool, (client) => insertOutbox(client, [event]));
      createOutboxWaker(pool)();
      await eventually(() => bus.published.some((e) => e.eventId === event.eventId), {
        timeoutMs: 5_000,
        what: 'NOTIFY to wake the relay',
      });
      const { rows } = await pool.query('SELECT published_at FROM outbox WHERE event_id = $1', [
        event.eventId,
      ]);
      expect(rows[0]?.published_at).toBeInstanceOf(Date);
    } finally {
      await relay.close();
    }
  });

  it('several relays publish each row exactly once (FOR UPDATE SKIP LOCKED)', async () => {
    const events = Array.from({ length: 300 }, () => placed(randomUUID(), 'c-m', 1));
    await withTransaction(pool, (client) => insertOutbox(client, events));
    const buses = [recordingBus(), recordingBus(), recordingBus()];
    const relays = buses.map((bus) =>
      createRelay(
        { pool, bus, logger: testLogger() },
        {
          databaseUrl: config.database.url,
          schema: config.database.schema,
          batchSize: 20,
          pollIntervalMs: 100,
        },
      ),
    );
    try {
      const ids = new Set(events.map((e) => e.eventId));
      await eventually(
        () => buses.flatMap((b) => b.published).filter((e) => ids.has(e.eventId)).length >= 300,
      );
      const all = buses.flatMap((b) => b.published).filter((e) => ids.has(e.eventId));
      expect(all).toHaveLength(300);
      expect(new Set(all.map((e) => e.eventId)).size).toBe(300);
    } finally {
      await Promise.all(relays.map((r) => r.close()));
    }
  });

  it('does not mark rows when publishing fails (nothing lost)', async () => {
    const event = placed(randomUUID(), 'c-f', 1);
    let failures = 0;
    const bus = recordingBus();
    const flaky: EventBus = {
      ...bus,
      publish: async (events) => {
        if (failures++ < 2) throw new Error('broker down');
        await bus.publish(events);
      },
    };
    await withTransaction(pool, (client) => insertOutbox(client, [event]));
    const relay = createRelay(
      { pool, bus: flaky, logger: testLogger() },
      {
        databaseUrl: config.database.url,
        schema: config.database.schema,
        batchSize: 1000,
        pollIntervalMs: 50,
      },
    );
    try {
      await eventually(() => bus.published.some((e) => e.eventId === event.eventId));
      expect(failures).toBeGreaterThanOrEqual(3);
    } finally {
      await relay.close();
    }
  });
});

describe('projections', () => {
  const snapshot = async () => ({
    views: (await pool.query('SELECT * FROM order_view ORDER BY order_id')).rows,
    daily: (await pool.query('SELECT * FROM daily_stats ORDER BY day, currency')).rows,
    customers: (await pool.query('SELECT * FROM customer_stats ORDER BY customer_id, currency')).rows,
  });

  it('projecting every event twice yields identical read models', async () => {
    const catalog = await loadEventCatalog();
    await withTransaction(pool, async (c) => {
      for (const { projection } of catalog.projectors) {
        for (const table of projection.tables) await c.query(`DELETE FROM ${table}`);
      }
      await c.query(`DELETE FROM projection_inbox WHERE consumer = 'twice'`);
    });
    const a = randomUUID();
    const b = randomUUID();
    const events: EventEnvelope[] = [
      placed(a, 'c-1', 1000),
      placed(b, 'c-2', 250, '2026-03-02'),
      {
        eventId: randomUUID(),
        type: 'order.dead_lettered',
        version: 1,
        key: a,
        correlationId: 'corr-dead-0001',
        occurredAt: '2026-03-01T09:00:00.000Z',
        payload: {
          orderId: a,
          customerId: 'c-1',
          currency: 'EUR',
          totalCents: 1000,
          items: null,
          attempts: 5,
          acceptedAt: null,
          deadLetteredAt: '2026-03-01T09:00:00.000Z',
          error: 'x',
          deadLetterId: 'dl-1',
        },
      },
    ];
    await withTransaction(pool, (c) => applyEvents(c, 'twice', events, catalog));
    const once = await snapshot();
    // Again, one by one and reversed: the inbox makes every replay a no-op.
    for (const e of [...events].reverse())
      await withTransaction(pool, (c) => applyEvents(c, 'twice', [e, e], catalog));
    expect(await snapshot()).toEqual(once);
    // A completed order is never downgraded by a late dead-letter event.
    expect(once.views.find((v) => v.order_id === a)?.status).toBe('completed');
    expect(
      once.daily.map((d) => [d.day.toISOString().slice(0, 10), d.completed_count, d.revenue_cents]),
    ).toEqual([
      ['2026-03-01', 1, 1000],
      ['2026-03-02', 1, 250],
    ]);
  });
});
