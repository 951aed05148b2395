import type { Job, Worker } from 'bullmq';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { createCollectors, type Collectors } from './collectors.ts';
import { registerEventLoopDelay } from './event-loop.ts';

export type {
  Collectors,
  OutboxBacklog,
  PoolCounts,
  ReplicaLagSample,
  ReplicaReadCounters,
  WatchQueuesOptions,
} from './collectors.ts';
export { OTHER_TENANTS } from './collectors.ts';

/** Circuit-breaker states as the `conveyor_circuit_breaker_state` gauge encodes them: 0, 1, 2. */
export type CircuitState = 'closed' | 'half-open' | 'open';
const CIRCUIT_VALUES: Record<CircuitState, number> = { closed: 0, 'half-open': 1, open: 2 };

export interface MetricsOptions {
  /** Bound on each scrape-time read (Redis, Postgres, Kafka, RabbitMQ). @defaultValue 2000 */
  collectTimeoutMs?: number;
  /** prom-client's process and Node.js metrics. @defaultValue true */
  defaultMetrics?: boolean;
}

/** One HTTP request, labelled by the matched route pattern (never the raw path: bounded cardinality). */
export interface HttpSample {
  method: string;
  route: string;
  status: number;
  durationSeconds: number;
}

/**
 * The metrics of one process, on a registry of its own. Instruments are recorded as things happen
 * (HTTP, jobs, breakers); depths, lags and pool stats are read on scrape from the sources registered
 * with the `watch*` methods of {@link Collectors}, each read bounded by `collectTimeoutMs`.
 * Metrics owns what it watches: `close()` releases the readers it created.
 */
export interface Metrics extends Collectors {
  readonly registry: Registry;
  /** Content-Type of {@link Metrics.render}'s output. */
  readonly contentType: string;
  /** The Prometheus text exposition of every metric. */
  render(): Promise<string>;
  observeHttp(sample: HttpSample): void;
  /** Counts and times a BullMQ worker's jobs; returns a function that detaches the listeners. */
  instrumentWorker(worker: Worker, queue: string): () => void;
  /**
   * Counts a verdict the delivery core carried out (`ack`, `retry`, `snooze`, `dead-letter`, `parked`,
   * `cancelled`) for a command queue or an event consumer: pass it as the core's `onVerdict`.
   */
  countVerdict(verdict: string, origin: string): void;
  /** For the circuit breaker's `open` / `halfOpen` / `close` events. */
  setCircuitBreakerState(breaker: string, state: CircuitState): void;
  /** Idempotent: detaches workers and closes every reader. */
  close(): Promise<void>;
}

const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const JOB_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const LATENCY_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
// prom-client gauges that sum their labelled twins and end in `_total`, which promtool rightly flags
// ("non-counter metrics should not have _total suffix"); the labelled versions carry the same data.
const MISNAMED_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/**
 * Creates a process's metrics on a fresh registry (never prom-client's global one, so two instances in
 * one process — tests, the all-in-one `main.ts` — never collide).
 * @example
 * const metrics = createMetrics();
 * metrics.watchQueues({
 *   connection: redis,
 *   prefix: config.redis.queuePrefix,
 *   modules: MODULES,
 *   tenantsTop: config.fairness.metricsTop,
 * });
 * app.get('/metrics', async (c) => c.body(await metrics.render(), 200, { 'content-type': metrics.contentType }));
 */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const timeoutMs = options.collectTimeoutMs ?? 2_000;
  const registry = new Registry();
  let stopEventLoopDelay: () => void = () => undefined;
  if (options.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
    stopEventLoopDelay = registerEventLoopDelay(registry);
  }
  const registers = [registry];

  const collectors = createCollectors(registry, timeoutMs);

  const http = new Histogram({
    name: 'conveyor_http_request_duration_seconds',
    help: 'HTTP request duration by method, matched route pattern and status code',
    labelNames: ['method', 'route', 'status'],
    buckets: HTTP_BUCKETS,
    registers,
  });
  const jobDuration = new Histogram({
    name: 'conveyor_job_duration_seconds',
    help: 'Processing time of one job attempt, by queue and outcome (completed, failed)',
    labelNames: ['queue', 'outcome'],
    buckets: JOB_BUCKETS,
    registers,
  });
  const jobLatency = new Histogram({
    name: 'conveyor_job_latency_seconds',
    help: 'Time from enqueue to completion of a job, retries included: what a user waits for',
    labelNames: ['queue'],
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const completed = new Counter({
    name: 'conveyor_jobs_completed_total',
    help: 'Jobs completed, by queue',
    labelNames: ['queue'],
    registers,
  });
  const failed = new Counter({
    name: 'conveyor_jobs_failed_total',
    help: 'Jobs failed for good (attempts exhausted or unrecoverable), by queue',
    labelNames: ['queue'],
    registers,
  });
  const retried = new Counter({
    name: 'conveyor_jobs_retried_total',
    help: 'Job attempts that failed and will be retried, by queue',
    labelNames: ['queue'],
    registers,
  });
  const verdicts = new Counter({
    name: 'conveyor_delivery_verdicts_total',
    help: 'What the delivery core did with each delivery: ack, retry, snooze (no attempt consumed), dead-letter, parked (dead letter not recordable yet), cancelled',
    labelNames: ['origin', 'verdict'],
    registers,
  });
  const verdictChildren = new Map<string, { inc(): void }>();
  const breaker = new Gauge({
    name: 'conveyor_circuit_breaker_state',
    help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open',
    labelNames: ['breaker'],
    registers,
  });

  const detachers = new Set<() => void>();
  let closing: Promise<void> | undefined;

  return {
    ...collectors,
    registry,
    contentType: registry.contentType,
    render: () => registry.metrics(),
    observeHttp(s) {
      http.observe({ method: s.method, route: s.route, status: String(s.status) }, s.durationSeconds);
    },
    instrumentWorker(worker, queue) {
      const onCompleted = (job: Job) => {
        completed.inc({ queue });
        const end = job.finishedOn ?? Date.now();
        if (job.processedOn) {
          jobDuration.observe({ queue, outcome: 'completed' }, Math.max(0, end - job.processedOn) / 1_000);
        }
        jobLatency.observe({ queue }, Math.max(0, end - job.timestamp) / 1_000);
      };
      const onFailed = (job: Job | undefined, err: Error) => {
        if (!job) return;
        // BullMQ sets finishedOn only when a failure is final; attemptsMade already counts this attempt.
        const final =
          job.finishedOn !== undefined ||
          err.name === 'UnrecoverableError' ||
          job.attemptsMade >= (job.opts.attempts ?? 1);
        (final ? failed : retried).inc({ queue });
        if (job.processedOn) {
          const seconds = Math.max(0, (job.finishedOn ?? Date.now()) - job.processedOn) / 1_000;
          jobDuration.observe({ queue, outcome: 'failed' }, seconds);
        }
      };
      worker.on('completed', onCompleted);
      worker.on('failed', onFailed);
      const detach = () => {
        worker.off('completed', onCompleted);
        worker.off('failed', onFailed);
        detachers.delete(detach);
      };
      detachers.add(detach);
      return detach;
    },
    countVerdict(verdict, origin) {
      // Once per delivery: the labelled child is looked up once, not its labels hashed every time.
      const key = `${origin}\u0000${verdict}`;
      let child = verdictChildren.get(key);
      if (!child) verdictChildren.set(key, (child = verdicts.labels({ origin, verdict })));
      child.inc();
    },
    setCircuitBreakerState(name, state) {
      breaker.set({ breaker: name }, CIRCUIT_VALUES[state]);
    },
    close: () =>
      (closing ??= (async () => {
        for (const detach of [...detachers]) detach();
        stopEventLoopDelay();
        await collectors.close();
      })()),
  };
}
