import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../shared/config/config.ts';
import { MODULES } from '../../modules/registry.ts';

describe('config', () => {
  it('has local defaults for everything', () => {
    const config = loadConfig({}, { modules: MODULES });
    expect(config.redis.url).toBe('redis://127.0.0.1:6379');
    expect(new URL(config.database.url).host).toBe('127.0.0.1:5432');
    expect(config.api.port).toBe(3000);
    expect(config.bus.kind).toBe('bullmq');
    expect(config.workers.orders.attempts).toBe(5);
    // The brief's ScalableConfig defaults.
    expect(config.circuitBreaker).toMatchObject({
      timeout: 5000,
      errorThresholdPercentage: 50,
      resetTimeout: 30000,
    });
    expect(config.rateLimiting).toMatchObject({ windowMs: 60000, maxRequests: 100 });
    // The Kafka producer is always idempotent (shared/bus/kafka/bus.ts): not a knob.
    expect(config.bus.kafka.producer).toMatchObject({
      retry: { retries: 5, initialRetryTime: 100 },
    });
    expect(Object.isFrozen(config.workers.orders)).toBe(true);
  });

  it('parses and coerces the environment', () => {
    const config = loadConfig(
      {
        PORT: '8080',
        EVENT_BUS: 'kafka',
        KAFKA_BROKERS: 'a:1, b:2',
        WORKER_KINDS: 'orders',
      },
      { modules: MODULES },
    );
    expect(config.api.port).toBe(8080);
    expect(config.bus.kafka.brokers).toEqual(['a:1', 'b:2']);
    expect(config.workers.kinds).toEqual(['orders']);
  });

  it('names every bad variable and why', () => {
    let error: unknown;
    try {
      loadConfig(
        { PORT: 'eighty', EVENT_BUS: 'nats', REDIS_URL: 'not a url', WORKER_KINDS: 'orders,mail' },
        { modules: MODULES },
      );
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    for (const name of ['PORT', 'EVENT_BUS', 'REDIS_URL', 'WORKER_KINDS']) expect(problems).toContain(name);
  });

  // Issue #20: the SQS bus keeps its group registry on REDIS_URL, so on a Redis Cluster every publish
  // failed with MOVED — admitted at start before. Each setting is fine alone; together they are refused.
  it('refuses EVENT_BUS=sqs with REDIS_CLUSTER_NODES, naming both', () => {
    const cluster = { REDIS_CLUSTER_NODES: '127.0.0.1:7000,127.0.0.1:7001' };
    expect(() => loadConfig({ EVENT_BUS: 'sqs' }, { modules: MODULES })).not.toThrow();
    expect(() => loadConfig({ ...cluster, EVENT_BUS: 'bullmq' }, { modules: MODULES })).not.toThrow();
    let error: unknown;
    try {
      loadConfig({ ...cluster, EVENT_BUS: 'sqs' }, { modules: MODULES });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/EVENT_BUS=sqs/);
    expect(problems[0]).toMatch(/REDIS_CLUSTER_NODES/);
  });
});
