import { createHash, timingSafeEqual } from 'node:crypto';
import type { Config } from '../../shared/config/config.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import { StartupError } from '../../shared/runtime/bootstrap.ts';

/** `admin` may act (redrive, discard, Bull Board actions); `viewer` may only look. */
export type Role = 'admin' | 'viewer';

interface Operator {
  role: Role;
  userDigest: Buffer;
  passwordDigest: Buffer;
}

/** Checks operator credentials from config; knows which roles can log in at all. */
export interface Credentials {
  /** The role of a matching user and password, else null. Takes the same time whatever matches. */
  verify(user: string, password: string): Role | null;
  /** Roles that have a password configured (the others refuse every login). */
  readonly enabledRoles: readonly Role[];
}

// Hashing both sides first gives equal-length buffers (timingSafeEqual needs them) and hides the length
// of the configured secret from timing.
const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Operators from `DASHBOARD_USER`/`DASHBOARD_PASSWORD` (admin) and `DASHBOARD_VIEWER_USER`/
 * `DASHBOARD_VIEWER_PASSWORD` (viewer). A role without a password cannot log in: no default password
 * exists anywhere. In production the dashboard refuses to start without an admin password.
 * @throws {StartupError} in production when `DASHBOARD_PASSWORD` is empty.
 */
export function createCredentials(config: Pick<Config, 'env' | 'dashboard'>, logger: Logger): Credentials {
  const { dashboard } = config;
  if (!dashboard.password) {
    if (config.env === 'production') {
      throw new StartupError(
        'DASHBOARD_PASSWORD is empty: refusing to serve the dashboard without authentication in production',
      );
    }
    logger.warn(
      { user: dashboard.user },
      'DASHBOARD_PASSWORD is empty: admin logins to the dashboard are refused until it is set',
    );
  }
  if (!dashboard.viewerPassword) {
    logger.info(
      { user: dashboard.viewerUser },
      'DASHBOARD_VIEWER_PASSWORD is empty: viewer logins are refused',
    );
  }
  const operators: Operator[] = [];
  if (dashboard.password) {
    operators.push({
      role: 'admin',
      userDigest: digest(dashboard.user),
      passwordDigest: digest(dashboard.password),
    });
  }
  if (dashboard.viewerPassword) {
    operators.push({
      role: 'viewer',
      userDigest: digest(dashboard.viewerUser),
      passwordDigest: digest(dashboard.viewerPassword),
    });
  }
  return {
    enabledRoles: operators.map((o) => o.role),
    verify(user, password) {
      const u = digest(user);
      const p = digest(password);
      let match: Role | null = null;
      // Every operator is compared, with no early exit, so timing does not tell which user exists.
      for (const op of operators) {
        const userOk = timingSafeEqual(u, op.userDigest);
        const passwordOk = timingSafeEqual(p, op.passwordDigest);
        if (userOk && passwordOk && match === null) match = op.role;
      }
      return match;
    },
  };
}
