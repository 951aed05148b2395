import type { Settled } from '../../../shared/batch.ts';
import type { Pool } from '../../../shared/db/pool.ts';
import type { Logger } from '../../../shared/observability/logger.ts';
import type { Command, CommandHandler, ModuleWorkerFactory } from '../../../shared/modules/module.ts';
import { bodyOf, WebhookJobSchema, type WebhookJob } from '../domain.ts';
import { decryptSecret, signatureHeader } from '../secrets.ts';
import { webhookSettings, type WebhookConfig, type WebhookSettings } from '../settings.ts';
import { parseCidrs } from '../ssrf.ts';
import { findEndpoint } from '../store.sql.ts';
import { postOnce, type AttemptResult } from './deliver.ts';
import { startFanOut, type FanOutService } from './fan-out.ts';

export type WebhookOutcome =
  | { status: 'delivered'; deliveryId: string; responseStatus: number }
  /** Delivered before (a redelivered job): nothing sent. */
  | { status: 'duplicate'; deliveryId: string }
  /** Its endpoint was deleted or disabled: nothing sent, nothing retried. */
  | { status: 'skipped'; deliveryId: string; reason: string };

/** A failed attempt: retried by the delivery core with backoff, dead-lettered when its attempts are spent. */
export class WebhookAttemptError extends Error {
  override readonly name = 'WebhookAttemptError';
}

function describe(data: unknown): { correlationId: string | null; subjectId: string | null } {
  const loose = (data ?? {}) as { correlationId?: unknown; deliveryId?: unknown };
  return {
    correlationId: typeof loose.correlationId === 'string' ? loose.correlationId : null,
    subjectId: typeof loose.deliveryId === 'string' ? loose.deliveryId : null,
  };
}

/** What {@link deliverWebhook} needs. */
export interface DeliveryDeps {
  pool: Pool;
  settings: WebhookSettings;
  logger?: Logger;
  /** The clock of `webhook-timestamp` (tests). */
  now?: () => Date;
}

/**
 * One delivery attempt of one job: reads its endpoint, signs the body with its secret (and the
 * previous one during a rotation's grace), POSTs it ({@link postOnce}) and records the attempt on
 * its delivery row. A 2xx is success; anything else throws {@link WebhookAttemptError}.
 */
export async function deliverWebhook(
  deps: DeliveryDeps,
  job: WebhookJob,
  attempt: number,
  allowed = parseCidrs(deps.settings.allowedCidrs),
): Promise<WebhookOutcome> {
  const { pool, settings } = deps;
  // Two primary-key reads, side by side.
  const [endpoint, { rows }] = await Promise.all([
    findEndpoint(pool, job.endpointId),
    pool.query<{ status: string }>('SELECT status FROM webhook_deliveries WHERE delivery_id = $1', [
      job.deliveryId,
    ]),
  ]);
  if (rows[0]?.status === 'delivered') return { status: 'duplicate', deliveryId: job.deliveryId };
  if (!endpoint || !endpoint.enabled) {
    const reason = endpoint ? 'endpoint disabled' : 'endpoint deleted';
    await pool.query(
      `UPDATE webhook_deliveries SET status = 'skipped', last_error = $2, updated_at = now() WHERE delivery_id = $1`,
      [job.deliveryId, reason],
    );
    return { status: 'skipped', deliveryId: job.deliveryId, reason };
  }
  const now = deps.now?.() ?? new Date();
  const secrets = [decryptSecret(settings.secretKey, endpoint.secret)];
  if (
    endpoint.previousSecret &&
    endpoint.previousSecretExpiresAt &&
    Date.parse(endpoint.previousSecretExpiresAt) > now.getTime()
  )
    secrets.push(decryptSecret(settings.secretKey, endpoint.previousSecret));
  const timestamp = Math.floor(now.getTime() / 1_000);
  const body = bodyOf(job);
  const result: AttemptResult = await postOnce(
    endpoint.url,
    {
      'content-type': 'application/json',
      'user-agent': 'Conveyor-Webhooks/1',
      'webhook-id': job.deliveryId,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signatureHeader(secrets, job.deliveryId, timestamp, body),
    },
    body,
    {
      policy: { allowedCidrs: settings.allowedCidrs },
      allowed,
      timeoutMs: settings.timeoutMs,
      maxResponseBytes: settings.maxResponseBytes,
    },
  );
  await pool.query(
    `UPDATE webhook_deliveries
        SET attempts = GREATEST(attempts + 1, $2), response_status = $3, last_error = $4,
            status = CASE WHEN $5 THEN 'delivered' ELSE 'pending' END,
            delivered_at = CASE WHEN $5 THEN now() ELSE delivered_at END, updated_at = now()
      WHERE delivery_id = $1`,
    [
      job.deliveryId,
      attempt,
      result.status ?? null,
      result.ok ? null : result.error.slice(0, 1_000),
      result.ok,
    ],
  );
  if (!result.ok) throw new WebhookAttemptError(result.error);
  return { status: 'delivered', deliveryId: job.deliveryId, responseStatus: result.status };
}

/**
 * The webhooks module's worker side. Each job is one POST, made concurrently with the others of its
 * batch (batches hold one job by default, `WEBHOOKS_BATCH_SIZE`); a failed POST fails that job alone.
 * It also runs the fan-out (the event bus's `webhooks` group, {@link startFanOut}) in the process:
 * wherever deliveries are made, events become deliveries, with no other worker kind to deploy.
 */
export const webhooksWorker: ModuleWorkerFactory = {
  commands(ctx): CommandHandler {
    const settings = webhookSettings(
      ctx.config as typeof ctx.config & { webhooks?: WebhookConfig },
      ctx.logger,
    );
    const allowed = parseCidrs(settings.allowedCidrs);
    const fanOut: FanOutService = startFanOut(
      {
        pool: ctx.pool,
        logger: ctx.logger,
        config: ctx.config,
        settings: ctx.settings,
        endpointMaxInFlight: settings.endpointMaxInFlight,
        deliveryRetentionDays: settings.deliveryRetentionDays,
      },
      'deliver-webhook',
    );
    const deps: DeliveryDeps = { pool: ctx.pool, settings, logger: ctx.logger };
    return {
      describe,
      async handleBatch(commands: readonly Command<WebhookJob>[]) {
        return Promise.all(
          commands.map(async (c): Promise<Settled<WebhookOutcome>> => {
            try {
              return { ok: true, value: await deliverWebhook(deps, c.job, c.attempt, allowed) };
            } catch (error) {
              return { ok: false, error };
            }
          }),
        );
      },
      statusOf: (outcome: WebhookOutcome) => outcome.status,
      async deadLettered(client, cmd) {
        const parsed = WebhookJobSchema.safeParse(cmd.data);
        if (!parsed.success) return [];
        await client.query(
          `UPDATE webhook_deliveries
              SET status = 'dead_lettered', dead_letter_id = $2, last_error = $3, attempts = GREATEST(attempts, $4),
                  updated_at = now()
            WHERE delivery_id = $1 AND status <> 'delivered'`,
          [parsed.data.deliveryId, cmd.deadLetterId, cmd.error.message.slice(0, 1_000), cmd.attempts],
        );
        return [];
      },
      close: () => fanOut.close(),
    };
  },
  projection: { tables: [], apply: async () => undefined },
};
