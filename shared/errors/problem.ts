import {
  DomainError,
  TenantQuotaExceededError,
  ValidationError,
  type FieldError,
  type TenantQuota,
} from './domain.ts';

/** RFC 9457 problem details, with the extension members the API uses. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  code: string;
  errors?: readonly FieldError[];
  correlationId?: string;
  /** 413: the body limit of the route, in bytes. */
  limitBytes?: number;
  /** 409 command.not_cancellable: the command's state (`completed`, `processing`…). */
  state?: string;
  /** 429: which of the key's budgets was exhausted. */
  budget?: 'reads' | 'writes';
  /** 429: that budget's requests per window; or, with `quota`, the quota's commands. */
  limit?: number;
  /** 429: the window, in seconds. */
  windowSeconds?: number;
  /** 429 `tenant.quota_exceeded`: the tenant whose quota is full. */
  tenant?: string;
  /** 429 `tenant.quota_exceeded`: which of its quotas (`backlog`). */
  quota?: TenantQuota;
  /** Seconds to wait before retrying; the same as the response's Retry-After (kept in a batch item too). */
  retryAfterSeconds?: number;
}

const titles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
export const PROBLEM_TYPE_BASE = 'https://conveyor.dev/problems/';

/**
 * The problem `type` URL of a code, in one spelling: the code in kebab-case, every run of other
 * characters (`.`, `_`) one `-`. `rate_limit.exceeded` → `https://conveyor.dev/problems/rate-limit-exceeded`.
 * The `code` itself never changes (clients match on it).
 */
export function problemType(code: string): string {
  return (
    PROBLEM_TYPE_BASE +
    code
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-|-$/g, '')
  );
}

/** A problem for a status with no domain error behind it (415, 413, …). */
export function problem(
  status: number,
  code: string,
  detail?: string,
  extra: Partial<Problem> = {},
): Problem {
  return {
    type: problemType(code),
    title: titles[status] ?? 'Error',
    status,
    code,
    ...(detail === undefined ? {} : { detail }),
    ...extra,
  };
}

/**
 * Maps any thrown value to a problem; unknown errors become a 500 with no internals leaked. Also what a
 * batch answers for one item it refused, e.g. `{ error: toProblem(refused.get(id)) }` for a
 * {@link TenantQuotaExceededError} (429 naming the tenant, the quota and its limit).
 */
export function toProblem(err: unknown, instance?: string): Problem {
  if (err instanceof DomainError) {
    return problem(err.status, err.code, err.message, {
      ...(instance ? { instance } : {}),
      ...(err instanceof ValidationError ? { errors: err.errors } : {}),
      ...(err instanceof TenantQuotaExceededError
        ? {
            tenant: err.tenant,
            quota: err.quota,
            limit: err.limit,
            retryAfterSeconds: err.retryAfterSeconds,
          }
        : {}),
    });
  }
  return problem(500, 'internal', 'an unexpected error occurred', instance ? { instance } : {});
}

/** The parts of a schema issue (zod's) that {@link fieldErrors} reads. */
export interface IssueLike {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly code?: string;
  readonly maximum?: unknown;
  readonly minimum?: unknown;
}

function bound(value: unknown): number | undefined {
  return typeof value === 'number' || typeof value === 'bigint' ? Number(value) : undefined;
}

/**
 * Schema issues as field errors, one per field: a value that breaks several checks of one field
 * (`quantity: 1e30` is both over `.max(10000)` and over the safe-integer range `.int()` implies) is
 * reported once. The first issue of a field wins, except that of several bounds of one kind the
 * tightest is kept (`<= 10000`, not `<= 9007199254740991`): the rule the client can act on.
 * @example fieldErrors(result.error.issues, 'orders.3.') // [{ path: 'orders.3.items.0.quantity', message: … }]
 */
export function fieldErrors(issues: readonly IssueLike[], prefix = ''): FieldError[] {
  const byPath = new Map<string, IssueLike>();
  for (const issue of issues) {
    const path = (prefix + issue.path.map(String).join('.')).replace(/\.$/, '');
    const kept = byPath.get(path);
    if (kept === undefined) byPath.set(path, issue);
    else if (tighter(issue, kept)) byPath.set(path, issue);
  }
  return [...byPath].map(([path, issue]) => ({ path: path || '(body)', message: issue.message }));
}

/** Whether `issue` states a tighter bound of the same kind than `kept` (a lower maximum, a higher minimum). */
function tighter(issue: IssueLike, kept: IssueLike): boolean {
  if (issue.code !== kept.code) return false;
  if (issue.code === 'too_big') return (bound(issue.maximum) ?? Infinity) < (bound(kept.maximum) ?? Infinity);
  if (issue.code === 'too_small')
    return (bound(issue.minimum) ?? -Infinity) > (bound(kept.minimum) ?? -Infinity);
  return false;
}
