import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../shared/config/config.ts';
import { MODULES } from '../../modules/registry.ts';

// docker-compose.yml checked without an engine. When a Compose client is installed, `docker compose
// config` resolves the file (its schema, anchors, interpolation) and the checks run on its answer;
// otherwise the YAML is parsed here with the same merge keys and `${VAR:-default}` interpolation.

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FILE = `${ROOT}docker-compose.yml`;
/** What the checks interpolate with: a non-default bus, to see EVENT_BUS reach the workers. */
const ENV = { EVENT_BUS: 'kafka' };

type Obj = Record<string, unknown>;
interface Service {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  environment?: Record<string, string | number | null>;
  ports?: (string | { target: number; published?: string | number })[];
  healthcheck?: { test?: string[] | string; start_period?: string };
  depends_on?: Record<string, { condition?: string }> | string[];
  stop_grace_period?: string;
}

function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(
    /\$\$|\$\{(\w+)(?::?-([^}]*))?\}/g,
    (whole, name: string | undefined, fallback: string | undefined) => {
      if (whole === '$$') return '$';
      const value = env[name!];
      return value !== undefined && value !== '' ? value : (fallback ?? '');
    },
  );
}

/** `docker compose config` as JSON when a working client exists, else undefined. */
function composeConfig(): { how: string; model: Obj } | undefined {
  const version = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
  if (version.error || version.status !== 0) return undefined;
  const res = spawnSync('docker', ['compose', '-f', FILE, 'config', '--format', 'json'], {
    encoding: 'utf8',
    env: { ...process.env, ...ENV },
  });
  if (res.status !== 0) throw new Error(`docker compose config failed:\n${res.stderr}`);
  return { how: 'docker compose config', model: JSON.parse(res.stdout) as Obj };
}

function load(): { how: string; model: Obj } {
  return (
    composeConfig() ?? {
      how: 'yaml parse',
      model: parse(interpolate(readFileSync(FILE, 'utf8'), ENV), { merge: true }) as Obj,
    }
  );
}

const { how, model } = load();
const services = model.services as Record<string, Service>;
const env = (s: Service) =>
  Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]));
const seconds = (d: string | undefined) => {
  const m = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(d ?? '');
  return m ? Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0) : NaN;
};
const containerPorts = (s: Service) =>
  (s.ports ?? []).map((p) => (typeof p === 'string' ? Number(p.split(':').at(-1)) : p.target));
const healthTest = (s: Service) =>
  Array.isArray(s.healthcheck?.test) ? s.healthcheck.test.join(' ') : (s.healthcheck?.test ?? '');
const dependsOn = (s: Service): Record<string, { condition?: string }> =>
  Array.isArray(s.depends_on) ? Object.fromEntries(s.depends_on.map((d) => [d, {}])) : (s.depends_on ?? {});

const BROKERS = ['redis', 'postgres', 'kafka', 'rabbitmq', 'elasticmq'];
/** One worker service per worker kind the registry knows (a module without one would never run). */
const WORKER_KINDS = loadConfig({}, { modules: MODULES }).workers.kinds;
const APPS = ['api', ...WORKER_KINDS.map((k) => `worker-${k}`), 'dashboard'];

describe(`docker-compose.yml (${how})`, () => {
  it('has the brokers, the API, one service per worker kind and the dashboard', () => {
    expect(Object.keys(services).sort()).toEqual([...BROKERS, ...APPS].sort());
  });

  it('gives every service a healthcheck', () => {
    for (const [name, s] of Object.entries(services)) expect(healthTest(s), name).not.toBe('');
  });

  it('runs Redis with AOF and noeviction (BullMQ loses jobs when Redis evicts)', () => {
    const command = [services.redis!.command ?? []].flat().join(' ');
    expect(command).toMatch(/--appendonly yes/);
    expect(command).toMatch(/--maxmemory-policy noeviction/);
  });

  it('runs Kafka 3.9 in KRaft mode and RabbitMQ with the management plugin', () => {
    const kafka = services.kafka!;
    expect(kafka.image).toMatch(/^apache\/kafka:3\.9\.\d+$/);
    expect(env(kafka).KAFKA_PROCESS_ROLES).toBe('broker,controller');
    expect(env(kafka).KAFKA_ADVERTISED_LISTENERS).toContain('PLAINTEXT://kafka:9092');
    expect(services.rabbitmq!.image).toMatch(/^rabbitmq:[\w.]+-management/);
  });

  it('runs ElasticMQ (the SQS API) at the version `npm run brokers` fetches, health-checked by ListQueues', () => {
    const version = /ELASTICMQ_VERSION=\$\{ELASTICMQ_VERSION:-([\d.]+)\}/.exec(
      readFileSync(`${ROOT}scripts/sqs/env.sh`, 'utf8'),
    )?.[1];
    expect(services.elasticmq!.image).toBe(`softwaremill/elasticmq-native:${version}`);
    expect(containerPorts(services.elasticmq!)).toEqual([9324]);
    expect(healthTest(services.elasticmq!)).toMatch(/Action=ListQueues.*http:\/\/127\.0\.0\.1:9324/);
  });

  it('starts nothing before what it needs is healthy', () => {
    for (const name of APPS) {
      const deps = dependsOn(services[name]!);
      expect(Object.keys(deps), name).toEqual(expect.arrayContaining(['redis', 'postgres']));
      for (const [dep, cond] of Object.entries(deps))
        expect(cond.condition, `${name} -> ${dep}`).toBe('service_healthy');
    }
    for (const kind of WORKER_KINDS) {
      expect(Object.keys(dependsOn(services[`worker-${kind}`]!))).toEqual(expect.arrayContaining(BROKERS));
    }
  });

  it('gives each app an environment the config schema accepts, reaching the brokers by service name', () => {
    for (const name of APPS) {
      const e = env(services[name]!);
      const config = loadConfig(e, { modules: MODULES });
      expect(new URL(config.redis.url).hostname, name).toBe('redis');
      expect(new URL(config.database.url).hostname, name).toBe('postgres');
      expect(config.bus.kafka.brokers, name).toEqual(['kafka:9092']);
      expect(new URL(config.bus.rabbitmq.url).hostname, name).toBe('rabbitmq');
      expect(new URL(config.bus.sqs.endpoint).host, name).toBe('elasticmq:9324');
    }
  });

  it('picks the workers bus from EVENT_BUS and runs one worker kind per service', () => {
    for (const kind of WORKER_KINDS) {
      const config = loadConfig(env(services[`worker-${kind}`]!), { modules: MODULES });
      expect(config.workers.kinds).toEqual([kind]);
      expect(config.bus.kind).toBe(ENV.EVENT_BUS);
    }
  });

  it('publishes and health-checks the ports the config says', () => {
    const api = loadConfig(env(services.api!), { modules: MODULES });
    expect(containerPorts(services.api!)).toEqual([api.api.port]);
    expect(healthTest(services.api!)).toContain(`http://127.0.0.1:${api.api.port}/readyz`);
    const dashboard = loadConfig(env(services.dashboard!), { modules: MODULES });
    expect(containerPorts(services.dashboard!)).toEqual([dashboard.dashboard.port]);
    expect(healthTest(services.dashboard!)).toContain(`http://127.0.0.1:${dashboard.dashboard.port}/readyz`);
    for (const kind of ['orders', 'outbox', 'projections']) {
      const s = services[`worker-${kind}`]!;
      expect(healthTest(s)).toContain(
        `http://127.0.0.1:${loadConfig(env(s), { modules: MODULES }).workers.metricsPort}/readyz`,
      );
    }
  });

  it('stops apps gracefully: stop_grace_period longer than SHUTDOWN_GRACE_MS', () => {
    for (const name of APPS) {
      const s = services[name]!;
      expect(seconds(s.stop_grace_period), name).toBeGreaterThan(
        loadConfig(env(s), { modules: MODULES }).workers.shutdownGraceMs / 1_000,
      );
    }
  });

  it('runs entry points the Dockerfile builds (dist/<x>.js from <x>.ts)', () => {
    const dockerfile = readFileSync(`${ROOT}Dockerfile`, 'utf8');
    expect(dockerfile).toMatch(/tsc -p tsconfig\.build\.json/);
    expect(dockerfile).toMatch(/shared\/db\/migrations/);
    for (const name of APPS) {
      const s = services[name]!;
      expect(s.build, name).toBeDefined();
      const entry = [s.command ?? []].flat().find((a) => a.startsWith('dist/'));
      expect(entry, name).toBeDefined();
      expect(existsSync(`${ROOT}${entry!.replace(/^dist\//, '').replace(/\.js$/, '.ts')}`), entry).toBe(true);
    }
    const ignored = readFileSync(`${ROOT}.dockerignore`, 'utf8').split('\n');
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', '.git', '.env']));
  });
});

describe('docker-compose.cluster.yml (a three-broker Kafka over the single-node file)', () => {
  const override = parse(readFileSync(`${ROOT}docker-compose.cluster.yml`, 'utf8'), {
    merge: true,
    customTags: [{ tag: '!reset', resolve: () => [] }],
  }) as { services: Record<string, Service> };
  const o = override.services;

  it('runs three KRaft nodes, each a controller of the quorum, internal topics at RF 3', () => {
    const nodes = ['kafka', 'kafka-2', 'kafka-3'].map((n) => env(o[n]!));
    expect(nodes.map((e) => e.KAFKA_NODE_ID)).toEqual(['1', '2', '3']);
    for (const e of nodes) {
      expect(e.KAFKA_CONTROLLER_QUORUM_VOTERS).toBe('1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093');
      expect(e.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR).toBe('3');
      expect(e.KAFKA_TRANSACTION_STATE_LOG_MIN_ISR).toBe('2');
    }
  });

  it('points every app at the three brokers with RF 3 and min in-sync 2, over its base environment', () => {
    for (const name of APPS) {
      const config = loadConfig({ ...env(services[name]!), ...env(o[name]!) }, { modules: MODULES });
      expect(config.bus.kafka.brokers, name).toEqual(['kafka:9092', 'kafka-2:9092', 'kafka-3:9092']);
      expect(config.bus.kafka.replicationFactor, name).toBe(3);
      expect(config.bus.kafka.minInsyncReplicas, name).toBe(2);
    }
  });
});
