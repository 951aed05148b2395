import { timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { html } from 'hono/html';
import { BASE_PATH, BOARD_PATH, type DashboardEnv } from '../context.ts';
import { page } from '../views/layout.ts';
import type { DashboardSessions } from './sessions.ts';

/** Scoped to the dashboard's path so the API on the same host never receives it. */
export const SESSION_COOKIE = 'conveyor_dashboard';

/** Sets the session cookie: HttpOnly, SameSite=Strict, Secure in production, as long-lived as the session. */
export function setSessionCookie(
  c: Context,
  token: string,
  options: { ttlSeconds: number; secure: boolean },
): void {
  setCookie(c, SESSION_COOKIE, token, {
    path: BASE_PATH,
    httpOnly: true,
    sameSite: 'Strict',
    secure: options.secure,
    maxAge: options.ttlSeconds,
  });
}

export function clearSessionCookie(c: Context, secure: boolean): void {
  deleteCookie(c, SESSION_COOKIE, { path: BASE_PATH, httpOnly: true, sameSite: 'Strict', secure });
}

/** The cookie's token, if any. */
export function sessionToken(c: Context): string | undefined {
  return getCookie(c, SESSION_COOKIE);
}

/**
 * No anonymous access: loads the session named by the cookie from Redis, or answers 401 (Bull Board's
 * JSON API, any non-GET) or redirects to the login form (pages).
 */
export function sessionGuard(sessions: DashboardSessions): MiddlewareHandler<DashboardEnv> {
  return async (c, next) => {
    const token = sessionToken(c);
    const session = token ? await sessions.get(token) : null;
    if (!token || !session) {
      if (c.req.path.startsWith(`${BOARD_PATH}/api/`)) {
        return c.json({ error: 'authentication required', login: `${BASE_PATH}/login` }, 401);
      }
      if (c.req.method === 'GET' || c.req.method === 'HEAD') return c.redirect(`${BASE_PATH}/login`, 302);
      return c.text('authentication required', 401);
    }
    c.set('session', session);
    c.set('sessionToken', token);
    c.set('log', c.get('log').child({ operator: session.user, role: session.role }));
    await next();
  };
}

/** 403 for a viewer: only admins change anything. Checked on the server whatever the page showed. */
export function requireAdmin(): MiddlewareHandler<DashboardEnv> {
  return async (c, next) => {
    const session = c.get('session');
    if (session.role !== 'admin') {
      return page(c, {
        title: 'Forbidden',
        session,
        status: 403,
        body: html`<h1>Forbidden</h1>
          <p>Your role (${session.role}) is read-only.</p>`,
      });
    }
    await next();
  };
}

/**
 * Checks the form's `csrf` field against the session's token (constant time). `hono/csrf` already
 * rejects cross-origin form posts; this also stops a same-site page that can post but not read.
 */
export function requireCsrfToken(): MiddlewareHandler<DashboardEnv> {
  return async (c, next) => {
    const form = await c.req.parseBody();
    const sent = typeof form.csrf === 'string' ? Buffer.from(form.csrf) : Buffer.alloc(0);
    const expected = Buffer.from(c.get('session').csrf);
    if (sent.length !== expected.length || !timingSafeEqual(sent, expected)) {
      return c.text('invalid or missing CSRF token', 403);
    }
    await next();
  };
}
