import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit as streamingBodyLimit } from 'hono/body-limit';
import type { ApiEnv } from '../context.ts';

export interface BodyLimitOptions {
  maxSize: number;
  onError: (c: Context<ApiEnv>) => Response | Promise<Response>;
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
  const streaming = streamingBodyLimit(options);
  return async (c, next) => {
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD') return next(); // never a body
    const length = c.req.header('content-length');
    if (length !== undefined && decimal.test(length) && c.req.header('transfer-encoding') === undefined) {
      return Number(length) > options.maxSize ? options.onError(c) : next();
    }
    return streaming(c, next);
  };
}
