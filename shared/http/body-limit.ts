import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit as streamingBodyLimit } from 'hono/body-limit';
import type { ApiEnv } from './context.ts';
import { tooLargeResponse } from './errors.ts';

export interface BodyLimitOptions {
  /** The most bytes a body may have. */
  maxSize: number;
  /** The answer past the limit; by default a 413 problem naming it (`detail` and `limitBytes`). */
  onError?: (c: Context<ApiEnv>, limitBytes: number) => Response | Promise<Response>;
}

const decimal = /^\d+$/;

/**
 * `hono/body-limit` with a fast path. A body framed by `Content-Length` (no `Transfer-Encoding`) is
 * judged by the header alone — Node's parser never delivers more bytes than it announces — so the
 * request is not turned into a web `Request` with a stream (`@hono/node-server` then reads the body
 * straight from the socket when the route parses it). Chunked bodies, and anything unusual, take
 * hono's streaming check, which counts the bytes as they arrive and answers 413 past the cap.
 */
export function bodyLimit(options: BodyLimitOptions): MiddlewareHandler<ApiEnv> {
  const { maxSize, onError = tooLargeResponse } = options;
  const tooLarge = (c: Context<ApiEnv>) => onError(c, maxSize);
  const streaming = streamingBodyLimit({ maxSize, onError: tooLarge });
  return async (c, next) => {
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD') return next(); // never a body
    const length = c.req.header('content-length');
    if (length !== undefined && decimal.test(length) && c.req.header('transfer-encoding') === undefined) {
      return Number(length) > maxSize ? tooLarge(c) : next();
    }
    return streaming(c, next);
  };
}
