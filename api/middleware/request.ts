import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { CorrelationIdSchema } from '../../shared/domain/ids.ts';
import { problem } from '../../shared/errors/problem.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import type { ApiEnv } from '../../shared/http/context.ts';
import { problemResponse } from '../../shared/http/errors.ts';
import { setResponseHeader } from '../../shared/http/headers.ts';
import { ANONYMOUS, requestLogAt } from '../../shared/http/log.ts';

export const CORRELATION_HEADER = 'x-correlation-id';

/**
 * Accepts a valid `x-correlation-id` or generates one, echoes it on the response and scopes the
 * request's logger ({@link requestLog}) to it; logs one line per request.
 */
export function correlation(logger: Logger): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const incoming = c.req.header(CORRELATION_HEADER);
    const id =
      incoming !== undefined && CorrelationIdSchema.safeParse(incoming).success ? incoming : randomUUID();
    c.set('correlationId', id);
    c.set('principal', ANONYMOUS);
    c.set('rootLog', logger);
    setResponseHeader(c, CORRELATION_HEADER, id);
    const started = performance.now();
    await next();
    requestLogAt(c, 'info')?.info(
      {
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        durationMs: Math.round(performance.now() - started),
      },
      'request completed',
    );
  };
}

/** 415 for a body that is not JSON, before anything parses it. */
export function requireJson(): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const method = c.req.method;
    if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
      const length = c.req.header('content-length');
      const hasBody =
        (length !== undefined && length !== '0') || c.req.header('transfer-encoding') !== undefined;
      const type = c.req.header('content-type') ?? '';
      if (hasBody && !/^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i.test(type)) {
        return problemResponse(
          c,
          problem(415, 'request.unsupported_media_type', 'send the body as application/json'),
        );
      }
    }
    await next();
  };
}
