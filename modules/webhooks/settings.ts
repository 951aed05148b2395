import { createHash } from 'node:crypto';
import type { Config } from '../../shared/config/config.ts';
import type { Logger } from '../../shared/observability/logger.ts';

/**
 * The webhooks module's settings. Until the lead adds them to `shared/config/config.ts` (as
 * `config.webhooks`, from the variables below), they come from `config.webhooks` when present and
 * otherwise from these defaults:
 *
 * - `WEBHOOKS_SECRET_KEY` (no default in production): 32 bytes, base64 — the AES-256-GCM key the
 *   endpoints' signing secrets are encrypted with at rest. Outside production a key derived from a
 *   fixed string is used, with a warning.
 * - `WEBHOOKS_ALLOWED_CIDRS` (production: none; development and test: `127.0.0.0/8,::1/128`):
 *   addresses a destination may resolve to although they are loopback, private or link-local.
 * - `WEBHOOKS_TIMEOUT_MS` (10000): connect + response bound of one delivery attempt.
 * - `WEBHOOKS_MAX_RESPONSE_BYTES` (65536): most of a receiver's answer read (the rest is dropped).
 * - `WEBHOOKS_ENDPOINT_MAX_IN_FLIGHT` (10): deliveries of one endpoint in progress at once, across
 *   every worker (its fairness tenant's `max_in_flight`).
 * - `WEBHOOKS_ROTATION_GRACE_SECONDS` (86400): how long the previous secret still signs after a rotation.
 * - `WEBHOOKS_DELIVERY_RETENTION_DAYS` (7): how long finished delivery records (delivered, skipped,
 *   dead-lettered) are kept for `GET /v1/webhooks/{id}/deliveries`.
 */
export interface WebhookSettings {
  /** The AES-256-GCM key (32 bytes) of the secrets at rest. */
  secretKey: Buffer;
  allowedCidrs: readonly string[];
  timeoutMs: number;
  maxResponseBytes: number;
  endpointMaxInFlight: number;
  rotationGraceSeconds: number;
  deliveryRetentionDays: number;
}

/** What `config.webhooks` may carry (raw values as the environment gives them, or parsed). */
export interface WebhookConfig {
  secretKey?: string | undefined;
  allowedCidrs?: readonly string[] | undefined;
  timeoutMs?: number | undefined;
  maxResponseBytes?: number | undefined;
  endpointMaxInFlight?: number | undefined;
  rotationGraceSeconds?: number | undefined;
  deliveryRetentionDays?: number | undefined;
}

const DEV_KEY_SEED = 'conveyor development webhook secret key (never in production)';

/** The development allow-list: loopback, so local receivers work. Production allows nothing private. */
export const DEV_ALLOWED_CIDRS: readonly string[] = ['127.0.0.0/8', '::1/128'];

/**
 * The module's settings from the loaded configuration.
 * @throws {Error} in production without a secret key, or with a key that is not 32 bytes of base64.
 */
export function webhookSettings(
  config: Pick<Config, 'env'> & { webhooks?: WebhookConfig | undefined },
  logger?: Pick<Logger, 'warn'>,
): WebhookSettings {
  const raw = config.webhooks ?? {};
  const production = config.env === 'production';
  let secretKey: Buffer;
  if (raw.secretKey) {
    secretKey = Buffer.from(raw.secretKey, 'base64');
    if (secretKey.length !== 32) throw new Error('WEBHOOKS_SECRET_KEY must be 32 bytes in base64');
  } else {
    if (production)
      throw new Error('WEBHOOKS_SECRET_KEY is required in production (32 random bytes, base64)');
    logger?.warn(
      'WEBHOOKS_SECRET_KEY is not set: webhook secrets are encrypted with a development key derived from a fixed string',
    );
    secretKey = createHash('sha256').update(DEV_KEY_SEED).digest();
  }
  return {
    secretKey,
    allowedCidrs: raw.allowedCidrs ?? (production ? [] : DEV_ALLOWED_CIDRS),
    timeoutMs: raw.timeoutMs ?? 10_000,
    maxResponseBytes: raw.maxResponseBytes ?? 65_536,
    endpointMaxInFlight: raw.endpointMaxInFlight ?? 10,
    rotationGraceSeconds: raw.rotationGraceSeconds ?? 86_400,
    deliveryRetentionDays: raw.deliveryRetentionDays ?? 7,
  };
}
