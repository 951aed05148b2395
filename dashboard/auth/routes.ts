import { Hono } from 'hono';
import { z } from 'zod';
import { AuditActions } from '../../shared/audit/audit-log.ts';
import { actorOf, BASE_PATH, clientIp, type DashboardDeps, type DashboardEnv } from '../context.ts';
import { page } from '../views/layout.ts';
import { loginView, logoutView } from '../views/login.ts';
import {
  clearSessionCookie,
  requireCsrfToken,
  sessionGuard,
  sessionToken,
  setSessionCookie,
} from './guard.ts';

const LoginForm = z.object({
  username: z.string().trim().min(1).max(200),
  password: z.string().min(1).max(1_024),
});

const BAD_CREDENTIALS = 'Invalid user name or password.';

/** Public routes: the login form and its POST. */
export function loginRoutes(deps: DashboardDeps): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();
  const secure = deps.config.env === 'production';

  app.get('/login', async (c) => {
    const token = sessionToken(c);
    if (token && (await deps.sessions.get(token))) return c.redirect(BASE_PATH, 302);
    return page(c, { title: 'Sign in', body: loginView() });
  });

  app.post('/login', async (c) => {
    const parsed = LoginForm.safeParse(await c.req.parseBody());
    if (!parsed.success) {
      return page(c, {
        title: 'Sign in',
        status: 400,
        body: loginView({ error: 'Enter a user name and a password.' }),
      });
    }
    const { username, password } = parsed.data;
    const who = actorOf(c, username);
    const decision = await deps.loginLimiter.consume(clientIp(c), username);
    if (!decision.allowed) {
      await deps.audit.record({
        ...who,
        action: AuditActions.loginFailed,
        target: username,
        detail: { reason: 'rate_limited' },
      });
      c.get('log').warn({ user: username, ip: who.ip }, 'dashboard login rate limited');
      return page(c, {
        title: 'Sign in',
        status: 429,
        headers: { 'retry-after': String(decision.retryAfterSeconds) },
        body: loginView({
          error: `Too many attempts. Try again in ${decision.retryAfterSeconds} s.`,
          user: username,
        }),
      });
    }
    const role = deps.credentials.verify(username, password);
    if (!role) {
      await deps.audit.record({
        ...who,
        action: AuditActions.loginFailed,
        target: username,
        detail: { reason: 'bad_credentials' },
      });
      c.get('log').warn({ user: username, ip: who.ip }, 'dashboard login failed');
      return page(c, {
        title: 'Sign in',
        status: 401,
        body: loginView({ error: BAD_CREDENTIALS, user: username }),
      });
    }
    await deps.loginLimiter.reset(clientIp(c), username);
    // A fresh token on every login (no session fixation); a previous session of this browser ends.
    const previous = sessionToken(c);
    if (previous) await deps.sessions.destroy(previous);
    const { token } = await deps.sessions.create({ user: username, role });
    setSessionCookie(c, token, { ttlSeconds: deps.sessions.ttlSeconds, secure });
    await deps.audit.record({ ...who, role, action: AuditActions.login, target: username, detail: {} });
    c.get('log').info({ user: username, role, ip: who.ip }, 'dashboard login');
    return c.redirect(BASE_PATH, 303);
  });

  return app;
}

/** Logging out (behind the session guard): a POST with the CSRF token; GET shows a confirmation. */
export function logoutRoutes(deps: DashboardDeps): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();
  const secure = deps.config.env === 'production';
  app.use('/logout', sessionGuard(deps.sessions));

  app.get('/logout', (c) =>
    page(c, { title: 'Log out', session: c.get('session'), body: logoutView(c.get('session')) }),
  );

  app.post('/logout', requireCsrfToken(), async (c) => {
    const session = c.get('session');
    await deps.sessions.destroy(c.get('sessionToken'));
    clearSessionCookie(c, secure);
    await deps.audit.record({ ...actorOf(c), action: AuditActions.logout, target: session.user, detail: {} });
    c.get('log').info({ user: session.user }, 'dashboard logout');
    return c.redirect(`${BASE_PATH}/login`, 303);
  });
  return app;
}
