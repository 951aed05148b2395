import type { Config } from '../../shared/config/config.ts';
import { createQueueStatsReader, type QueueStatsReader } from '../../shared/observability/queue-stats.ts';
import {
  createTenantThroughputMeter,
  type TenantThroughput,
} from '../../shared/observability/tenant-throughput.ts';
import type { Redis } from '../../shared/queue/redis.ts';
import { withDeadline } from '../../shared/runtime/deadline.ts';
import { commandModules, type Sourced } from './overview.ts';

/** The most tenants the Tenants page names per queue (the largest backlogs); the rest are summed. */
export const TENANTS_PAGE_TOP = 50;

/** One tenant of a command queue, as the Tenants page shows it. */
export interface TenantRow {
  tenant: string;
  /** Its commands waiting their turn. */
  waiting: number;
  /** How long its oldest waiting command has waited (s); null when none waits. */
  oldestWaitSeconds: number | null;
  /** Handed to the workers and not yet decided; tracked only with a limit (`maxInFlight` > 0). */
  inFlight: number;
  /** 0: no limit. */
  maxInFlight: number;
  weight: number;
  /** Commands started per second since the previous read; null until there is one. */
  throughput: number | null;
  /** At its in-flight limit with commands waiting: its turn is skipped until a slot frees. */
  blocked: boolean;
}

/** A command queue's tenants. */
export interface QueueTenantsView {
  module: string;
  queue: string;
  /** Every command waiting its turn (named tenants and the rest). */
  held: number;
  /** The queue's whole backlog, as `/v1/scaling` reports it (wait list, prioritized, held). */
  backlog: number;
  tenants: TenantRow[];
  /** The tenants not named, summed (their throughput: every tenant not named by both reads). */
  others: { tenants: number; waiting: number; oldestWaitSeconds: number | null; throughput: number | null };
  /** Commands started per second, every tenant; null until a second read. */
  throughput: number | null;
  /** Seconds the throughput was measured over; null until a second read. */
  measuredSeconds: number | null;
}

export interface TenantsOverview {
  at: Date;
  /** `FAIRNESS`: off, commands run FIFO and nothing is held (a queue may still hold some from before). */
  enabled: boolean;
  top: number;
  queues: { module: string; queue: string; view: Sourced<QueueTenantsView> }[];
}

/** Reads the Tenants page; keeps the queue handles and the last counters between reads. */
export interface TenantsSource {
  read(): Promise<TenantsOverview>;
  /** Releases the queue handles (the shared Redis stays open). Idempotent. */
  close(): Promise<void>;
}

export interface TenantsDeps {
  config: Config;
  /** Shared connection. */
  redis: Redis;
  /** Bound on each queue's read. @defaultValue 2000 */
  timeoutMs?: number;
  /** Tenants named per queue. @defaultValue {@link TENANTS_PAGE_TOP} */
  top?: number;
  /** Clock; tests pass their own. @defaultValue Date.now */
  now?: () => number;
}

/**
 * Each command queue's tenants from its fair queue (`FairQueue.backlog`, the same read as the
 * `conveyor_tenant_*` metrics): who waits, for how long, in flight against its limit, its weight, and
 * its throughput between this replica's reads (the page reloads itself, so from the second view on).
 * @example const tenants = await createTenantsSource({ config, redis }).read();
 */
export function createTenantsSource(deps: TenantsDeps): TenantsSource {
  const timeoutMs = deps.timeoutMs ?? 2_000;
  const top = deps.top ?? TENANTS_PAGE_TOP;
  const modules = commandModules();
  const reader: QueueStatsReader = createQueueStatsReader({
    connection: deps.redis,
    prefix: deps.config.redis.queuePrefix,
    modules,
    queues: modules.map((m) => m.queue),
    fairQueues: modules.map((m) => m.queue),
    eventGroups: false,
    ...(deps.now ? { now: deps.now } : {}),
  });
  const meter = createTenantThroughputMeter();

  async function readQueue(queue: string, module: string): Promise<QueueTenantsView> {
    const { stats, tenants, at } = await reader.readTenants(queue, top);
    const backlog = tenants ?? {
      tenants: [],
      others: { tenants: 0, waiting: 0, oldestAt: null, started: 0 },
      startedTotal: 0,
    };
    const rate: TenantThroughput | null = meter.observe(queue, backlog, at);
    const age = (oldestAt: number | null) =>
      oldestAt === null ? null : Math.max(0, (at - oldestAt) / 1_000);
    return {
      module,
      queue,
      held: stats.held,
      backlog: stats.backlog,
      tenants: backlog.tenants.map((t) => ({
        tenant: t.tenant,
        waiting: t.waiting,
        oldestWaitSeconds: age(t.oldestAt),
        inFlight: t.inFlight,
        maxInFlight: t.maxInFlight,
        weight: t.weight,
        throughput: rate?.tenants.get(t.tenant) ?? null,
        blocked: t.blocked,
      })),
      others: {
        tenants: backlog.others.tenants,
        waiting: backlog.others.waiting,
        oldestWaitSeconds: age(backlog.others.oldestAt),
        throughput: rate ? rate.others : null,
      },
      throughput: rate ? rate.total : null,
      measuredSeconds: rate ? rate.seconds : null,
    };
  }

  let closing: Promise<void> | undefined;
  return {
    async read() {
      const queues = await Promise.all(
        modules.map(async (m) => {
          let view: Sourced<QueueTenantsView>;
          try {
            view = { ok: true, value: await withDeadline(readQueue(m.queue, m.name), timeoutMs) };
          } catch (err) {
            view = { ok: false, error: err instanceof Error ? err.message : String(err) };
          }
          return { module: m.name, queue: m.queue, view };
        }),
      );
      return { at: new Date(), enabled: deps.config.fairness.enabled, top, queues };
    },
    close: () => (closing ??= reader.close()),
  };
}
