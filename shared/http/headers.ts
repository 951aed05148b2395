import type { Context, MiddlewareHandler } from 'hono';
import type { ApiEnv } from './context.ts';

/** What `hono/secure-headers` sets with its defaults (which this middleware replaces), same values. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'cross-origin-resource-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'origin-agent-cluster': '?1',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=15552000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-dns-prefetch-control': 'off',
  'x-download-options': 'noopen',
  'x-frame-options': 'SAMEORIGIN',
  'x-permitted-cross-domain-policies': 'none',
  'x-xss-protection': '0',
});

/**
 * Headers every response of the request carries (security headers, correlation id, rate limit),
 * kept as a plain object until the response is built. Mount it before anything that adds to it.
 *
 * Why not `c.header()` or `secureHeaders()`: hono then keeps the headers in a web `Headers` object,
 * which `@hono/node-server` has to iterate, sort and copy into a plain object again for Node's
 * `writeHead` — and `c.header()` on a finished response even rebuilds it as a streaming Response.
 * A response made by {@link respond} is written straight from the plain object. Any other response
 * gets the headers set on it after the route (as `secureHeaders()` did), overriding the route's.
 */
export function responseHeaders(): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const headers: Record<string, string> = { ...SECURITY_HEADERS };
    c.set('responseHeaders', headers);
    await next();
    const res = c.res;
    if (c.get('respondedWith') === res) return;
    const target = res.headers;
    for (const name in headers) target.set(name, headers[name]!);
    target.delete('x-powered-by');
  };
}

/** Adds a header to every response of this request (see {@link responseHeaders}). */
export function setResponseHeader(c: Context<ApiEnv>, name: string, value: string): void {
  const headers = c.get('responseHeaders');
  if (headers) headers[name.toLowerCase()] = value;
  else c.header(name, value);
}

/**
 * A response with the request's headers plus `headers` (which win), written by `@hono/node-server`
 * without any `Headers` object in between. `headers` names must be lower case.
 */
export function respond(
  c: Context<ApiEnv>,
  body: string | null,
  status: number,
  headers: Record<string, string>,
): Response {
  const common = c.get('responseHeaders');
  const res = new Response(body, { status, headers: common ? { ...common, ...headers } : headers });
  if (common) c.set('respondedWith', res);
  return res;
}
