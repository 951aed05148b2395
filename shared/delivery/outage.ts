/**
 * Whether an error says a dependency cannot be reached right now — as opposed to refusing this work.
 * Such a failure is not the message's fault and heals by waiting: the delivery core snoozes it
 * without consuming an attempt, and a dead letter whose record fails with it is parked, not rewritten.
 *
 * Recognized: socket errors (refused, reset, timed out, unreachable, broken pipe), PostgreSQL's
 * connection exceptions (SQLSTATE class 08), operator intervention (57P01 admin shutdown, 57P02 crash
 * shutdown, 57P03 "the database system is starting up"), insufficient resources (class 53: too many
 * connections, disk full), a read-only standby after a failover (25006), and the pg driver's and
 * pool's own messages for a connection that ended or never came. The cause chain and an
 * AggregateError's errors (Node's happy-eyeballs connect) are searched too.
 */
export function isOutage(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 5) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (SOCKET_CODES.has(code)) return true;
    if (/^[0-9A-Z]{5}$/.test(code)) {
      if (code.startsWith('08') || code.startsWith('53')) return true;
      if (code === '57P01' || code === '57P02' || code === '57P03' || code === '25006') return true;
      return false; // any other SQLSTATE: the server answered, and refused this work
    }
  }
  if (OUTAGE_MESSAGES.some((re) => re.test(err.message))) return true;
  if (err instanceof AggregateError && err.errors.some((e) => isOutage(e, depth + 1))) return true;
  return isOutage(err.cause, depth + 1);
}

const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOTCONN',
]);

const OUTAGE_MESSAGES = [
  /^Connection terminated/, // pg: the server went away mid-query, or the connect timed out
  /timeout exceeded when trying to connect/, // pg-pool: no connection within connectionTimeoutMillis
  /Client has encountered a connection error and is not queryable/, // pg: a client whose socket died
  /the database system is (starting up|shutting down|in recovery mode|not yet accepting connections)/,
  /terminating connection due to administrator command/,
];
