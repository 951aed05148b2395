import type { ModuleDefinition } from '../../shared/modules/module.ts';
import { WebhookJobSchema } from './domain.ts';

/**
 * Webhooks: producers register endpoints (`/v1/webhooks`) for the events of their key; a subscriber
 * of the event bus (group `webhooks`) turns each event into one job per matching endpoint on queue
 * `webhooks`, whose worker POSTs it signed per Standard Webhooks — retried with backoff by the
 * delivery core, dead-lettered when exhausted, redriven like any command, and fair per endpoint.
 */
export const webhooksModule: ModuleDefinition = {
  name: 'webhooks',
  description: 'Signed outbound webhooks (Standard Webhooks) of the platform events, per producer endpoint',
  jobName: 'deliver-webhook',
  jobSchema: WebhookJobSchema,
  // Emits no events of its own: deliveries are recorded in webhook_deliveries.
  events: {},
  migrations: new URL('./migrations/', import.meta.url),
  // One delivery per micro-batch: a hanging receiver holds its own job only, never a batch's others.
  // Receivers are slow compared to the database: more in progress per process, a shorter backoff
  // start, and 12 attempts spread over about 40 minutes (1 s doubling, at most 10 min apart).
  queueDefaults: {
    concurrency: 200,
    batchSize: 1,
    batchWaitMs: 0,
    attempts: 12,
    backoffMs: 1_000,
    backoffMaxMs: 600_000,
  },
  scopes: { write: 'webhooks:write', read: 'webhooks:read' },
  paths: ['/v1/webhooks'],
  api: async () => (await import('./api/index.ts')).webhooksApi,
  worker: async () => (await import('./worker/index.ts')).webhooksWorker,
};
