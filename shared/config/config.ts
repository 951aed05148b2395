import { z } from 'zod';
import type { ModuleDefinition } from '../modules/module.ts';
import { queueSettingsOf, queueSettingsShape } from '../modules/settings.ts';
import { assertValidModules } from '../modules/validate.ts';
import { parseTenantPolicies, tenantDirectory } from '../fairness/tenants.ts';
import { TracingEnvShape, tracingSettings } from './tracing-env.ts';

/**
 * Conveyor's configuration, parsed once from the environment at boot (the shape of the brief's
 * `ScalableConfig`). Nothing else in the code base reads `process.env`: processes call
 * {@link loadConfig} in their `main.ts`, with the registry's modules, and pass the frozen result down.
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

/** A group of variables as the references list them (`.env.example`, docs/configuration.md). */
export interface EnvArea<T extends z.ZodRawShape = z.ZodRawShape> {
  readonly title: string;
  readonly shape: T;
}
const area = <T extends z.ZodRawShape>(title: string, shape: T): EnvArea<T> => ({ title, shape });

/*
 * Every variable is documented once, here: its `.describe()` text and its default are what
 * `.env.example` and docs/configuration.md are generated from (`node scripts/config-table.mjs`).
 */

const processArea = area('Process', {
  NODE_ENV: z
    .enum(['development', 'test', 'production'])
    .default('development')
    .describe('development | test | production (production requires API_KEYS and a DASHBOARD_PASSWORD)'),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info')
    .describe('fatal | error | warn | info | debug | trace | silent'),
  SERVICE_NAME: ident.default('conveyor').describe('Prefix of the `service` field in every log line'),
  SHUTDOWN_GRACE_MS: int(0)
    .default(25_000)
    .describe('Grace period for in-flight work on SIGTERM/SIGINT before connections are forced closed (ms)'),
});

const redisArea = area('Redis (queues, idempotency keys, sessions, rate limits)', {
  REDIS_URL: z.url().default('redis://127.0.0.1:6379').describe('Redis connection URL'),
  REDIS_COMMAND_TIMEOUT_MS: int(50)
    .default(2_000)
    .describe('Per-command timeout: the API answers 503 instead of hanging while Redis is down (ms)'),
  QUEUE_PREFIX: ident
    .default('conveyor')
    .describe('Prefix of every BullMQ queue and Redis key (isolates deployments sharing one Redis)'),
  REDIS_REQUIRE_NOEVICTION: bool
    .default(true)
    .describe(
      'Refuse to start unless Redis maxmemory-policy is noeviction (BullMQ loses jobs otherwise). Tests only: false',
    ),
  REDIS_REQUIRE_AOF: bool
    .optional()
    .describe(
      'Refuse to start unless Redis has appendonly yes (a restart otherwise loses acknowledged jobs); unset = required when NODE_ENV=production',
    ),
  REDIS_CLUSTER_NODES: list
    .optional()
    .describe(
      'Redis Cluster seed nodes (host:port,host:port,...): every Redis use goes through a cluster client, each BullMQ queue keeping its keys in one slot; empty = REDIS_URL',
    ),
  REDIS_WAIT_REPLICAS: int(0)
    .default(0)
    .describe(
      'Before answering 202, wait (Redis WAIT) until the job is on this many replicas: what a failover can lose, see docs/platform.md; 0 = do not wait',
    ),
  REDIS_WAIT_TIMEOUT_MS: int(1)
    .default(1_000)
    .describe(
      'Longest WAIT for REDIS_WAIT_REPLICAS; not reached in time answers 503, and the job may still be kept (ms)',
    ),
});

const databaseArea = area('PostgreSQL (write model, outbox, read models, dead letters, audit log)', {
  DATABASE_URL: z
    .url()
    .default('postgres://postgres@127.0.0.1:5432/conveyor')
    .describe('PostgreSQL connection URL (the primary)'),
  DATABASE_SCHEMA: ident
    .default('conveyor')
    .describe('Schema holding every table (created by the migrations)'),
  DATABASE_POOL_MAX: int(1).default(10).describe('Connections per process pool'),
  DATABASE_STATEMENT_TIMEOUT_MS: int(100)
    .default(10_000)
    .describe('statement_timeout of every connection (ms)'),
  DATABASE_CREATE: bool
    .default(true)
    .describe('Create the database named in DATABASE_URL when it does not exist'),
  DATABASE_READ_URL: z
    .url()
    .optional()
    .describe(
      'Streaming read replica for the query side (GET routes); commands, workers and migrations never use it; a miss falls back to the primary; empty = primary',
    ),
});

const apiArea = area('API', {
  PORT: int(0).default(3000).describe('Port of the HTTP API'),
  HOST: z.string().default('0.0.0.0').describe('Address the API and the dashboard listen on'),
  API_BODY_LIMIT_BYTES: int(1024)
    .default(1_048_576)
    .describe('Body limit of every route (bytes); 413 over it, chunked bodies included'),
  API_BATCH_BODY_LIMIT_BYTES: int(1024)
    .default(8_388_608)
    .describe('Body limit of POST /v1/orders/batch (bytes)'),
  API_BATCH_MAX_ORDERS: int(1).default(1_000).describe('Most orders in one POST /v1/orders/batch'),
  IDEMPOTENCY_TTL_SECONDS: int(60)
    .default(86_400)
    .describe('How long an Idempotency-Key and its response are remembered (s)'),
  IDEMPOTENCY_LOCK_SECONDS: int(1)
    .default(30)
    .describe(
      'How long a request may hold an Idempotency-Key while it enqueues (s); a concurrent duplicate gets 409',
    ),
  API_MAX_BACKLOG: int(0)
    .default(0)
    .describe(
      'Shed load with 503 + Retry-After when the orders backlog (waiting + delayed + prioritized) reaches this; 0 = off',
    ),
  API_KEYS: z
    .string()
    .default('')
    .describe(
      'Comma-separated <id>:<scope>[+<scope>...]:<sha256 hex of the key>[:<writes>/<reads>]; scopes scaling:read, admin and every module scope (orders:write, orders:read, webhooks:write, webhooks:read).\n' +
        "The optional :<writes>/<reads> are the key's own rate limits per window (a side left empty keeps RATE_LIMIT_MAX / RATE_LIMIT_READ_MAX).\n" +
        'Generate one with: npm run api-key -- <id> <scope>+<scope> [<writes>/<reads>]',
    ),
  CORS_ORIGINS: z
    .string()
    .default('')
    .describe('Comma-separated allowed CORS origins; empty = no CORS headers'),
  RATE_LIMIT_WINDOW_MS: int(1_000)
    .default(60_000)
    .describe(
      'Rate limit window: budgets are per API key per window, counted in Redis and shared by every API replica (ms)',
    ),
  RATE_LIMIT_MAX: int(1)
    .default(100)
    .describe(
      'Writes (POST, PUT, PATCH, DELETE) per key per window unless its API_KEYS entry says otherwise; the dev key gets at least 10000',
    ),
  RATE_LIMIT_READ_MAX: int(1)
    .default(1_000)
    .describe(
      'Reads (GET, HEAD) per key per window: a budget of their own, so reading back orders never waits on writes; the dev key gets at least 10000',
    ),
});

const webhooksArea = area('Webhooks (signed outbound deliveries; modules/webhooks)', {
  WEBHOOKS_SECRET_KEY: z
    .string()
    .refine(
      (v) => Buffer.from(v, 'base64').length === 32,
      'must be 32 random bytes in base64 (openssl rand -base64 32)',
    )
    .optional()
    .describe(
      "AES-256-GCM key of webhook endpoints' secrets at rest: 32 random bytes in base64 (openssl rand -base64 32). Required in production; elsewhere a fixed development key is used with a warning",
    ),
  WEBHOOKS_ALLOWED_CIDRS: commaSeparated
    .optional()
    .describe(
      'Address ranges a destination may resolve to although loopback, private or link-local (comma-separated CIDRs); unset = none in production, 127.0.0.0/8,::1/128 otherwise',
    ),
  WEBHOOKS_TIMEOUT_MS: int(100)
    .default(10_000)
    .describe('Bound on one delivery attempt, connect and answer (ms)'),
  WEBHOOKS_MAX_RESPONSE_BYTES: int(0).default(65_536).describe("Most of a receiver's answer read (bytes)"),
  WEBHOOKS_ENDPOINT_MAX_IN_FLIGHT: int(1)
    .default(10)
    .describe(
      "Deliveries of one endpoint in progress at once, across every worker (its fairness tenant's max_in_flight)",
    ),
  WEBHOOKS_ROTATION_GRACE_SECONDS: int(0)
    .default(86_400)
    .describe('How long the previous secret still signs after rotate-secret (s)'),
  WEBHOOKS_DELIVERY_RETENTION_DAYS: int(1)
    .default(7)
    .describe('How long finished delivery records are kept for GET /v1/webhooks/{id}/deliveries (days)'),
});

const resultsArea = area('Results without polling (Prefer: wait, lifecycle streams)', {
  RESULTS_WAIT_MAX_SECONDS: int(1)
    .max(300)
    .default(30)
    .describe(
      "Longest Prefer: wait=<seconds> honoured on a command's POST or GET; a longer one waits this long",
    ),
  RESULTS_HEARTBEAT_MS: int(100)
    .default(15_000)
    .describe(
      'A comment line on each open lifecycle stream (GET .../events) this often, so proxies keep it open (ms)',
    ),
  RESULTS_MAX_STREAMS: int(0)
    .default(10_000)
    .describe('Open lifecycle streams per API process; past it 503 with Retry-After'),
  RESULTS_PROJECTED_WAIT_MS: int(0)
    .default(30_000)
    .describe('How long a stream stays open after the final step, for the projected step (ms)'),
});

const bulkArea = area('Bulk actions by query (redrive or cancel what a search selects)', {
  BULK_RATE_PER_SECOND: int(1)
    .default(200)
    .describe(
      'Items per second a bulk action acts on unless it names its own rate, so live traffic keeps its latency',
    ),
});

const fairnessArea = area('Fairness between tenants (each API key, or a sub-tenant a key names)', {
  FAIRNESS: bool
    .default(true)
    .describe(
      'Commands take turns across tenants (weighted round-robin) instead of first-in first-out over everything',
    ),
  FAIRNESS_DEPTH: int(1)
    .default(100)
    .describe(
      "Jobs kept in each command queue's wait list; the rest wait their tenant's turn. Smaller is fairer, larger keeps more workers busy",
    ),
  FAIRNESS_HOLD_HOURS: int(1)
    .max(8_760)
    .default(168)
    .describe(
      'A command still waiting for its turn after this many hours runs anyway (a safety net: turns come long before)',
    ),
  FAIRNESS_DISPATCH_INTERVAL_MS: int(10)
    .default(250)
    .describe(
      'How often every command worker tops its queue up and takes back in-flight slots of workers that died (ms)',
    ),
  FAIRNESS_RESERVE: int(0)
    .default(0)
    .describe(
      'Worker slots per process kept, on top of <MODULE>_CONCURRENCY, for tenants without a backlog (tenants with one share at most the concurrency); 0 = off. Costs throughput (about 30% measured)',
    ),
  FAIRNESS_METRICS_TOP: int(1)
    .max(100)
    .default(10)
    .describe(
      'Tenants named in the per-tenant metrics (largest backlogs first); the others are summed as tenant="(other)"',
    ),
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
    })
    .describe(
      'Per-tenant settings, comma-separated <tenant>:<setting>=<value>[;<setting>=<value>...]; a tenant is a key id or <key id>/<sub-tenant>.\n' +
        'Settings: weight, max_in_flight, backlog_quota, sub_tenants=on|off (the key may name sub-tenants with the Conveyor-Tenant header).\n' +
        'Example: TENANTS=shop:weight=3;max_in_flight=50;sub_tenants=on,shop/acme:weight=2,reports:backlog_quota=1000',
    ),
  TENANT_WEIGHT: int(1)
    .max(1_000)
    .default(1)
    .describe("A tenant's share while others also wait, unless TENANTS says otherwise"),
  TENANT_MAX_IN_FLIGHT: int(0)
    .default(0)
    .describe(
      "A tenant's commands handed to workers and not yet decided, across every replica, unless TENANTS says otherwise; 0 = no limit",
    ),
  TENANT_BACKLOG_QUOTA: int(0)
    .default(250_000)
    .describe(
      "A tenant's commands waiting for their turn before its next ones are answered 429 with Retry-After, unless TENANTS says otherwise; 0 = no quota",
    ),
});

/**
 * The command modules a configuration is parsed for (the registry's, handed in by the composition
 * root): their names are worker kinds, their queue settings variables, their events are checked.
 */
export type ConfigModules = readonly Pick<ModuleDefinition, 'name' | 'queueDefaults' | 'events'>[];

/** `WORKER_KINDS` accepts each of `modules` by name. */
const workersArea = (modules: ConfigModules) =>
  area('Workers', {
    WORKER_KINDS: commaSeparated
      .pipe(z.array(z.enum(['outbox', 'projections', ...modules.map((m) => m.name)])).min(1))
      .optional()
      .describe(
        'Worker kinds this process runs (npm run workers / npm start): outbox, projections and each command module (modules/registry.ts); empty = all',
      ),
    METRICS_PORT: int(0)
      .default(9464)
      .describe("Port of a worker process's /metrics, /healthz and /readyz (0 = any free port)"),
    SUPPORTED_CURRENCIES: list
      .default(['EUR', 'USD', 'GBP', 'CHF', 'JPY'])
      .describe('Currencies the business accepts; others are rejected (not retried)'),
    OUTBOX_BATCH_SIZE: int(1).default(500).describe('Outbox rows claimed per relay transaction'),
    OUTBOX_POLL_INTERVAL_MS: int(50)
      .default(5_000)
      .describe(
        'Safety-net poll of the outbox; the command workers wake the relays with a NOTIFY after every commit (ms)',
      ),
    OUTBOX_RETENTION_HOURS: int(0)
      .default(168)
      .describe('Keep published events this long to rebuild read models (h); 0 = forever'),
    INBOX_RETENTION_HOURS: int(0)
      .default(168)
      .describe(
        "The projections' inbox remembers an event this long after it occurred: the exactly-once window; an older delivery it has forgotten is dead-lettered, never applied twice (h); 0 = forever",
      ),
    AUDIT_RETENTION_DAYS: int(0)
      .default(90)
      .describe(
        "Audit log rows older than this are pruned by the outbox workers' periodic prune (days); 0 = forever",
      ),
    DEAD_LETTER_RETENTION_DAYS: int(0)
      .default(30)
      .describe(
        'Dead letters already redriven or discarded are pruned this long after handling (days); 0 = forever. Pending ones are kept',
      ),
    PROJECTIONS_CONCURRENCY: int(1).default(50).describe('Projection consumer prefetch'),
    PROJECTIONS_BATCH_SIZE: int(1).default(200).describe('Events whose projection shares one transaction'),
    PROJECTIONS_BATCH_WAIT_MS: int(0)
      .default(5)
      .describe('How long a projection micro-batch waits to fill (ms)'),
  });

const busArea = area('Event bus', {
  EVENT_BUS: z
    .enum(['bullmq', 'kafka', 'rabbitmq', 'sqs'])
    .default('bullmq')
    .describe('bullmq (embedded) | kafka | rabbitmq | sqs'),
  BUS_MAX_ATTEMPTS: int(1).default(5).describe('Deliveries of an event before it is dead-lettered'),
  BUS_BACKOFF_MS: int(1).default(500).describe('Base of the exponential backoff between deliveries (ms)'),
  BUS_SNOOZE_MS: int(1)
    .default(1_000)
    .describe(
      'A dependency outage (PostgreSQL down, a breaker open) snoozes a command or event: it waits, starting at this delay and doubling, and no attempt is consumed (ms)',
    ),
  BUS_SNOOZE_MAX_MS: int(1).default(30_000).describe('Longest snooze delay (ms)'),
  BUS_LOCK_DURATION_MS: int(1_000)
    .default(30_000)
    .describe(
      "BullMQ event bus: job lock of an event being projected; a crashed consumer's jobs come back after it (ms)",
    ),
  BUS_STALLED_INTERVAL_MS: int(1_000)
    .default(30_000)
    .describe('BullMQ event bus: how often stalled event jobs are looked for (ms)'),
  BUS_BATCH_FORMAT: z
    .enum(['pack', 'batch'])
    .default('pack')
    .describe(
      "BullMQ event bus: how a relay batch is stored — pack (each event's JSON inline) or batch (encoded bytes, what consumers older than packs read: set it while such consumers still run)",
    ),
  BUS_RECOVERY_BUDGET_MS: int(1_000)
    .default(300_000)
    .describe(
      'How long a Kafka, RabbitMQ or SQS consumer may keep failing to reconnect, restart or receive before the process gives up (/healthz 503, exit 70); a broker refusing the topology or credentials (406/403) ends it at once (ms)',
    ),
  KAFKA_BROKERS: list
    .default(['127.0.0.1:9092'])
    .describe('Kafka bootstrap brokers (comma-separated host:port)'),
  KAFKA_CLIENT_ID: z.string().default('conveyor').describe('Kafka client id'),
  KAFKA_GROUP_ID: z
    .string()
    .default('conveyor-projections')
    .describe('Consumer group of the projections; other subscription groups are <KAFKA_GROUP_ID>.<group>'),
  KAFKA_TOPIC: z
    .string()
    .default('conveyor.orders.events')
    .describe('Events topic; <topic>.retry and <topic>.dlq are created beside it at start'),
  KAFKA_PARTITIONS: int(1).default(6).describe('Partitions of the topics we create'),
  KAFKA_MAX_BYTES_PER_PARTITION: int(1024)
    .default(1_048_576)
    .describe('Consumer fetch size per partition (bytes)'),
  KAFKA_SESSION_TIMEOUT_MS: int(6_000).default(30_000).describe('Consumer session timeout (ms)'),
  KAFKA_PARTITIONS_CONSUMED_CONCURRENTLY: int(1).default(3).describe('Partitions a consumer handles at once'),
  KAFKA_TRANSACTIONAL_ID: z
    .string()
    .default('')
    .describe(
      'Publish each relay batch in one Kafka transaction (consumers read committed); empty = idempotent producer',
    ),
  KAFKA_TRANSACTIONAL_SLOT: int(0)
    .optional()
    .describe(
      'A fixed transactional slot (the producer id is <KAFKA_TRANSACTIONAL_ID>-<n>), e.g. a StatefulSet pod index; empty = a slot leased in Redis',
    ),
  KAFKA_TRANSACTIONAL_LEASE_MS: int(1_000)
    .default(10_000)
    .describe(
      'How long a leased slot outlives a relay that died: readers stall behind its open transaction about 4/3 of this at most (ms)',
    ),
  KAFKA_REPLICATION_FACTOR: int(1)
    .optional()
    .describe(
      "Replication factor of the topics we create (events, retry, DLQ); empty = the broker's default",
    ),
  KAFKA_MIN_INSYNC_REPLICAS: int(1)
    .optional()
    .describe(
      "min.insync.replicas of the topics we create: with acks=-1 a write needs this many replicas; empty = the broker's default",
    ),
  KAFKA_SSL: bool.default(false).describe('TLS to the brokers (system trust store)'),
  KAFKA_SASL_MECHANISM: z
    .enum(['plain', 'scram-sha-256', 'scram-sha-512'])
    .optional()
    .describe('SASL for real clusters: plain | scram-sha-256 | scram-sha-512'),
  KAFKA_SASL_USERNAME: z.string().optional().describe('SASL user name'),
  KAFKA_SASL_PASSWORD: z.string().optional().describe('SASL password'),
  RABBITMQ_URL: z.url().default('amqp://guest:guest@127.0.0.1:5672').describe('RabbitMQ connection URL'),
  RABBITMQ_EXCHANGE: z
    .string()
    .default('conveyor.events')
    .describe('Topic exchange the relay publishes to (routing key = event type)'),
  RABBITMQ_QUEUE: z
    .string()
    .default('conveyor.projections')
    .describe(
      "The projections group's quorum work queue (retry queues and <queue>.dlq derive from it). Its arguments are fixed at declaration: changing the attempts/delivery limit needs a new queue name",
    ),
  RABBITMQ_PREFETCH: int(1).default(100).describe('Unacknowledged messages a consumer holds at once'),
  RABBITMQ_CONFIRM_TIMEOUT_MS: int(100)
    .default(10_000)
    .describe(
      'Our own publisher-confirm timeout (amqplib can leave a confirm hanging when a connection dies) (ms)',
    ),
  SQS_ENDPOINT: z
    .url()
    .default('http://127.0.0.1:9324')
    .describe(
      "SQS API endpoint: the local ElasticMQ that npm run brokers starts, or https://sqs.<region>.amazonaws.com. Endpoints outside amazonaws.com get placeholder credentials; AWS ones the SDK's default chain (env, IRSA, pod identity, instance role)",
    ),
  SQS_REGION: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'an AWS region such as eu-west-1')
    .default('us-east-1')
    .describe('AWS region of the queues'),
  SQS_QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,40}$/, 'letters, digits, "_" or "-", max 40 chars')
    .default('conveyor-events')
    .describe(
      'Queues <prefix>-<group> and their dead-letter queues <prefix>-<group>-dlq (the projections group: conveyor-events-projections)',
    ),
  SQS_FIFO: bool
    .default(false)
    .describe(
      'FIFO queues (names end in .fifo): per-key order (MessageGroupId = order id), deduplication by event id',
    ),
  SQS_PREFETCH: int(1)
    .optional()
    .describe(
      'Messages a projections consumer holds at once (its prefetch; a message is one event, or a pack of up to 100 a relay batch was sent as); unset = PROJECTIONS_CONCURRENCY',
    ),
  SQS_WAIT_TIME_SECONDS: int(0)
    .max(20)
    .default(10)
    .describe(
      'Long-poll wait of each ReceiveMessage (s, 0-20), capped at half of SHUTDOWN_GRACE_MS: a shutdown waits for the polls in flight',
    ),
  SQS_VISIBILITY_TIMEOUT_SECONDS: int(5)
    .max(43_200)
    .default(30)
    .describe(
      "Visibility timeout of a received message (s); extended while its handler runs, so only a crashed consumer's messages wait it out",
    ),
});

const paymentArea = area('Payment service and circuit breaker', {
  PAYMENT_URL: z
    .union([z.url(), z.literal('')])
    .default('')
    .describe('Payment authorization endpoint; empty = built-in approver'),
  CIRCUIT_BREAKER_TIMEOUT_MS: int(1).default(5_000).describe('A payment call slower than this fails (ms)'),
  CIRCUIT_BREAKER_ERROR_THRESHOLD_PERCENTAGE: int(1)
    .default(50)
    .describe('Share of failed calls in the rolling window that opens the breaker (%)'),
  CIRCUIT_BREAKER_RESET_TIMEOUT_MS: int(1)
    .default(30_000)
    .describe('How long an open breaker waits before letting a trial call through (half-open) (ms)'),
  CIRCUIT_BREAKER_VOLUME_THRESHOLD: int(0)
    .default(10)
    .describe(
      'Calls within the rolling window before the error percentage may open the breaker (one early blip must not)',
    ),
  CIRCUIT_BREAKER_ROLLING_WINDOW_MS: int(100)
    .default(10_000)
    .describe("The breaker's statistical window (ms)"),
});

const dashboardArea = area('Dashboard', {
  DASHBOARD_PORT: int(0)
    .default(3001)
    .describe("Port of the operators' console (npm run dashboard, and npm start beside the API)"),
  DASHBOARD_USER: z.string().default('admin').describe('The console admin'),
  DASHBOARD_PASSWORD: z
    .string()
    .default('')
    .describe('The admin password; required in production (npm start sets conveyor locally)'),
  DASHBOARD_VIEWER_USER: z.string().default('viewer').describe('The read-only console user'),
  DASHBOARD_VIEWER_PASSWORD: z
    .string()
    .default('')
    .describe('The viewer password (npm start sets viewer locally); empty = no viewer login'),
  SESSION_TTL_SECONDS: int(60)
    .default(28_800)
    .describe('Dashboard and API sessions live in Redis this long (s)'),
});

const tracingArea = area('Tracing (OpenTelemetry; the standard OTEL_* variables)', {
  OTEL_TRACES_EXPORTER: TracingEnvShape.OTEL_TRACES_EXPORTER.describe(
    'otlp | zipkin | console | none. Empty = none (tracing off, nothing loaded), or otlp when an OTLP endpoint is set',
  ),
  OTEL_SDK_DISABLED: TracingEnvShape.OTEL_SDK_DISABLED.describe(
    'true = tracing off whatever OTEL_TRACES_EXPORTER says',
  ),
  OTEL_SERVICE_NAME: TracingEnvShape.OTEL_SERVICE_NAME.describe(
    'service.name of every span; empty = SERVICE_NAME',
  ),
  OTEL_RESOURCE_ATTRIBUTES: TracingEnvShape.OTEL_RESOURCE_ATTRIBUTES.describe(
    'Extra resource attributes, key=value,key=value (e.g. deployment.environment.name=staging)',
  ),
  OTEL_EXPORTER_OTLP_ENDPOINT: TracingEnvShape.OTEL_EXPORTER_OTLP_ENDPOINT.describe(
    'OTLP/HTTP (protobuf) base URL of a collector, Jaeger or Tempo; spans go to <endpoint>/v1/traces. Empty = http://localhost:4318',
  ),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: TracingEnvShape.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.describe(
    'Full OTLP traces URL, used as is (wins over OTEL_EXPORTER_OTLP_ENDPOINT)',
  ),
  OTEL_EXPORTER_OTLP_HEADERS: TracingEnvShape.OTEL_EXPORTER_OTLP_HEADERS.describe(
    'Headers of every OTLP request, key=value,key=value (URL-encoded values; e.g. an API key of a hosted backend)',
  ),
  OTEL_EXPORTER_OTLP_TIMEOUT: TracingEnvShape.OTEL_EXPORTER_OTLP_TIMEOUT.describe(
    'Timeout of one OTLP export (ms)',
  ),
  OTEL_EXPORTER_ZIPKIN_ENDPOINT: TracingEnvShape.OTEL_EXPORTER_ZIPKIN_ENDPOINT.describe(
    'Zipkin v2 JSON endpoint (OTEL_TRACES_EXPORTER=zipkin)',
  ),
  OTEL_TRACES_SAMPLER: TracingEnvShape.OTEL_TRACES_SAMPLER.describe(
    'always_on | always_off | traceidratio | parentbased_always_on | parentbased_always_off | parentbased_traceidratio',
  ),
  OTEL_TRACES_SAMPLER_ARG: TracingEnvShape.OTEL_TRACES_SAMPLER_ARG.describe(
    'Ratio (0..1) of the traceidratio samplers; empty = 1',
  ),
  OTEL_BSP_SCHEDULE_DELAY: TracingEnvShape.OTEL_BSP_SCHEDULE_DELAY.describe(
    'Batch span processor: delay between exports (ms)',
  ),
  OTEL_BSP_EXPORT_TIMEOUT: TracingEnvShape.OTEL_BSP_EXPORT_TIMEOUT.describe(
    'Batch span processor: timeout of one export (ms)',
  ),
  OTEL_BSP_MAX_QUEUE_SIZE: TracingEnvShape.OTEL_BSP_MAX_QUEUE_SIZE.describe(
    'Batch span processor: spans queued before new ones are dropped',
  ),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: TracingEnvShape.OTEL_BSP_MAX_EXPORT_BATCH_SIZE.describe(
    'Batch span processor: spans per export',
  ),
});

const chaosArea = area('Chaos tests only (honoured only when NODE_ENV=test)', {
  CHAOS_KILL_AFTER_PUBLISH: int(0)
    .default(0)
    .describe(
      'SIGKILL the workers process after its Nth relay publish, before marking rows published; 0 = off',
    ),
  CHAOS_KILL_AFTER_PROJECTION_COMMIT: int(0)
    .default(0)
    .describe('SIGKILL after the Nth projection commit, before the bus acknowledges; 0 = off'),
});

/**
 * The areas of {@link createEnvSchema}'s schema for `modules`, in the order the references list them.
 * Each command module's queue settings (`<MODULE>_CONCURRENCY` … `<MODULE>_STALLED_INTERVAL_MS`) are
 * {@link createModuleEnvSchema}'s.
 */
export function envAreas(modules: ConfigModules): readonly EnvArea[] {
  return [
    processArea,
    redisArea,
    databaseArea,
    apiArea,
    webhooksArea,
    resultsArea,
    bulkArea,
    fairnessArea,
    workersArea(modules),
    busArea,
    paymentArea,
    dashboardArea,
    tracingArea,
    chaosArea,
  ];
}

/** Environment variables for `modules`: every area's, in one schema. */
export function createEnvSchema(modules: ConfigModules) {
  return z.object({
    ...processArea.shape,
    ...redisArea.shape,
    ...databaseArea.shape,
    ...apiArea.shape,
    ...webhooksArea.shape,
    ...resultsArea.shape,
    ...bulkArea.shape,
    ...fairnessArea.shape,
    ...workersArea(modules).shape,
    ...busArea.shape,
    ...paymentArea.shape,
    ...dashboardArea.shape,
    ...tracingArea.shape,
    ...chaosArea.shape,
  });
}

export type Env = z.infer<ReturnType<typeof createEnvSchema>>;

/**
 * Each of `modules`' queue settings, `<MODULE>_CONCURRENCY` … (shared/modules/settings.ts), parsed
 * beside {@link createEnvSchema}'s.
 */
export function createModuleEnvSchema(modules: ConfigModules) {
  return z.object(queueSettingsShape(modules));
}

function buildConfig(env: Env, moduleEnv: Readonly<Record<string, unknown>>, registered: ConfigModules) {
  const modules = queueSettingsOf(registered, moduleEnv);
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
      kinds: env.WORKER_KINDS ?? ['outbox', 'projections', ...registered.map((m) => m.name)],
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
      batchFormat: env.BUS_BATCH_FORMAT,
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
    /** Bulk actions by query (shared/bulk): the default pace of the runner in the workers process. */
    bulk: { ratePerSecond: env.BULK_RATE_PER_SECOND },
    /** Fair execution between tenants and each tenant's share and bounds (shared/fairness). */
    fairness: {
      enabled: env.FAIRNESS,
      depth: env.FAIRNESS_DEPTH,
      holdMs: env.FAIRNESS_HOLD_HOURS * 3_600_000,
      dispatchIntervalMs: env.FAIRNESS_DISPATCH_INTERVAL_MS,
      reserve: env.FAIRNESS_RESERVE,
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
 * Settings that are each valid but cannot work together (docs/platform.md, "Running at scale"), each named with
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

export interface LoadConfigOptions {
  /** The command modules this process runs: the registry's (modules/registry.ts), from its `main.ts`. */
  modules: ConfigModules;
}

/**
 * Parses an environment (normally `process.env`) into a frozen {@link Config} for `options.modules`.
 * @throws {ConfigError} naming every bad variable.
 * @example const config = loadConfig(process.env, { modules: MODULES });
 */
export function loadConfig(source: Record<string, string | undefined>, options: LoadConfigOptions): Config {
  // Empty strings mean "unset" so `.env` files can list a variable without a value.
  assertValidModules(options.modules);
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = createEnvSchema(options.modules).safeParse(cleaned);
  const modules = createModuleEnvSchema(options.modules).safeParse(cleaned);
  const issues = [...(parsed.error?.issues ?? []), ...(modules.error?.issues ?? [])];
  if (!parsed.success || !modules.success) {
    throw new ConfigError(issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  const conflicts = unsupportedCombinations(parsed.data);
  if (conflicts.length > 0) throw new ConfigError(conflicts);
  return deepFreeze(buildConfig(parsed.data, modules.data, options.modules));
}

/** For `main.ts` files: parse or print every problem and exit non-zero. */
export function loadConfigOrExit(
  source: Record<string, string | undefined>,
  options: LoadConfigOptions,
): Config {
  try {
    return loadConfig(source, options);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
}
