/**
 * Kafka publish throughput: idempotent producer vs one transaction per `publish` call.
 *
 *   npx tsx bench/kafka-publish.ts [--events 5000] [--batch 100] [--singles 300]
 *
 * Publishes `events` events in `publish` calls of `batch` (the outbox relay's shape), then `singles`
 * one-event calls (a quiet relay), through `createKafkaBus` on a throwaway topic that is deleted
 * afterwards. Needs the broker of `npm run brokers` (KAFKA_BROKERS, default 127.0.0.1:9092).
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { z } from 'zod';
import { createKafkaBus } from '../shared/bus/kafka/bus.ts';
import { kafkaTopics } from '../shared/bus/kafka/headers.ts';
import type { EventEnvelope } from '../shared/domain/events.ts';
import { createLogger } from '../shared/observability/logger.ts';

const Args = z.object({
  events: z.coerce.number().int().min(1).default(5_000),
  batch: z.coerce.number().int().min(1).default(100),
  singles: z.coerce.number().int().min(0).default(300),
  brokers: z.string().default('127.0.0.1:9092'),
});

function event(i: number): EventEnvelope {
  const at = new Date().toISOString();
  const orderId = randomUUID();
  return {
    eventId: randomUUID(),
    type: 'order.placed',
    version: 1,
    key: orderId,
    correlationId: `bench-${i.toString().padStart(8, '0')}`,
    occurredAt: at,
    payload: {
      orderId,
      customerId: `cust-${i % 100}`,
      currency: 'EUR',
      totalCents: 1_000,
      // ~1 KB per event, like a real order with a handful of lines.
      items: Array.from({ length: 12 }, (_, n) => ({
        sku: `sku-${n}-${'x'.repeat(40)}`,
        quantity: 1,
        unitPriceCents: 100,
      })),
      attempts: 1,
      acceptedAt: at,
      completedAt: at,
    },
  };
}

async function measure(mode: 'idempotent' | 'transactional', args: z.infer<typeof Args>): Promise<string> {
  const topic = `bench.kafka-publish.${mode}.${Date.now().toString(36)}`;
  const logger = createLogger({ level: 'silent', service: 'bench' });
  const bus = createKafkaBus(
    { logger, deadLetters: { record: async () => undefined } },
    {
      brokers: args.brokers.split(','),
      clientId: 'bench-kafka-publish',
      topic,
      partitions: 6,
      maxAttempts: 1,
      backoffMs: 1,
      consumer: {
        groupId: 'unused',
        maxBytesPerPartition: 1_048_576,
        sessionTimeout: 6_000,
        partitionsConsumedConcurrently: 1,
      },
      producer: mode === 'transactional' ? { transactionalId: `bench-${randomUUID()}` } : {},
    },
  );
  try {
    await bus.start();
    await bus.publish([event(-1)]); // warm-up: metadata, producer id
    let t0 = performance.now();
    for (let i = 0; i < args.events; i += args.batch) {
      await bus.publish(
        Array.from({ length: Math.min(args.batch, args.events - i) }, (_, n) => event(i + n)),
      );
    }
    const batched = args.events / ((performance.now() - t0) / 1_000);
    t0 = performance.now();
    for (let i = 0; i < args.singles; i++) await bus.publish([event(i)]);
    const singleMs = args.singles > 0 ? (performance.now() - t0) / args.singles : 0;
    return `${mode.padEnd(13)} ${Math.round(batched).toString().padStart(7)} events/s in calls of ${args.batch}   ${singleMs.toFixed(2).padStart(6)} ms per one-event call`;
  } finally {
    await bus.close();
    const admin = new Kafka({ brokers: args.brokers.split(','), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const t = kafkaTopics(topic);
    await admin.deleteTopics({ topics: [t.events, t.retry, t.dlq] }).catch(() => undefined);
    await admin.disconnect();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      events: { type: 'string' },
      batch: { type: 'string' },
      singles: { type: 'string' },
      brokers: { type: 'string' },
    },
  });
  const args = Args.parse({ ...values, brokers: values.brokers ?? process.env.KAFKA_BROKERS });
  for (const mode of ['idempotent', 'transactional'] as const) {
    process.stdout.write(`${await measure(mode, args)}\n`);
  }
}

await main();
