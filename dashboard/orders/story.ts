import { z } from 'zod';
import type { AuditEntry } from '../../shared/audit/audit-log.ts';
import type { Pool } from '../../shared/db/pool.ts';
import type { DeadLetterRecord } from '../../shared/dead-letters/dead-letter.ts';
import { OrdersQueues } from '../../modules/orders/queue.ts';
import { MODULES } from '../../modules/registry.ts';
import { allQueueNames, QueueNames } from '../../shared/queue/names.ts';
import type { RedriveOutcome, RedriveOutcomes } from '../dead-letters/outcome.ts';
import type { JobLookup, JobSnapshot } from '../jobs.ts';
import {
  findActions,
  findCustomerOrders,
  findDeadLetters,
  findEvents,
  findInbox,
  findOrder,
  findOrderView,
  type CustomerOrder,
  type InboxEntry,
  type OrderRecord,
  type ReadModelRecord,
  type StoredEvent,
} from './story.sql.ts';

/** One moment of an order's life, as the timeline shows it. */
export interface Moment {
  at: Date;
  /** What kind of moment (also the CSS class of its marker). */
  kind: 'accepted' | 'attempt' | 'decided' | 'event' | 'published' | 'projected' | 'dead_letter' | 'operator';
  tone: 'ok' | 'bad' | 'warn' | 'info';
  title: string;
  detail?: string;
  /** A console page about it (a dead letter, the audit log). */
  href?: string;
}

/** Everything the console knows about one order. */
export interface OrderStory {
  orderId: string;
  /** Nothing anywhere knows this id. */
  unknown: boolean;
  correlationId: string | null;
  acceptedAt: Date | null;
  /** The API key that posted it (write model, else the job); null when a foreign producer enqueued it. */
  acceptedBy: string | null;
  /**
   * Who it was for, for fairness: the key's id, or `<key id>/<sub-tenant>` when the key named one
   * (write model, else the job); null when its job named none (a foreign producer's, or from before).
   */
  tenant: string | null;
  customerId: string | null;
  /** Latest decision in the write model. */
  order: OrderRecord | null;
  /** The read model's row. */
  view: ReadModelRecord | null;
  /** The command's job, while Redis still holds it. */
  job: JobSnapshot | null;
  events: (StoredEvent & { projected: InboxEntry[] })[];
  deadLetters: (DeadLetterRecord & { outcome: RedriveOutcome })[];
  actions: AuditEntry[];
  /** Oldest first. */
  timeline: Moment[];
}

export interface OrderStories {
  /** The story of one order (a UUID). */
  get(orderId: string): Promise<OrderStory>;
  /** A customer's most recent orders (read model). */
  recent(customerId: string, limit: number): Promise<CustomerOrder[]>;
}

export interface OrderStoriesDeps {
  pool: Pool;
  jobs: JobLookup;
  outcomes: RedriveOutcomes;
}

/** The command job's data, loosely: enough to tell when and under which correlation id it came in. */
const JobData = z.looseObject({
  acceptedAt: z.iso.datetime().optional(),
  acceptedBy: z.string().optional(),
  tenant: z.string().optional(),
  correlationId: z.string().optional(),
  order: z.looseObject({ customerId: z.string().optional() }).optional(),
});

/** `order.placed` → "Order completed (order.placed)"; works for any module's `<aggregate>.<outcome>`. */
function eventTitle(type: string): string {
  const [aggregate = type, what = ''] = type.split('.');
  const words: Record<string, string> = {
    placed: 'completed',
    completed: 'completed',
    rejected: 'rejected',
    dead_lettered: 'dead-lettered',
    cancelled: 'cancelled',
  };
  return `${aggregate.charAt(0).toUpperCase()}${aggregate.slice(1)} ${words[what] ?? what.replaceAll('_', ' ')} (${type})`;
}

function eventTone(type: string): Moment['tone'] {
  if (type.endsWith('.dead_lettered')) return 'bad';
  if (type.endsWith('.rejected') || type.endsWith('.cancelled')) return 'warn';
  return 'ok';
}

const ACTION_TITLES: Record<string, string> = {
  'dead_letter.redrive': 'Redriven by an operator',
  'dead_letter.redrive_failed': 'Redrive could not be sent',
  'dead_letter.discard': 'Discarded by an operator',
};

/** "key shop", "key shop, for tenant shop/acme", "tenant shop/acme" or nothing: who posted it, for whom. */
function acceptedFor(s: Pick<OrderStory, 'acceptedBy' | 'tenant'>): string | null {
  const key = s.acceptedBy ? `key ${s.acceptedBy}` : null;
  const tenant = s.tenant && s.tenant !== s.acceptedBy ? `tenant ${s.tenant}` : null;
  return key && tenant ? `${key}, for ${tenant}` : (key ?? tenant);
}

function timeline(s: Omit<OrderStory, 'timeline'>, base: string): Moment[] {
  const out: Moment[] = [];
  const who = acceptedFor(s);
  if (s.acceptedAt)
    out.push({
      at: s.acceptedAt,
      kind: 'accepted',
      tone: 'info',
      title: who ? `Accepted by the API (${who}) and queued` : 'Accepted and queued',
      detail: s.correlationId ? `correlation id ${s.correlationId}` : undefined,
    });
  if (s.job?.processedAt)
    out.push({
      at: s.job.processedAt,
      kind: 'attempt',
      tone: s.job.failedReason ? 'warn' : 'info',
      title:
        s.job.state === 'active'
          ? `Job being processed by an order worker (attempt ${s.job.attempt} of ${s.job.attempts})`
          : `Job last picked up by an order worker (${s.job.attemptsMade} of ${s.job.attempts} attempts used${
              s.job.snoozes > 0 ? `, snoozed ${s.job.snoozes}×` : ''
            })`,
      detail: s.job.failedReason ? `last error: ${s.job.failedReason}` : undefined,
    });
  for (const e of s.events) {
    out.push({
      at: e.createdAt,
      kind: 'event',
      tone: eventTone(e.type),
      title: eventTitle(e.type),
      detail: [e.reason && `reason: ${e.reason}`, e.error && `error: ${e.error}`, `event ${e.eventId}`]
        .filter(Boolean)
        .join(' · '),
    });
    if (e.publishedAt)
      out.push({
        at: e.publishedAt,
        kind: 'published',
        tone: 'info',
        title: `${e.type} published to the event bus`,
      });
    for (const p of e.projected)
      out.push({
        at: p.processedAt,
        kind: 'projected',
        tone: 'ok',
        title: `${e.type} projected by ${p.consumer}: read models updated`,
        detail: 'order_view, customer_stats and daily_stats in one transaction',
      });
  }
  for (const d of s.deadLetters) {
    const href = `${base}/dead-letters/${encodeURIComponent(d.id)}`;
    const where = `${d.transport} ${d.origin}`;
    // A redrive before the record's latest failure means that failure came after it: the message
    // failed again and was dead-lettered again (the record keeps only the latest error).
    const redriveBefore = s.actions.some(
      (a) => a.target === d.id && a.action === 'dead_letter.redrive' && a.at < d.failedAt,
    );
    if (!redriveBefore) {
      out.push({
        at: d.failedAt,
        kind: 'dead_letter',
        tone: 'bad',
        title: `Dead-lettered from ${where} after ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`,
        detail: d.error,
        href,
      });
      continue;
    }
    const first = s.events.find((e) => e.type.endsWith('.dead_lettered') && e.deadLetterId === d.id);
    out.push({
      at: first?.createdAt ?? d.firstFailedAt ?? d.failedAt,
      kind: 'dead_letter',
      tone: 'bad',
      title: `Dead-lettered from ${where}`,
      detail: first?.error ?? undefined,
      href,
    });
    out.push({
      at: d.failedAt,
      kind: 'dead_letter',
      tone: 'bad',
      title: `Failed again after the redrive: dead-lettered again after ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`,
      detail: d.error,
      href,
    });
  }
  for (const a of s.actions) {
    out.push({
      at: a.at,
      kind: 'operator',
      tone: a.action.endsWith('failed') ? 'bad' : 'info',
      title: `${ACTION_TITLES[a.action] ?? a.action} — ${a.actor}${a.role ? ` (${a.role})` : ''} via ${a.source}`,
      detail: typeof a.detail.reason === 'string' ? `reason: ${a.detail.reason}` : undefined,
      href: `${base}/audit?actor=${encodeURIComponent(a.actor)}`,
    });
  }
  if (s.order)
    out.push({
      at: s.order.decidedAt,
      kind: 'decided',
      tone: s.order.status === 'completed' ? 'ok' : s.order.status === 'rejected' ? 'warn' : 'bad',
      title: `Write model: ${s.order.status} after ${s.order.attempts} attempt${s.order.attempts === 1 ? '' : 's'}`,
      detail: s.order.reason ?? undefined,
    });
  // Stable by time, then by the order the facts happen in within one transaction.
  const rank: Record<Moment['kind'], number> = {
    accepted: 0,
    attempt: 1,
    decided: 2,
    dead_letter: 3,
    event: 4,
    published: 5,
    projected: 6,
    operator: 7,
  };
  return out.sort((a, b) => a.at.getTime() - b.at.getTime() || rank[a.kind] - rank[b.kind]);
}

/**
 * An order's story from PostgreSQL — write model, outbox, inbox, read model, dead letters, audit log —
 * plus its command job by id while Redis keeps it. Nothing scans Redis.
 * @example const story = await createOrderStories({ pool, jobs, outcomes }).get(orderId);
 */
export function createOrderStories(deps: OrderStoriesDeps, basePath: string): OrderStories {
  const { pool } = deps;
  return {
    async get(orderId) {
      const [order, view, events, job] = await Promise.all([
        findOrder(pool, orderId),
        findOrderView(pool, orderId),
        findEvents(pool, orderId),
        deps.jobs.get(OrdersQueues.commands, orderId),
      ]);
      const eventIds = events.map((e) => e.eventId);
      // A lone event's BullMQ job is keyed by its id, and so is its dead letter.
      const candidates = eventIds.map((id) => `bullmq-${QueueNames.events}-${id}`);
      const [inbox, deadLetters] = await Promise.all([
        findInbox(pool, eventIds),
        findDeadLetters(pool, orderId, candidates),
      ]);
      const targets = [
        ...deadLetters.map((d) => d.id),
        ...allQueueNames(MODULES).map((q) => `${q}/${orderId}`),
      ];
      const [actions, outcomes] = await Promise.all([
        findActions(pool, targets),
        deps.outcomes.of(deadLetters),
      ]);
      const data = job ? JobData.safeParse(job.data) : undefined;
      const jobData = data?.success ? data.data : undefined;
      const acceptedAt = order?.acceptedAt ?? (jobData?.acceptedAt ? new Date(jobData.acceptedAt) : null);
      const partial: Omit<OrderStory, 'timeline'> = {
        orderId,
        unknown: !order && !view && !job && events.length === 0 && deadLetters.length === 0,
        correlationId: order?.correlationId ?? jobData?.correlationId ?? events[0]?.correlationId ?? null,
        acceptedAt,
        acceptedBy: order?.acceptedBy ?? jobData?.acceptedBy ?? null,
        tenant: order?.tenant ?? jobData?.tenant ?? null,
        customerId: order?.customerId ?? jobData?.order?.customerId ?? null,
        order,
        view,
        job,
        events: events.map((e) => ({ ...e, projected: inbox.filter((i) => i.eventId === e.eventId) })),
        deadLetters: deadLetters.map((d) => ({ ...d, outcome: outcomes.get(d.id) ?? { kind: 'never' } })),
        actions,
      };
      return { ...partial, timeline: timeline(partial, basePath) };
    },
    recent: (customerId, limit) => findCustomerOrders(pool, customerId, limit),
  };
}
