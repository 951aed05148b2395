/**
 * The shared shape of a command search (issue #23): the query, one result row, a page, and the
 * search port. Search, cancel and bulk actions all speak these types.
 */
import { z } from 'zod';

/** Every state a command can be in, pending (`queued`, `processing`) or decided. */
export const CommandStatus = z.enum([
  'queued',
  'processing',
  'completed',
  'rejected',
  'dead_lettered',
  'cancelled',
]);
export type CommandStatus = z.infer<typeof CommandStatus>;

export const SearchQuerySchema = z
  .object({
    /** A registered module name (orders, refunds, webhooks …); absent = all. */
    module: z.string().optional(),
    /** Any of these states. */
    status: z.array(CommandStatus).optional(),
    /** accepted_by / tenant. */
    tenant: z.string().optional(),
    apiKey: z.string().optional(),
    /** E.g. the customer id for orders, the order id for refunds. */
    subject: z.string().optional(),
    /** On accepted_at, half-open [from, to). */
    from: z.coerce.date().optional(),
    to: z.coerce.date().optional(),
    correlationId: z.string().optional(),
    traceId: z.string().optional(),
    errorCode: z.string().optional(),
  })
  .strict();
export type SearchQuery = z.infer<typeof SearchQuerySchema>;

export interface CommandSummary {
  module: string;
  id: string;
  status: z.infer<typeof CommandStatus>;
  tenant: string | null;
  apiKey: string | null;
  subject: string | null;
  correlationId: string | null;
  traceId: string | null;
  errorCode: string | null;
  acceptedAt: string | null;
  decidedAt: string | null;
}

export interface SearchPage {
  items: CommandSummary[];
  nextCursor: string | null;
}

export interface CommandSearch {
  /** Stable sort (accepted_at DESC, module, id). */
  search(q: SearchQuery, page: { cursor?: string; limit: number }): Promise<SearchPage>;
  /** Exact count (for a bulk dry run). */
  count(q: SearchQuery): Promise<number>;
}
