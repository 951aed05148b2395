import { createHash } from 'node:crypto';
import { z } from 'zod';
import { freeText } from '../../shared/domain/text.ts';
import { DomainError } from '../../shared/errors/domain.ts';

/**
 * Event types a producer may subscribe an endpoint to, besides every type the registered modules
 * declare: `batch.completed` (written to the outbox by the batches core, shared/batches).
 */
export const EXTRA_EVENT_TYPES: readonly string[] = ['batch.completed'];

/** An event type or a pattern of them: `order.placed`, `refund.*`, or `*` (everything). */
export const EventTypePattern = z
  .string()
  .regex(/^(\*|[a-z][a-z0-9_]*\.(\*|[a-z][a-z0-9_]*))$/, 'an event type such as order.placed, refund.* or *');

/** Whether `type` matches one of `patterns`. */
export function matchesType(patterns: readonly string[], type: string): boolean {
  return patterns.some(
    (p) => p === '*' || p === type || (p.endsWith('.*') && type.startsWith(p.slice(0, -1))),
  );
}

/** What a producer posts to `POST /v1/webhooks`. */
export const RegisterWebhookSchema = z.strictObject({
  url: z.string().max(2_048),
  eventTypes: z.array(EventTypePattern).min(1).max(50),
  description: freeText({ max: 500 }).optional(),
});
export type RegisterWebhook = z.infer<typeof RegisterWebhookSchema>;

/**
 * The BullMQ job data of queue `webhooks`: one delivery of one event to one endpoint. Its job id is
 * its `deliveryId`, the `webhook-id` header: the same across retries and redrives.
 */
export const WebhookJobSchema = z.strictObject({
  deliveryId: z.string().regex(/^msg_[0-9a-f]{32}$/),
  endpointId: z.uuid(),
  /** The fairness tenant of the delivery: its endpoint (one endpoint's backlog never delays another's). */
  tenant: z.uuid(),
  eventId: z.uuid(),
  type: z.string().min(1).max(200),
  /** When the event happened (the body's `timestamp`). */
  occurredAt: z.iso.datetime(),
  correlationId: z.string().max(200),
  /** The event's payload (the body's `data`). */
  data: z.record(z.string(), z.unknown()),
});
export type WebhookJob = z.infer<typeof WebhookJobSchema>;

/** The `webhook-id` of an event's delivery to an endpoint: deterministic, so a re-run fan-out never doubles it. */
export function deliveryIdOf(endpointId: string, eventId: string): string {
  return `msg_${createHash('sha256').update(`${endpointId}|${eventId}`).digest('hex').slice(0, 32)}`;
}

/** The body every delivery posts: `{type, timestamp, data}` (Standard Webhooks' recommended shape). */
export function bodyOf(job: Pick<WebhookJob, 'type' | 'occurredAt' | 'data'>): string {
  return JSON.stringify({ type: job.type, timestamp: job.occurredAt, data: job.data });
}

export class WebhookNotFoundError extends DomainError {
  readonly code = 'webhook.not_found';
  readonly status = 404;
  constructor(readonly endpointId: string) {
    super(`webhook ${endpointId} not found`);
  }
}

/** The URL is not one we send to (its form, or where its host resolves): a clear 422. */
export class WebhookDestinationRefusedError extends DomainError {
  readonly code = 'webhook.destination_refused';
  readonly status = 422;
}

/** An event type no module emits. */
export class WebhookEventTypeUnknownError extends DomainError {
  readonly code = 'webhook.event_type_unknown';
  readonly status = 422;
}

/** Production without `WEBHOOKS_SECRET_KEY`: secrets cannot be stored, so no endpoint is registered. */
export class WebhooksNotConfiguredError extends DomainError {
  readonly code = 'webhook.not_configured';
  readonly status = 503;
}
