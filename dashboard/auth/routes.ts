import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { z } from 'zod';
import { AuditActions, type AuditActor } from '../../shared/audit/audit-log.ts';
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
import type { LoginFailureReason, LoginFailures, LoginFailureStreak } from './login-failures.ts';

const LoginForm = z.object({
  username: z.string().trim().min(1).max(200),
  password: z.string().min(1).max(1_024),
});

const BAD_CREDENTIALS = 'Invalid user name or password.';

/**
 * The most bytes a login form may have. Its fields are at most 200 + 1,024 characters; URL-encoding
 * multiplies a character by up to 9 (a 4-byte UTF-8 character is 12 `%XX`, but counts as 2 here).
 */
export const LOGIN_BODY_LIMIT_BYTES = 16_384;

export interface LoginRoutesOptions {
  /** Streaks of failed logins per address: the audit log gets the first and a summary. */
  failures: LoginFailures;
}

/** The audit row that closes a streak of failed logins: how many, why, and which user names. */
function streakEntry(who: AuditActor, streak: LoginFailureStreak) {
  return {
    ...who,
    actor: streak.firstUser || who.actor,
    role: null,
    userAgent: null, // the request that ended the streak is not the one that began it
    action: AuditActions.loginFailed,
    target: streak.firstUser || null,
    detail: {
      reason: 'repeated',
      count: streak.count,
      badCredentials: streak.badCredentials,
      rateLimited: streak.rateLimited,
      users: streak.users,
      otherUsers: streak.otherUsers,
      since: streak.since.toISOString(),
      until: streak.until.toISOString(),
    },
  };
}

/** Public routes: the login form and its POST. */
export function loginRoutes(deps: DashboardDeps, options: LoginRoutesOptions): Hono<DashboardEnv> {
  const app = new Hono<DashboardEnv>();
  const secure = deps.config.env === 'production';
  const { failures } = options;

  /**
   * Audits a failed attempt only when it opens a streak of its address (plus the summary of a streak
   * it ends): a client hammering the login costs a Redis call per attempt, not an audit row. Without
   * Redis every failure is audited: nothing is lost, the limiter refuses logins anyway.
   */
  const recordFailure = async (
    c: Context<DashboardEnv>,
    who: AuditActor,
    user: string,
    reason: LoginFailureReason,
  ) => {
    const ip = clientIp(c);
    let outcome: Awaited<ReturnType<LoginFailures['fail']>>;
    try {
      outcome = await failures.fail(ip, user, reason);
    } catch (err) {
      c.get('log').warn({ err }, 'login failures not counted: auditing this one');
      outcome = { first: true, ended: null };
    }
    if (outcome.ended && outcome.ended.count > 1) await deps.audit.record(streakEntry(who, outcome.ended));
    if (outcome.first) {
      await deps.audit.record({ ...who, action: AuditActions.loginFailed, target: user, detail: { reason } });
    }
    c.get('log')[outcome.first ? 'warn' : 'debug'](
      { user, ip, reason },
      reason === 'rate_limited' ? 'dashboard login rate limited' : 'dashboard login failed',
    );
  };

  // Checked before anything reads the body: by Content-Length alone, or counted as a chunked body
  // arrives, and refused past the limit with the form and a 413.
  const limit = bodyLimit({
    maxSize: LOGIN_BODY_LIMIT_BYTES,
    onError: (c) =>
      page(c, {
        title: 'Sign in',
        status: 413,
        headers: { connection: 'close' },
        body: loginView({ error: 'The form is too large.' }),
      }),
  });

  app.get('/login', async (c) => {
    const token = sessionToken(c);
    if (token && (await deps.sessions.get(token))) return c.redirect(BASE_PATH, 302);
    return page(c, { title: 'Sign in', body: loginView() });
  });

  app.post('/login', limit, async (c) => {
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
      await recordFailure(c, who, username, 'rate_limited');
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
      await recordFailure(c, who, username, 'bad_credentials');
      return page(c, {
        title: 'Sign in',
        status: 401,
        body: loginView({ error: BAD_CREDENTIALS, user: username }),
      });
    }
    await deps.loginLimiter.reset(clientIp(c), username);
    // A success ends its address's streak of failures: summarized now, not at some later attempt.
    const streak = await failures.end(clientIp(c));
    if (streak && streak.count > 1) await deps.audit.record(streakEntry(who, streak));
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
