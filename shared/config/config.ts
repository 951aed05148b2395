import { z } from 'zod';
import { MODULES } from '../../modules/registry.ts';
import { queueSettingsOf, queueSettingsShape } from '../../modules/settings.ts';
import { assertValidModules } from '../../modules/validate.ts';
import { parseTenantPolicies, tenantDirectory } from '../fairness/tenants.ts';
import { TracingEnvShape, tracingSettings } from './tracing-env.ts';

/**
 * Conveyor's configuration, parsed once from the environment at boot (the shape of the brief's
 * `ScalableConfig`). Nothing else in the code base reads `process.env`: processes call
 * {@link loadConfig} in their `main.ts` and pass the frozen result down.
 */

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number) => z.coerce.number().int().min(min);
/** A comma-separated value as its trimmed, non-empty parts (pipe it into the element schema). */
export const commaSeparated = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
);
const list = commaSeparated.pipe(z.array(z.string()).min(1));
/** Identifiers that become Redis keys, schema names and topic names: keep them boring. */
const ident = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,40}$/, 'lowercase letters, digits, "_" or "-", max 41 chars');

/** Environment variables, each documented in `.env.example`. */
export const EnvSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SERVICE_NAME: ident.default('conveyor'),

  REDIS_URL: z.url().default('redis://127.0.0.1:6379'),
  /** Per-command timeout so the API answers 503 instead of hanging when Redis is down. */
  REDIS_COMMAND_TIMEOUT_MS: int(50).default(2_000),
  /** Prefix for every BullMQ queue; tests use a random one for isolation. */
  QUEUE_PREFIX: ident.default('conveyor'),
  /** Refuse to start when Redis `maxmemory-policy` is not `noeviction` (BullMQ loses jobs otherwise). */
  REDIS_REQUIRE_NOEVICTION: bool.default(true),
  /**
   * Refuse to start unless Redis persists with the append-only file (`appendonly yes`): without it a
   * Redis restart loses every job the API acknowledged. Unset = required in production only.
   */
  REDIS_REQUIRE_AOF: bool.optional(),
  /**
   * Redis Cluster seed nodes (`host:port,host:port,…`): every Redis use goes through an ioredis `Cluster`
   * client instead of REDIS_URL. Each BullMQ queue keeps its keys in one slot (a hash tag per queue).
   */
  REDIS_CLUSTER_NODES: list.optional(),
  /** After an enqueue, wait (Redis `WAIT`) until the job is on this many replicas before answering 202. 0 = do not wait. */
  REDIS_WAIT_REPLICAS: int(0).default(0),
  /** Longest `WAIT` for REDIS_WAIT_REPLICAS; not reaching them in time answers 503 (the job may still be kept). */
  REDIS_WAIT_TIMEOUT_MS: int(1).default(1_000),

  DATABASE_URL: z.url().default('postgres://postgres@127.0.0.1:5432/conveyor'),
  DATABASE_SCHEMA: ident.default('conveyor'),
  DATABASE_POOL_MAX: int(1).default(10),
  DATABASE_STATEMENT_TIMEOUT_MS: int(100).default(10_000),
  /** Create the database named in DATABASE_URL when it does not exist. */
  DATABASE_CREATE: bool.default(true),
  /**
   * A streaming read replica for the query side (GET orders, refunds, customers, stats, dead-letter lists).
   * Commands, workers and migrations never use it; a miss there falls back to the primary. Unset = primary.
   */
  DATABASE_READ_URL: z.url().optional(),

  PORT: int(0).default(3000),
  HOST: z.string().default('0.0.0.0'),
  API_BODY_LIMIT_BYTES: int(1024).default(1_048_576),
  API_BATCH_BODY_LIMIT_BYTES: int(1024).default(8_388_608),
  API_BATCH_MAX_ORDERS: int(1).default(1_000),
  IDEMPOTENCY_TTL_SECONDS: int(60).default(86_400),
  /** How long a request may hold an idempotency key while it enqueues. */
  IDEMPOTENCY_LOCK_SECONDS: int(1).default(30),
  /** Shed load with 503 + Retry-After once the orders backlog (waiting + delayed + prioritized) passes this. 0 = off. */
  API_MAX_BACKLOG: int(0).default(0),
  API_KEYS: z.string().default(''),
  CORS_ORIGINS: z.string().default(''),

  /**
   * Worker kinds run by `npm run workers` (and `npm start`): `outbox`, `projections`, and each command
   * module's name (`orders`, `refunds`, … from modules/registry.ts). Unset = all of them.
   */
  WORKER_KINDS: commaSeparated
    .pipe(z.array(z.enum(['outbox', 'projections', ...MODULES.map((m) => m.name)])).min(1))
    .optional(),
  // Each command module's queue settings — `<MODULE>_CONCURRENCY` … `<MODULE>_STALLED_INTERVAL_MS`
  // (modules/settings.ts) — are merged in below.
  SUPPORTED_CURRENCIES: list.default(['EUR', 'USD', 'GBP', 'CHF', 'JPY']),
  /** Grace period for in-flight work on SIGTERM before connections are forced closed. */
  SHUTDOWN_GRACE_MS: int(0).default(25_000),
  /** Port of a worker process's `/metrics`, `/healthz` and `/readyz` server (0 = any free port). */
  METRICS_PORT: int(0).default(9464),

  OUTBOX_BATCH_SIZE: int(1).default(500),
  /** Safety-net poll; LISTEN/NOTIFY wakes the relay on every commit. */
  OUTBOX_POLL_INTERVAL_MS: int(50).default(5_000),
  /** How long published outbox rows are kept so read models can be rebuilt from them. */
  OUTBOX_RETENTION_HOURS: int(0).default(168),
  /** How long the projections' inbox remembers an event after it occurred: the exactly-once window (h); 0 = forever. */
  INBOX_RETENTION_HOURS: int(0).default(168),

  EVENT_BUS: z.enum(['bullmq', 'kafka', 'rabbitmq', 'sqs']).default('bullmq'),
  PROJECTIONS_CONCURRENCY: int(1).default(50),
  PROJECTIONS_BATCH_SIZE: int(1).default(200),
  PROJECTIONS_BATCH_WAIT_MS: int(0).default(5),
  BUS_MAX_ATTEMPTS: int(1).default(5),
  BUS_BACKOFF_MS: int(1).default(500),
  /** First delay of a snooze (a dependency outage: PostgreSQL down); doubles per snooze. Costs no attempt. */
  BUS_SNOOZE_MS: int(1).default(1_000),
  /** Longest snooze delay. */
  BUS_SNOOZE_MAX_MS: int(1).default(30_000),
  /** BullMQ bus: lock of an event job being projected; a crashed consumer's jobs come back after it. */
  BUS_LOCK_DURATION_MS: int(1_000).default(30_000),
  /** BullMQ bus: how often stalled event jobs are looked for. */
  BUS_STALLED_INTERVAL_MS: int(1_000).default(30_000),
  /** How long a Kafka, RabbitMQ or SQS consumer may keep failing to reconnect or restart before the process gives up. */
  BUS_RECOVERY_BUDGET_MS: int(1_000).default(300_000),

  KAFKA_BROKERS: list.default(['127.0.0.1:9092']),
  KAFKA_CLIENT_ID: z.string().default('conveyor'),
  KAFKA_GROUP_ID: z.string().default('conveyor-projections'),
  KAFKA_TOPIC: z.string().default('conveyor.orders.events'),
  KAFKA_PARTITIONS: int(1).default(6),
  KAFKA_MAX_BYTES_PER_PARTITION: int(1024).default(1_048_576),
  KAFKA_SESSION_TIMEOUT_MS: int(6_000).default(30_000),
  KAFKA_PARTITIONS_CONSUMED_CONCURRENTLY: int(1).default(3),
  KAFKA_TRANSACTIONAL_ID: z.string().default(''),
  /** A fixed transactional slot (`<id>-<n>`, e.g. a StatefulSet pod index) instead of one leased in Redis. */
  KAFKA_TRANSACTIONAL_SLOT: int(0).optional(),
  /** How long a leased transactional slot outlives a relay that died: bounds readers' stall behind its open transaction. */
  KAFKA_TRANSACTIONAL_LEASE_MS: int(1_000).default(10_000),
  /** Replication factor of the topics we create (events, retry, DLQ); unset = the broker's default. */
  KAFKA_REPLICATION_FACTOR: int(1).optional(),
  /** `min.insync.replicas` of the topics we create; with acks=-1 a write needs this many replicas. Unset = broker default. */
  KAFKA_MIN_INSYNC_REPLICAS: int(1).optional(),
  /** TLS to the brokers (system trust store). */
  KAFKA_SSL: bool.default(false),
  KAFKA_SASL_MECHANISM: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']).optional(),
  KAFKA_SASL_USERNAME: z.string().optional(),
  KAFKA_SASL_PASSWORD: z.string().optional(),

  RABBITMQ_URL: z.url().default('amqp://guest:guest@127.0.0.1:5672'),
  RABBITMQ_EXCHANGE: z.string().default('conveyor.events'),
  RABBITMQ_QUEUE: z.string().default('conveyor.projections'),
  RABBITMQ_PREFETCH: int(1).default(100),
  RABBITMQ_CONFIRM_TIMEOUT_MS: int(100).default(10_000),

  /** SQS API endpoint: the local ElasticMQ of `npm run brokers`, or `https://sqs.<region>.amazonaws.com`. */
  SQS_ENDPOINT: z.url().default('http://127.0.0.1:9324'),
  SQS_REGION: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'an AWS region such as eu-west-1')
    .default('us-east-1'),
  /** Queue names are `<prefix>-<group>` and `<prefix>-<group>-dlq` (`.fifo` appended with SQS_FIFO). */
  SQS_QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,40}$/, 'letters, digits, "_" or "-", max 40 chars')
    .default('conveyor-events'),
  /** FIFO queues: per-key (order id) order, deduplication by event id. */
  SQS_FIFO: bool.default(false),
  /** Messages one projections consumer holds at once (an event, or a pack of up to 100); unset = PROJECTIONS_CONCURRENCY. */
  SQS_PREFETCH: int(1).optional(),
  /** Long-poll wait of each ReceiveMessage (capped at half of SHUTDOWN_GRACE_MS: a shutdown waits for the last poll). */
  SQS_WAIT_TIME_SECONDS: int(0).max(20).default(10),
  /** Visibility timeout of a received message, extended while its handler still runs. */
  SQS_VISIBILITY_TIMEOUT_SECONDS: int(5).max(43_200).default(30),

  PAYMENT_URL: z.union([z.url(), z.literal('')]).default(''),
  CIRCUIT_BREAKER_TIMEOUT_MS: int(1).default(5_000),
  CIRCUIT_BREAKER_ERROR_THRESHOLD_PERCENTAGE: int(1).default(50),
  CIRCUIT_BREAKER_RESET_TIMEOUT_MS: int(1).default(30_000),
  /** Calls within the rolling window before the error percentage may open the breaker (one early blip must not). */
  CIRCUIT_BREAKER_VOLUME_THRESHOLD: int(0).default(10),
  /** The breaker's statistical window. */
  CIRCUIT_BREAKER_ROLLING_WINDOW_MS: int(100).default(10_000),

  /** Chaos tests only (honoured when NODE_ENV=test): SIGKILL the workers process after its Nth relay publish, before marking. 0 = off. */
  CHAOS_KILL_AFTER_PUBLISH: int(0).default(0),
  /** Chaos tests only (NODE_ENV=test): SIGKILL after the Nth projection commit, before the bus acks. 0 = off. */
  CHAOS_KILL_AFTER_PROJECTION_COMMIT: int(0).default(0),

  RATE_LIMIT_WINDOW_MS: int(1_000).default(60_000),
  /** Writes (POST, PUT, PATCH, DELETE) per API key per window, unless the key's API_KEYS entry says otherwise. */
  RATE_LIMIT_MAX: int(1).default(100),
  /** Reads (GET, HEAD) per API key per window, a budget of their own, unless the key's entry says otherwise. */
  RATE_LIMIT_READ_MAX: int(1).default(1_000),

  /** AES-256-GCM key (32 bytes, base64) of webhook endpoints' secrets at rest; required in production. */
  WEBHOOKS_SECRET_KEY: z
    .string()
    .refine(
      (v) => Buffer.from(v, 'base64').length === 32,
      'must be 32 random bytes in base64 (openssl rand -base64 32)',
    )
    .optional(),
  /** Address ranges a webhook destination may resolve to although private/loopback/link-local; unset = none in production, loopback otherwise. */
  WEBHOOKS_ALLOWED_CIDRS: commaSeparated.optional(),
  /** Bound on one delivery attempt, connect and answer (ms). */
  WEBHOOKS_TIMEOUT_MS: int(100).default(10_000),
  /** Most of a receiver's answer read (bytes). */
  WEBHOOKS_MAX_RESPONSE_BYTES: int(0).default(65_536),
  /** Deliveries of one endpoint in progress at once, across every worker. */
  WEBHOOKS_ENDPOINT_MAX_IN_FLIGHT: int(1).default(10),
  /** How long the previous secret still signs after a rotation (s). */
  WEBHOOKS_ROTATION_GRACE_SECONDS: int(0).default(86_400),
  /** How long finished delivery records are kept (days). */
  WEBHOOKS_DELIVERY_RETENTION_DAYS: int(1).default(7),
  /** Longest `Prefer: wait` honoured (seconds); a longer one waits this long. */
  RESULTS_WAIT_MAX_SECONDS: int(1).max(300).default(30),
  /** A comment line on each open lifecycle stream this often, so proxies keep it open (ms). */
  RESULTS_HEARTBEAT_MS: int(100).default(15_000),
  /** Open lifecycle streams per API process; past it 503 with Retry-After. */
  RESULTS_MAX_STREAMS: int(0).default(10_000),
  /** How long a stream stays open after the final step for `projected` (ms). */
  RESULTS_PROJECTED_WAIT_MS: int(0).default(30_000),
  /** Fair execution between tenants (shared/fairness): commands take turns across tenants instead of FIFO. */
  FAIRNESS: bool.default(true),
  /** Jobs kept in a command queue's BullMQ wait list; more wait their tenant's turn. Small = fairer, large = fewer idle workers. */
  FAIRNESS_DEPTH: int(1).default(100),
  /** A command waiting for its turn runs anyway after this many hours (a safety net: turns come long before). */
  FAIRNESS_HOLD_HOURS: int(1).max(8_760).default(168),
  /** How often every command worker tops its queue up and gives back slots of workers that died (ms). */
  FAIRNESS_DISPATCH_INTERVAL_MS: int(10).default(250),
  /** Tenants named in the per-tenant metrics (the largest backlogs); the rest are summed as "other". */
  FAIRNESS_METRICS_TOP: int(1).max(100).default(10),
  /** Per-tenant settings: <tenant>:<setting>=<value>[;…] comma-separated; see shared/fairness/tenants.ts. */
  TENANTS: z
    .string()
    .default('')
    .transform((raw, ctx) => {
      try {
        return parseTenantPolicies(raw);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
  /** A tenant's share of the workers unless TENANTS says otherwise. */
  TENANT_WEIGHT: int(1).max(1_000).default(1),
  /** A tenant's commands handed to workers and not yet decided, across replicas, unless TENANTS says otherwise; 0 = no limit. */
  TENANT_MAX_IN_FLIGHT: int(0).default(0),
  /** A tenant's commands waiting for their turn before the API answers 429, unless TENANTS says otherwise; 0 = no quota. */
  TENANT_BACKLOG_QUOTA: int(0).default(250_000),

  /** Audit log rows older than this are pruned (days); 0 = keep forever. */
  AUDIT_RETENTION_DAYS: int(0).default(90),
  /** Dead letters already handled (redriven or discarded) are pruned this long after handling (days); 0 = forever. Pending ones are never pruned. */
  DEAD_LETTER_RETENTION_DAYS: int(0).default(30),

  DASHBOARD_USER: z.string().default('admin'),
  DASHBOARD_PASSWORD: z.string().default(''),
  DASHBOARD_VIEWER_USER: z.string().default('viewer'),
  DASHBOARD_VIEWER_PASSWORD: z.string().default(''),
  SESSION_TTL_SECONDS: int(60).default(28_800),
  /** Port of the operators' dashboard (`npm run dashboard`, and `npm start` beside the API). */
  DASHBOARD_PORT: int(0).default(3001),

  /** OpenTelemetry tracing (OTEL_*), off by default: shared/config/tracing-env.ts. */
  ...TracingEnvShape,
});

export type Env = z.infer<typeof EnvSchema>;

/** Each command module's queue settings, `<MODULE>_CONCURRENCY` … (modules/settings.ts), parsed beside {@link EnvSchema}. */
export const ModuleEnvSchema = z.object(queueSettingsShape(MODULES));

function buildConfig(env: Env, moduleEnv: Readonly<Record<string, unknown>>) {
  const modules = queueSettingsOf(MODULES, moduleEnv);
  return {
    /** Each command module's queue and worker settings, by module name. */
    modules,
    env: env.NODE_ENV,
    serviceName: env.SERVICE_NAME,
    log: { level: env.LOG_LEVEL },
    /** OpenTelemetry tracing; the SDK itself is started by shared/observability/tracing/register.ts. */
    tracing: tracingSettings(env, env.SERVICE_NAME),
    redis: {
      url: env.REDIS_URL,
      commandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS,
      queuePrefix: env.QUEUE_PREFIX,
      requireNoEviction: env.REDIS_REQUIRE_NOEVICTION,
      requireAof: env.REDIS_REQUIRE_AOF ?? env.NODE_ENV === 'production',
      clusterNodes: env.REDIS_CLUSTER_NODES,
      waitReplicas: env.REDIS_WAIT_REPLICAS,
      waitTimeoutMs: env.REDIS_WAIT_TIMEOUT_MS,
    },
    database: {
      url: env.DATABASE_URL,
      schema: env.DATABASE_SCHEMA,
      poolMax: env.DATABASE_POOL_MAX,
      statementTimeoutMs: env.DATABASE_STATEMENT_TIMEOUT_MS,
      createIfMissing: env.DATABASE_CREATE,
      readUrl: env.DATABASE_READ_URL,
    },
    api: {
      port: env.PORT,
      host: env.HOST,
      bodyLimitBytes: env.API_BODY_LIMIT_BYTES,
      batchBodyLimitBytes: env.API_BATCH_BODY_LIMIT_BYTES,
      batchMaxOrders: env.API_BATCH_MAX_ORDERS,
      idempotencyTtlSeconds: env.IDEMPOTENCY_TTL_SECONDS,
      idempotencyLockSeconds: env.IDEMPOTENCY_LOCK_SECONDS,
      maxBacklog: env.API_MAX_BACKLOG,
      apiKeys: env.API_KEYS,
      corsOrigins: env.CORS_ORIGINS.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    },
    workers: {
      kinds: env.WORKER_KINDS ?? ['outbox', 'projections', ...MODULES.map((m) => m.name)],
      shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
      metricsPort: env.METRICS_PORT,
      /** The orders module's queue settings and business rules (its command worker's and the BullMQ bus's defaults). */
      orders: { ...modules['orders']!, supportedCurrencies: env.SUPPORTED_CURRENCIES },
      outbox: {
        batchSize: env.OUTBOX_BATCH_SIZE,
        pollIntervalMs: env.OUTBOX_POLL_INTERVAL_MS,
        retentionHours: env.OUTBOX_RETENTION_HOURS,
      },
      projections: {
        concurrency: env.PROJECTIONS_CONCURRENCY,
        batchSize: env.PROJECTIONS_BATCH_SIZE,
        batchWaitMs: env.PROJECTIONS_BATCH_WAIT_MS,
      },
    },
    bus: {
      kind: env.EVENT_BUS,
      maxAttempts: env.BUS_MAX_ATTEMPTS,
      backoffMs: env.BUS_BACKOFF_MS,
      snoozeMs: env.BUS_SNOOZE_MS,
      snoozeMaxMs: env.BUS_SNOOZE_MAX_MS,
      lockDurationMs: env.BUS_LOCK_DURATION_MS,
      stalledIntervalMs: env.BUS_STALLED_INTERVAL_MS,
      recoveryBudgetMs: env.BUS_RECOVERY_BUDGET_MS,
      consumerConcurrency: env.PROJECTIONS_CONCURRENCY,
      kafka: {
        brokers: env.KAFKA_BROKERS,
        clientId: env.KAFKA_CLIENT_ID,
        topic: env.KAFKA_TOPIC,
        partitions: env.KAFKA_PARTITIONS,
        replicationFactor: env.KAFKA_REPLICATION_FACTOR,
        minInsyncReplicas: env.KAFKA_MIN_INSYNC_REPLICAS,
        ssl: env.KAFKA_SSL,
        sasl:
          env.KAFKA_SASL_MECHANISM && env.KAFKA_SASL_USERNAME !== undefined
            ? {
                mechanism: env.KAFKA_SASL_MECHANISM,
                username: env.KAFKA_SASL_USERNAME,
                password: env.KAFKA_SASL_PASSWORD ?? '',
              }
            : undefined,
        consumer: {
          groupId: env.KAFKA_GROUP_ID,
          maxBytesPerPartition: env.KAFKA_MAX_BYTES_PER_PARTITION,
          sessionTimeout: env.KAFKA_SESSION_TIMEOUT_MS,
          partitionsConsumedConcurrently: env.KAFKA_PARTITIONS_CONSUMED_CONCURRENTLY,
        },
        producer: {
          transactionalId: env.KAFKA_TRANSACTIONAL_ID || undefined,
          transactionalSlot: env.KAFKA_TRANSACTIONAL_SLOT,
          transactionalLeaseMs: env.KAFKA_TRANSACTIONAL_LEASE_MS,
          retry: { retries: 5, initialRetryTime: 100 },
        },
      },
      rabbitmq: {
        url: env.RABBITMQ_URL,
        exchange: env.RABBITMQ_EXCHANGE,
        queue: env.RABBITMQ_QUEUE,
        prefetch: env.RABBITMQ_PREFETCH,
        confirmTimeoutMs: env.RABBITMQ_CONFIRM_TIMEOUT_MS,
      },
      sqs: {
        endpoint: env.SQS_ENDPOINT,
        region: env.SQS_REGION,
        queuePrefix: env.SQS_QUEUE_PREFIX,
        fifo: env.SQS_FIFO,
        prefetch: env.SQS_PREFETCH ?? env.PROJECTIONS_CONCURRENCY,
        waitTimeSeconds: env.SQS_WAIT_TIME_SECONDS,
        visibilityTimeoutSeconds: env.SQS_VISIBILITY_TIMEOUT_SECONDS,
      },
    },
    payment: { url: env.PAYMENT_URL || undefined },
    circuitBreaker: {
      timeout: env.CIRCUIT_BREAKER_TIMEOUT_MS,
      errorThresholdPercentage: env.CIRCUIT_BREAKER_ERROR_THRESHOLD_PERCENTAGE,
      resetTimeout: env.CIRCUIT_BREAKER_RESET_TIMEOUT_MS,
      volumeThreshold: env.CIRCUIT_BREAKER_VOLUME_THRESHOLD,
      rollingWindowMs: env.CIRCUIT_BREAKER_ROLLING_WINDOW_MS,
    },
    chaos: {
      killAfterPublish: env.CHAOS_KILL_AFTER_PUBLISH,
      killAfterProjectionCommit: env.CHAOS_KILL_AFTER_PROJECTION_COMMIT,
    },
    /** The webhooks module (modules/webhooks): secrets at rest, destinations, bounds. */
    webhooks: {
      secretKey: env.WEBHOOKS_SECRET_KEY,
      allowedCidrs: env.WEBHOOKS_ALLOWED_CIDRS,
      timeoutMs: env.WEBHOOKS_TIMEOUT_MS,
      maxResponseBytes: env.WEBHOOKS_MAX_RESPONSE_BYTES,
      endpointMaxInFlight: env.WEBHOOKS_ENDPOINT_MAX_IN_FLIGHT,
      rotationGraceSeconds: env.WEBHOOKS_ROTATION_GRACE_SECONDS,
      deliveryRetentionDays: env.WEBHOOKS_DELIVERY_RETENTION_DAYS,
    },
    /** Results without polling (api/results): `Prefer: wait` and the lifecycle streams. */
    results: {
      waitMaxSeconds: env.RESULTS_WAIT_MAX_SECONDS,
      heartbeatMs: env.RESULTS_HEARTBEAT_MS,
      maxStreams: env.RESULTS_MAX_STREAMS,
      projectedWaitMs: env.RESULTS_PROJECTED_WAIT_MS,
    },
    /** Fair execution between tenants and each tenant's share and bounds (shared/fairness). */
    fairness: {
      enabled: env.FAIRNESS,
      depth: env.FAIRNESS_DEPTH,
      holdMs: env.FAIRNESS_HOLD_HOURS * 3_600_000,
      dispatchIntervalMs: env.FAIRNESS_DISPATCH_INTERVAL_MS,
      metricsTop: env.FAIRNESS_METRICS_TOP,
      tenants: tenantDirectory(env.TENANTS, {
        weight: env.TENANT_WEIGHT,
        maxInFlight: env.TENANT_MAX_IN_FLIGHT,
        backlogQuota: env.TENANT_BACKLOG_QUOTA,
        subTenants: false,
      }),
    },
    rateLimiting: {
      windowMs: env.RATE_LIMIT_WINDOW_MS,
      maxRequests: env.RATE_LIMIT_MAX,
      maxReadRequests: env.RATE_LIMIT_READ_MAX,
    },
    retention: {
      auditDays: env.AUDIT_RETENTION_DAYS,
      inboxHours: env.INBOX_RETENTION_HOURS,
      deadLetterDays: env.DEAD_LETTER_RETENTION_DAYS,
    },
    dashboard: {
      user: env.DASHBOARD_USER,
      password: env.DASHBOARD_PASSWORD,
      viewerUser: env.DASHBOARD_VIEWER_USER,
      viewerPassword: env.DASHBOARD_VIEWER_PASSWORD,
      sessionTtlSeconds: env.SESSION_TTL_SECONDS,
      port: env.DASHBOARD_PORT,
      host: env.HOST,
    },
  };
}

/** The typed, frozen configuration every factory receives. */
export type Config = ReturnType<typeof buildConfig>;

/** Every invalid variable, named, with why. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Settings that are each valid but cannot work together (README: "Running at scale"), each named with
 * why — refused at start instead of failing on first use.
 */
function unsupportedCombinations(env: Env): string[] {
  const problems: string[] = [];
  if (env.EVENT_BUS === 'sqs' && env.REDIS_CLUSTER_NODES !== undefined) {
    // The SQS bus keeps its subscription-group registry on a plain client to REDIS_URL: against a
    // cluster every publish, which reads the registry, fails with MOVED.
    problems.push(
      'EVENT_BUS=sqs with REDIS_CLUSTER_NODES: the SQS bus is not supported on a Redis Cluster yet ' +
        '(its group registry uses REDIS_URL); unset REDIS_CLUSTER_NODES or use EVENT_BUS=bullmq, kafka or rabbitmq',
    );
  }
  return problems;
}

/**
 * Parses an environment (normally `process.env`) into a frozen {@link Config}.
 * @throws {ConfigError} naming every bad variable.
 * @example const config = loadConfig(process.env);
 */
export function loadConfig(source: Record<string, string | undefined>): Config {
  // Empty strings mean "unset" so `.env` files can list a variable without a value.
  assertValidModules(MODULES);
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = EnvSchema.safeParse(cleaned);
  const modules = ModuleEnvSchema.safeParse(cleaned);
  const issues = [...(parsed.error?.issues ?? []), ...(modules.error?.issues ?? [])];
  if (!parsed.success || !modules.success) {
    throw new ConfigError(issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  const conflicts = unsupportedCombinations(parsed.data);
  if (conflicts.length > 0) throw new ConfigError(conflicts);
  return deepFreeze(buildConfig(parsed.data, modules.data));
}

/** For `main.ts` files: parse or print every problem and exit non-zero. */
export function loadConfigOrExit(source: Record<string, string | undefined>): Config {
  try {
    return loadConfig(source);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
}
