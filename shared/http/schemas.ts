import { z } from '@hono/zod-openapi';

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
    code: z.string(),
    correlationId: z.string().optional(),
    errors: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .describe('400: one error per invalid field'),
    limitBytes: z.number().int().optional().describe('413: the body limit of the route, in bytes'),
    budget: z
      .enum(['reads', 'writes'])
      .optional()
      .describe('429: the budget that is exhausted; reads (GET, HEAD) and writes are counted apart'),
    limit: z
      .number()
      .int()
      .optional()
      .describe("429: that budget's requests per window; with `quota`, the quota's commands"),
    windowSeconds: z.number().int().optional().describe('429: the window, in seconds'),
    tenant: z
      .string()
      .optional()
      .describe('429 tenant.quota_exceeded: the tenant whose backlog quota is full'),
    quota: z
      .enum(['backlog'])
      .optional()
      .describe(
        "429 tenant.quota_exceeded: the tenant's quota that is full (its commands waiting for their turn)",
      ),
    retryAfterSeconds: z
      .number()
      .int()
      .optional()
      .describe('Seconds to wait before retrying (the Retry-After header; kept in a batch item too)'),
  })
  .openapi('Problem', {
    description:
      'RFC 9457 problem details. `type` is https://conveyor.dev/problems/ followed by `code` in kebab-case; match on `code`.',
  });

export const DeadLetterSchema = z
  .object({
    id: z.string(),
    transport: z.enum(['bullmq', 'kafka', 'rabbitmq', 'sqs']),
    origin: z.string(),
    kind: z.enum(['command', 'event']),
    messageKey: z.string().nullable(),
    payload: z.string().describe('The original message bytes as UTF-8'),
    headers: z.record(z.string(), z.string()),
    error: z.string(),
    stack: z.string().nullable(),
    attempts: z.number().int(),
    correlationId: z.string().nullable(),
    subjectId: z
      .string()
      .nullable()
      .describe("What the command or event concerns: an order's id, a refund's id (its module's subject)"),
    orderId: z
      .string()
      .nullable()
      .openapi({ deprecated: true, description: 'The same as subjectId; kept for older clients' }),
    firstFailedAt: z.string().nullable(),
    failedAt: z.string(),
    status: z.enum(['pending', 'redriven', 'discarded']),
    redriveCount: z.number().int(),
  })
  .openapi('DeadLetter');

const problemContent = { 'application/problem+json': { schema: ProblemSchema } } as const;
const header = (description: string) => ({ description, schema: { type: 'integer' as const } });

/**
 * The answer of every `/v1` route whose budget (reads or writes) is exhausted, and of a command whose
 * tenant's backlog quota is full (`tenant.quota_exceeded`, Retry-After only).
 */
export const tooManyRequests = {
  description:
    "Rate limit: the API key used its read (GET, HEAD) or write budget of the window (code rate_limit.exceeded); or, for a command, its tenant's backlog quota is full (code tenant.quota_exceeded: nothing was enqueued)",
  headers: {
    'Retry-After': header('Seconds until the window resets (rate limit), or to wait (tenant quota)'),
    'RateLimit-Limit': header('Requests of this budget per window'),
    'RateLimit-Remaining': header('Requests of this budget left in the window'),
    'RateLimit-Reset': header('Seconds until the window resets'),
    'RateLimit-Policy': {
      description: '<limit>;w=<window seconds> of the budget that applied, e.g. 100;w=60',
      schema: { type: 'string' as const },
    },
  },
  content: problemContent,
} as const;

export const problemResponses = {
  400: { description: 'Invalid request (or a malformed Conveyor-Tenant header)', content: problemContent },
  401: { description: 'Missing or invalid API key', content: problemContent },
  403: {
    description: "The key lacks the route's scope, or names a sub-tenant (Conveyor-Tenant) it may not",
    content: problemContent,
  },
  415: { description: 'Body is not JSON', content: problemContent },
  429: tooManyRequests,
  503: { description: 'Redis or Postgres unavailable', content: problemContent },
} as const;
