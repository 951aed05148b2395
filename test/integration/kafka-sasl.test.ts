import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createEventBus } from '../../shared/bus/create-bus.ts';
import type { EventBus } from '../../shared/bus/event-bus.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import type { DeadLetterSink } from '../../shared/dead-letters/dead-letter.ts';
import { placedEvent } from '../contract/contract-events.ts';
import { eventually, testConfig, testLogger } from '../support/env.ts';
import { ownKafka, type OwnKafka } from '../support/kafka-server.ts';

const USER = { username: 'conveyor', password: 's3cret-Pa55' };
const deps = {
  logger: testLogger(),
  // Nothing here fails a handler: a dead letter would be a bug.
  deadLetters: { record: () => Promise.reject(new Error('unexpected dead letter')) } satisfies DeadLetterSink,
};

// KAFKA_SASL_* reach kafkajs through the config and createEventBus, on a private broker whose client
// listener is SASL_PLAINTEXT with SASL/PLAIN (the same broker.sh config, plus KAFKA_SASL_USERS).
describe('Kafka bus on a broker that requires SASL', () => {
  let kafka: OwnKafka | undefined;
  const buses: EventBus[] = [];
  beforeAll(async () => {
    kafka = await ownKafka({ saslPlain: USER });
  }, 120_000);
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
  });
  afterAll(async () => {
    await kafka?.destroy();
  });

  const busWith = async (env: Record<string, string>) => {
    const config = testConfig({
      EVENT_BUS: 'kafka',
      KAFKA_BROKERS: kafka!.brokers,
      KAFKA_SASL_MECHANISM: 'plain',
      KAFKA_SASL_USERNAME: USER.username,
      KAFKA_PARTITIONS: '2',
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      ...env,
    });
    const bus = await createEventBus('kafka', deps, config);
    buses.push(bus);
    return bus;
  };

  it('publishes and consumes with the configured credentials', async () => {
    const bus = await busWith({ KAFKA_SASL_PASSWORD: USER.password });
    await bus.start();
    const seen: EventEnvelope[] = [];
    await bus.subscribe('projections', async (e) => void seen.push(e));
    const events = [placedEvent(randomUUID()), placedEvent(randomUUID())];
    await bus.publish(events);
    await eventually(() => seen.length >= events.length, { what: 'both events over SASL' });
    expect(seen.map((e) => e.eventId).sort()).toEqual(events.map((e) => e.eventId).sort());
  });

  it('fails to start with a wrong password, saying why', async () => {
    const bus = await busWith({ KAFKA_SASL_PASSWORD: 'wrong' });
    await expect(bus.start()).rejects.toThrow(/SASL PLAIN authentication failed/i);
  });
});
