import { z } from 'zod';
import type { Redis } from '../queue/redis.ts';

/*
 * The results hub's wire (issue #22; the hub is api/results/hub.ts): what command workers and the projector PUBLISH, after what they
 * tell committed, and what every API process's one subscriber reads. A message is a batch of steps —
 * one PUBLISH per micro-batch (what finished in one event-loop turn), never one per job. A message
 * only says "look again": the API re-reads the command's durable state (queue, write model, read
 * model) before it answers, so a lost or late message costs latency, never a wrong answer.
 */

/** The Redis pub/sub channel of a module's command steps: `<prefix>:<module>:steps`. */
export function outcomeChannel(prefix: string, module: string): string {
  return `${prefix}:${module}:steps`;
}

/** One lifecycle step of one command (its id is its job id, the id its `Location` names). */
export const OutcomeStepSchema = z.discriminatedUnion('step', [
  z.object({ id: z.string().min(1), step: z.literal('started'), attempt: z.number().int().min(1) }),
  z.object({
    id: z.string().min(1),
    step: z.literal('retried'),
    attempt: z.number().int().min(1),
    error: z.string(),
  }),
  z.object({ id: z.string().min(1), step: z.literal('decided'), status: z.string() }),
  z.object({ id: z.string().min(1), step: z.literal('projected') }),
]);
export type OutcomeStep = z.infer<typeof OutcomeStepSchema>;

export const OutcomeMessageSchema = z.object({ steps: z.array(OutcomeStepSchema) });
export type OutcomeMessage = z.infer<typeof OutcomeMessageSchema>;

/** Longest error text a `retried` step carries (the job's progress keeps 1,000 characters). */
const MAX_ERROR_CHARS = 1_000;

/** Publishes steps, coalesced per module and event-loop turn into one message. */
export interface OutcomePublisher {
  /** Queues a step; sent with the others of this turn. Never throws: results are a latency hint. */
  publish(module: string, step: OutcomeStep): void;
  /** Sends what is queued now and waits for it (shutdown). */
  flush(): Promise<void>;
}

/**
 * A publisher on `redis` (any connection that is not in subscriber mode; PUBLISH on a cluster is
 * broadcast to every node). Steps queued in one event-loop turn — a micro-batch's jobs all settle in
 * the same turn — leave as one PUBLISH per module. A failed PUBLISH is reported to `onError` and
 * dropped: waiters re-read on their own deadline and on the hub's resubscribe, and SSE streams resume
 * from durable state.
 */
export function createOutcomePublisher(
  redis: Redis,
  prefix: string,
  onError: (err: Error) => void = () => undefined,
): OutcomePublisher {
  let queued = new Map<string, OutcomeStep[]>();
  let scheduled: Promise<void> | undefined;
  const inFlight = new Set<Promise<unknown>>();

  function send(): Promise<void> {
    const batches = queued;
    queued = new Map();
    scheduled = undefined;
    const sends = [...batches].map(([module, steps]) => {
      const message: OutcomeMessage = { steps };
      const p = redis
        .publish(outcomeChannel(prefix, module), JSON.stringify(message))
        .catch((err: unknown) => onError(err instanceof Error ? err : new Error(String(err))));
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      return p;
    });
    return Promise.all(sends).then(() => undefined);
  }

  return {
    publish(module, step) {
      const s = step.step === 'retried' ? { ...step, error: step.error.slice(0, MAX_ERROR_CHARS) } : step;
      const steps = queued.get(module);
      if (steps) steps.push(s);
      else queued.set(module, [s]);
      scheduled ??= new Promise<void>((resolve) => setImmediate(resolve)).then(send);
    },
    async flush() {
      if (scheduled) await scheduled;
      await Promise.all([...inFlight]);
    },
  };
}
