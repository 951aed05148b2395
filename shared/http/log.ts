import type { Context } from 'hono';
import type { Level } from 'pino';
import type { ApiEnv } from './context.ts';
import type { Logger } from '../observability/logger.ts';

/** The principal of a request not (yet) authenticated. */
export const ANONYMOUS = 'anonymous';

/**
 * The request's logger: a child of the process logger bound to its correlation id (and principal,
 * once authenticated). Made on first use, so a request that logs nothing never pays for a child.
 */
export function requestLog(c: Context<ApiEnv>): Logger {
  let log = c.get('log');
  if (log === undefined) {
    const principal = c.get('principal');
    log = c
      .get('rootLog')
      .child(
        principal === undefined || principal === ANONYMOUS
          ? { correlationId: c.get('correlationId') }
          : { correlationId: c.get('correlationId'), principal },
      );
    c.set('log', log);
  }
  return log;
}

/** {@link requestLog} if `level` is enabled, else undefined: `requestLogAt(c, 'info')?.info(...)`. */
export function requestLogAt(c: Context<ApiEnv>, level: Level): Logger | undefined {
  return c.get('rootLog').isLevelEnabled(level) ? requestLog(c) : undefined;
}
