import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import {
  DomainError,
  DependencyUnavailableError,
  OverloadedError,
  TenantQuotaExceededError,
} from '../errors/domain.ts';
import { problem, PROBLEM_CONTENT_TYPE, toProblem, type Problem } from '../errors/problem.ts';
import type { ApiEnv } from './context.ts';
import { requestLog } from './log.ts';
import { respond } from './headers.ts';

export function problemResponse(
  c: Context<ApiEnv>,
  p: Problem,
  headers: Record<string, string> = {},
): Response {
  const body: Problem = { ...p, instance: c.req.path, correlationId: c.get('correlationId') };
  return respond(c, JSON.stringify(body), p.status, { 'content-type': PROBLEM_CONTENT_TYPE, ...headers });
}

/** Codes of the framework's own errors (malformed JSON, …); any other status becomes `http.<status>`. */
export const HTTP_EXCEPTION_CODES: Readonly<Record<number, string>> = {
  400: 'request.malformed',
  413: 'request.too_large',
};

/** Every error leaves as RFC 9457 problem+json, never with a stack trace. */
export const onError: ErrorHandler<ApiEnv> = (err, c) => {
  if (err instanceof HTTPException) {
    const status = err.status;
    const code = HTTP_EXCEPTION_CODES[status] ?? `http.${status}`;
    return problemResponse(c, problem(status, code, err.message || undefined));
  }
  if (err instanceof DomainError) {
    const headers: Record<string, string> = {};
    if (
      err instanceof DependencyUnavailableError ||
      err instanceof OverloadedError ||
      err instanceof TenantQuotaExceededError
    ) {
      headers['retry-after'] = String(err.retryAfterSeconds);
    }
    if (err.status >= 500 && c.get('rootLog')) requestLog(c).warn({ err }, 'request failed: dependency');
    return problemResponse(c, toProblem(err), headers);
  }
  if (c.get('rootLog')) requestLog(c).error({ err }, 'unhandled error');
  return problemResponse(c, toProblem(err));
};

/**
 * 413 naming the limit (in `detail` and as `limitBytes`). The rest of the body is not read, so the
 * connection cannot be reused: the response says `connection: close`.
 */
export function tooLargeResponse(c: Context<ApiEnv>, limitBytes: number): Response {
  return problemResponse(
    c,
    problem(413, 'request.too_large', `the request body is over the limit of ${limitBytes} bytes`, {
      limitBytes,
    }),
    { connection: 'close' },
  );
}

export const notFound: NotFoundHandler<ApiEnv> = (c) =>
  problemResponse(c, problem(404, 'route.not_found', `no route for ${c.req.method} ${c.req.path}`));
