import type { Pool, PoolClient } from '../../shared/db/pool.ts';

/** An endpoint as producers see it (never its secret). */
export interface WebhookEndpointView {
  id: string;
  url: string;
  eventTypes: string[];
  description: string | null;
  enabled: boolean;
  /** When the previous secret stops signing, after a rotation; null outside a grace period. */
  previousSecretExpiresAt: string | null;
  createdAt: string;
  updatedAt: string;
}

/** An endpoint as the delivery worker needs it: with its encrypted secrets. */
export interface WebhookEndpointRow extends WebhookEndpointView {
  tenant: string;
  secret: string;
  previousSecret: string | null;
}

interface Row {
  endpoint_id: string;
  tenant: string;
  url: string;
  event_types: string[];
  description: string | null;
  enabled: boolean;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = `endpoint_id, tenant, url, event_types, description, enabled, secret, previous_secret,
                 previous_secret_expires_at, created_at, updated_at`;

const toRow = (r: Row): WebhookEndpointRow => ({
  id: r.endpoint_id,
  tenant: r.tenant,
  url: r.url,
  eventTypes: r.event_types,
  description: r.description,
  enabled: r.enabled,
  secret: r.secret,
  previousSecret: r.previous_secret,
  previousSecretExpiresAt: r.previous_secret_expires_at?.toISOString() ?? null,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

/** The producer's view of an endpoint row (drops the tenant and the secrets). */
export function viewOf(row: WebhookEndpointRow): WebhookEndpointView {
  const { id, url, eventTypes, description, enabled, previousSecretExpiresAt, createdAt, updatedAt } = row;
  return { id, url, eventTypes, description, enabled, previousSecretExpiresAt, createdAt, updatedAt };
}

export async function insertEndpoint(
  pool: Pool,
  e: {
    id: string;
    tenant: string;
    url: string;
    eventTypes: readonly string[];
    description: string | null;
    secret: string;
  },
): Promise<WebhookEndpointRow> {
  const { rows } = await pool.query<Row>(
    `INSERT INTO webhook_endpoints (endpoint_id, tenant, url, event_types, description, secret)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
    [e.id, e.tenant, e.url, e.eventTypes, e.description, e.secret],
  );
  return toRow(rows[0]!);
}

export async function listEndpoints(pool: Pool, tenant: string): Promise<WebhookEndpointRow[]> {
  const { rows } = await pool.query<Row>(
    `SELECT ${COLUMNS} FROM webhook_endpoints WHERE tenant = $1 ORDER BY created_at, endpoint_id`,
    [tenant],
  );
  return rows.map(toRow);
}

/** One endpoint; with `tenant`, only when it is that tenant's. */
export async function findEndpoint(
  db: Pool | PoolClient,
  id: string,
  tenant?: string,
): Promise<WebhookEndpointRow | undefined> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM webhook_endpoints WHERE endpoint_id = $1 AND ($2::text IS NULL OR tenant = $2)`,
    [id, tenant ?? null],
  );
  return rows[0] ? toRow(rows[0]) : undefined;
}

export async function setEnabled(
  pool: Pool,
  id: string,
  tenant: string,
  enabled: boolean,
): Promise<WebhookEndpointRow | undefined> {
  const { rows } = await pool.query<Row>(
    `UPDATE webhook_endpoints SET enabled = $3, updated_at = now()
      WHERE endpoint_id = $1 AND tenant = $2 RETURNING ${COLUMNS}`,
    [id, tenant, enabled],
  );
  return rows[0] ? toRow(rows[0]) : undefined;
}

/** Makes `secret` the signing secret; the current one keeps signing for `graceSeconds`. */
export async function rotateSecret(
  pool: Pool,
  id: string,
  tenant: string,
  secret: string,
  graceSeconds: number,
): Promise<WebhookEndpointRow | undefined> {
  const { rows } = await pool.query<Row>(
    `UPDATE webhook_endpoints
        SET previous_secret = secret, secret = $3,
            previous_secret_expires_at = now() + make_interval(secs => $4), updated_at = now()
      WHERE endpoint_id = $1 AND tenant = $2 RETURNING ${COLUMNS}`,
    [id, tenant, secret, graceSeconds],
  );
  return rows[0] ? toRow(rows[0]) : undefined;
}

/** Deletes an endpoint and its delivery records; its pending jobs find nothing and are skipped. */
export async function deleteEndpoint(pool: Pool, id: string, tenant: string): Promise<boolean> {
  const { rowCount } = await pool.query(
    'DELETE FROM webhook_endpoints WHERE endpoint_id = $1 AND tenant = $2',
    [id, tenant],
  );
  return (rowCount ?? 0) > 0;
}

/** A delivery as producers and operators read it. */
export interface WebhookDeliveryView {
  id: string;
  eventId: string;
  eventType: string;
  status: 'pending' | 'delivered' | 'dead_lettered' | 'skipped';
  attempts: number;
  responseStatus: number | null;
  lastError: string | null;
  deadLetterId: string | null;
  createdAt: string;
  updatedAt: string;
  deliveredAt: string | null;
}

export async function recentDeliveries(
  pool: Pool,
  endpointId: string,
  limit: number,
): Promise<WebhookDeliveryView[]> {
  const { rows } = await pool.query<{
    delivery_id: string;
    event_id: string;
    event_type: string;
    status: WebhookDeliveryView['status'];
    attempts: number;
    response_status: number | null;
    last_error: string | null;
    dead_letter_id: string | null;
    created_at: Date;
    updated_at: Date;
    delivered_at: Date | null;
  }>(
    `SELECT delivery_id, event_id, event_type, status, attempts, response_status, last_error, dead_letter_id,
            created_at, updated_at, delivered_at
       FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at DESC, delivery_id LIMIT $2`,
    [endpointId, limit],
  );
  return rows.map((r) => ({
    id: r.delivery_id,
    eventId: r.event_id,
    eventType: r.event_type,
    status: r.status,
    attempts: r.attempts,
    responseStatus: r.response_status,
    lastError: r.last_error,
    deadLetterId: r.dead_letter_id,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    deliveredAt: r.delivered_at?.toISOString() ?? null,
  }));
}
