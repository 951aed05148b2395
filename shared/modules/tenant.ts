import { z } from 'zod';
import { TENANT_PART } from '../fairness/tenants.ts';

/**
 * The tenant a command is for, as modules carry it in their job data and events: `<key id>` or
 * `<key id>/<sub-tenant>` (shared/fairness/tenants.ts), each part 1-64 letters, digits, ".", "_" or
 * "-". Optional wherever it appears: jobs enqueued before it existed, or by a foreign producer, have none.
 */
export const TenantIdSchema = z
  .string()
  .max(129)
  .refine(
    (id) => {
      const parts = id.split('/');
      return parts.length <= 2 && parts.every((p) => TENANT_PART.test(p));
    },
    { error: '<key id> or <key id>/<sub-tenant>, each 1-64 letters, digits, ".", "_" or "-"' },
  );
