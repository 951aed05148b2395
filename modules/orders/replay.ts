import type { Pool, PoolClient } from '../../shared/db/pool.ts';
import { isUuid } from '../../shared/domain/ids.ts';
import type { CommandReplay, ReplayableCommand } from '../../shared/modules/module.ts';
import type { OrderItem, OrderJob } from './domain.ts';

interface OrderReplayRow {
  order_id: string;
  status: string;
  customer_id: string;
  currency: string;
  items: OrderItem[];
  correlation_id: string;
  accepted_by: string | null;
  tenant: string | null;
}

/**
 * An order's replay from its write-model row: the same customer, currency and items, posted by the
 * same API key for the same tenant, under the original's correlation id (a search by it finds the
 * original and its replays together). Not its batch: the batch counted the original's decision.
 */
function replayable(r: OrderReplayRow): ReplayableCommand {
  return {
    status: r.status,
    tenant: r.tenant,
    job(id, acceptedAt): OrderJob {
      return {
        orderId: id,
        correlationId: r.correlation_id,
        acceptedAt: acceptedAt.toISOString(),
        ...(r.accepted_by === null ? {} : { acceptedBy: r.accepted_by }),
        ...(r.tenant === null ? {} : { tenant: r.tenant }),
        replayOf: r.order_id,
        order: { customerId: r.customer_id, currency: r.currency, items: r.items },
      };
    },
  };
}

async function load(db: Pool | PoolClient, ids: readonly string[]): Promise<Map<string, ReplayableCommand>> {
  const uuids = ids.filter(isUuid);
  if (uuids.length === 0) return new Map();
  const { rows } = await db.query<OrderReplayRow>(
    `SELECT order_id::text AS order_id, status, customer_id, currency, items, correlation_id, accepted_by, tenant
       FROM orders WHERE order_id = ANY($1::uuid[])`,
    [uuids],
  );
  return new Map(rows.map((r) => [r.order_id, replayable(r)]));
}

/** The orders module's side of a replay (bulk action `replay`). */
export const orderReplay: CommandReplay = { load };
