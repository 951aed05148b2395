import type { JobsOptions } from 'bullmq';
import { createEventBus } from '../../../shared/bus/create-bus.ts';
import type { EventBus, EventHandler, Subscription } from '../../../shared/bus/event-bus.ts';
import type { Config } from '../../../shared/config/config.ts';
import type { Pool } from '../../../shared/db/pool.ts';
import { createPgDeadLetterSink } from '../../../shared/dead-letters/dead-letter.ts';
import type { EventEnvelope } from '../../../shared/domain/events.ts';
import { fairTarget, type FairQueue } from '../../../shared/fairness/fair-queue.ts';
import type { Tenant } from '../../../shared/fairness/tenants.ts';
import type { Logger } from '../../../shared/observability/logger.ts';
import {
  commandJobOptions,
  createCommandQueue,
  type CommandQueue,
} from '../../../shared/queue/command-queue.ts';
import { createWorkerRedis, type Redis } from '../../../shared/queue/redis.ts';
import type { CommandQueueSettings } from '../../../shared/modules/module.ts';
import { deliveryIdOf, matchesType, type WebhookJob } from '../domain.ts';

/** The event bus subscription group whose consumer turns events into deliveries. */
export const WEBHOOKS_GROUP = 'webhooks';

/** How often a worker prunes finished delivery records past their retention. */
const PRUNE_INTERVAL_MS = 15 * 60_000;

/** Tolerance between the database's clock (an endpoint's `created_at`) and a worker's (an event's `occurredAt`). */
const CLOCK_SKEW_MS = 5_000;

export interface FanOutDeps {
  pool: Pool;
  logger: Logger;
  /** Queue `webhooks`, where deliveries are added. */
  queue: CommandQueue;
  jobName: string;
  jobOptions: JobsOptions;
  /** Fair admission per endpoint (absent with FAIRNESS=false: FIFO). */
  fair?: { queue: FairQueue; holdMs: number } | undefined;
  /** Deliveries of one endpoint in progress at once (its fairness tenant's `max_in_flight`). */
  endpointMaxInFlight: number;
}

/**
 * The consumer of the event bus's `webhooks` group: for each event, the endpoints of its tenant
 * subscribed to its type get a delivery. Idempotent and crash-safe: the delivery rows are inserted
 * first (their id — the `webhook-id` — derived from endpoint and event, so a redelivered event finds
 * them), then every delivery of the event still `pending` is added as a job whose id is that same id
 * (a job still there is not added twice). An event redelivered after a crash between the two steps
 * adds what the first run did not.
 *
 * Which endpoints: the event's `payload.tenant` (every order and refund event names the tenant that
 * sent the command) must be the endpoint's tenant, or a sub-tenant of it (an endpoint of key `shop`
 * gets the events of `shop` and `shop/acme`; one of `shop/acme` only those of `shop/acme`). An event
 * that names no tenant goes nowhere; nor does one older than the endpoint (a bus replaying its history
 * to a new group never sends an endpoint what happened before it existed).
 */
export function createFanOut(deps: FanOutDeps): EventHandler {
  const policy = (endpointId: string): Tenant => ({
    id: endpointId,
    policy: { weight: 1, maxInFlight: deps.endpointMaxInFlight, backlogQuota: 0, subTenants: false },
  });
  return async (event: EventEnvelope) => {
    const tenant = event.payload.tenant;
    if (typeof tenant !== 'string' || tenant === '') return;
    const { rows: endpoints } = await deps.pool.query<{ endpoint_id: string; event_types: string[] }>(
      `SELECT endpoint_id, event_types FROM webhook_endpoints
        WHERE enabled AND (tenant = $1 OR tenant = split_part($1, '/', 1))
          AND created_at <= $2::timestamptz + make_interval(secs => $3)`,
      [tenant, event.occurredAt, CLOCK_SKEW_MS / 1_000],
    );
    const targets = endpoints.filter((e) => matchesType(e.event_types, event.type)).map((e) => e.endpoint_id);
    if (targets.length === 0) return;
    const ids = targets.map((endpointId) => deliveryIdOf(endpointId, event.eventId));
    const { rows: pending } = await deps.pool.query<{ delivery_id: string; endpoint_id: string }>(
      `WITH d AS (SELECT * FROM unnest($1::text[], $2::uuid[]) AS d(delivery_id, endpoint_id)),
            inserted AS (
              INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, event_type, status)
              SELECT d.delivery_id, d.endpoint_id, $3, $4, 'pending' FROM d
              ON CONFLICT DO NOTHING RETURNING delivery_id, endpoint_id)
       SELECT delivery_id, endpoint_id FROM inserted
       UNION
       SELECT w.delivery_id, w.endpoint_id FROM webhook_deliveries w JOIN d USING (delivery_id)
        WHERE w.status = 'pending'`,
      [ids, targets, event.eventId, event.type],
    );
    if (pending.length === 0) return;
    const jobs = pending.map((p) => ({
      id: p.delivery_id,
      tenant: policy(p.endpoint_id),
      data: {
        deliveryId: p.delivery_id,
        endpointId: p.endpoint_id,
        tenant: p.endpoint_id,
        eventId: event.eventId,
        type: event.type,
        occurredAt: event.occurredAt,
        correlationId: event.correlationId,
        data: event.payload,
      } satisfies WebhookJob,
    }));
    await addDeliveries(deps, jobs);
  };
}

/** Admits (per endpoint) and adds the deliveries; an id already in the queue is not added again. */
async function addDeliveries(
  deps: FanOutDeps,
  jobs: readonly { id: string; tenant: Tenant; data: WebhookJob }[],
): Promise<void> {
  const client = await deps.queue.client;
  const admissions = deps.fair
    ? await deps.fair.queue.admit(
        client,
        jobs.map((j) => ({ id: j.id, tenant: j.tenant })),
      )
    : jobs.map(() => 'direct' as const);
  const add = jobs.flatMap((job, i) => {
    const admission = admissions[i] ?? 'direct';
    if (admission === 'exists') return [];
    const opts: JobsOptions = { ...deps.jobOptions, jobId: job.id };
    if (admission === 'held' && deps.fair) opts.delay = deps.fair.holdMs;
    return [{ name: deps.jobName, data: job.data, opts }];
  });
  if (add.length > 0) await deps.queue.addBulk(add);
}

/** The running fan-out of a worker process. */
export interface FanOutService {
  close(): Promise<void>;
}

/**
 * Starts the fan-out in a process running the webhooks worker: its own bus connection, subscribed as
 * group {@link WEBHOOKS_GROUP}. Started in the background (the command worker does not wait for a
 * broker's consumer group to settle); a start that fails is retried every few seconds until `close`.
 */
export function startFanOut(
  deps: {
    pool: Pool;
    logger: Logger;
    config: Config;
    settings: CommandQueueSettings;
    endpointMaxInFlight: number;
    deliveryRetentionDays: number;
  },
  jobName: string,
): FanOutService {
  const { config, logger, pool } = deps;
  const log = logger.child({ component: 'webhooks-fan-out' });
  const redis: Redis = createWorkerRedis(
    { url: config.redis.url, commandTimeoutMs: 0, clusterNodes: config.redis.clusterNodes },
    'conveyor-webhooks-fan-out',
  );
  const queue = createCommandQueue(redis, config.redis.queuePrefix, 'webhooks');
  queue.on('error', (err) => log.debug({ err }, 'webhooks queue connection error'));
  const handler = createFanOut({
    pool,
    logger: log,
    queue,
    jobName,
    jobOptions: commandJobOptions(deps.settings),
    fair: fairTarget(config.fairness, 'webhooks', queue.toKey('')),
    endpointMaxInFlight: deps.endpointMaxInFlight,
  });
  let closed = false;
  let bus: EventBus | undefined;
  let sub: Subscription | undefined;
  let retry: NodeJS.Timeout | undefined;
  const start = async (): Promise<void> => {
    try {
      const b = await createEventBus(
        config.bus.kind,
        { logger: log, deadLetters: createPgDeadLetterSink(pool) },
        config,
      );
      bus = b;
      await b.start();
      if (closed) return;
      sub = await b.subscribe(WEBHOOKS_GROUP, handler);
      log.info({ group: WEBHOOKS_GROUP, bus: config.bus.kind }, 'webhooks fan-out subscribed');
    } catch (err) {
      log.error({ err }, 'webhooks fan-out could not subscribe; retrying in 5 s');
      await bus?.close().catch(() => undefined);
      bus = undefined;
      if (!closed) retry = setTimeout(() => void (starting = start()), 5_000);
    }
  };
  let starting = start();
  // Finished delivery records older than the retention go, a bounded batch at a time; every replica
  // may run it (a DELETE of rows already gone deletes nothing).
  const prune = setInterval(() => {
    pool
      .query(
        `DELETE FROM webhook_deliveries WHERE delivery_id IN (
           SELECT delivery_id FROM webhook_deliveries
            WHERE status <> 'pending' AND updated_at < now() - make_interval(days => $1) LIMIT 10000)`,
        [deps.deliveryRetentionDays],
      )
      .catch((err: unknown) => log.warn({ err }, 'could not prune old webhook deliveries'));
  }, PRUNE_INTERVAL_MS);
  prune.unref();
  return {
    async close() {
      closed = true;
      clearInterval(prune);
      clearTimeout(retry);
      await starting;
      await sub?.close();
      await bus?.close();
      await queue.close();
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
