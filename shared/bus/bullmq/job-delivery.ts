import type { Job } from 'bullmq';
import type { DeliveryState } from '../../delivery/policy.ts';
import { deliveryStateOf } from '../../queue/job-delivery.ts';

/*
 * What is particular to event jobs. How any BullMQ job carries its delivery state, is handed back and
 * is dead-lettered once BullMQ failed it is shared with the command worker: shared/queue/job-delivery.ts.
 */

/** What travels in a BullMQ event job: the same bytes and headers as on Kafka or RabbitMQ. */
export interface BullmqEventJob {
  body: string;
  headers: Record<string, string>;
  /**
   * Where a job split out of a batch job starts (its first delivery here is this attempt, after
   * this many snoozes). Later hand-backs keep the state in the job's progress (`JobProgress`).
   * Absent: attempt 1, no snooze.
   */
  attempt?: number;
  snoozes?: number;
  /** Written by versions before the delivery core: deliveries inside a batch job before the split-out. */
  priorAttempts?: number;
}

/** Several events in one BullMQ job: the relay publishes a batch for the Redis cost of one job. */
export interface BullmqEventBatchJob {
  events: BullmqEventJob[];
}

/** Job name of a batch job; every other name is one event (its type). */
export const EVENT_BATCH_JOB = 'event-batch';

const count = (value: unknown, min: number): number | undefined =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= min ? value : undefined;

/**
 * Where an event job starts before any hand-back: what a split-out was created with, else — a
 * split-out of a version before the delivery core — after its deliveries inside the batch job (they
 * counted as attempts), else the first delivery.
 */
function startOf(data: unknown): Required<DeliveryState> {
  const job = (typeof data === 'object' && data !== null ? data : {}) as Partial<BullmqEventJob>;
  const attempt = count(job.attempt, 1);
  if (attempt !== undefined) return { attempt, snoozes: count(job.snoozes, 0) ?? 0 };
  return { attempt: 1 + (count(job.priorAttempts, 0) ?? 0), snoozes: 0 };
}

/** Which delivery of an event job this is ({@link deliveryStateOf} from where the job started). */
export function eventJobState(job: Job): Required<DeliveryState> {
  return deliveryStateOf(job, startOf(job.data));
}

/** The bytes and headers a job carries: one event's, or (not one we wrote) its data as JSON. */
export function jobMessage(data: unknown): { payload: Buffer; headers: Record<string, string> } {
  const item = (typeof data === 'object' && data !== null ? data : {}) as Partial<BullmqEventJob>;
  const headers: Record<string, string> = {};
  if (typeof item.headers === 'object' && item.headers !== null) {
    for (const [name, value] of Object.entries(item.headers as Record<string, unknown>)) {
      if (typeof value === 'string') headers[name] = value;
    }
  }
  const payload = Buffer.from(typeof item.body === 'string' ? item.body : JSON.stringify(data ?? null));
  return { payload, headers };
}
