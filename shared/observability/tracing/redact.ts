/**
 * What spans may say about a Redis command or an HTTP request: enough to read a trace (the command,
 * the key's family, the route), nothing a reader of the tracing backend could use or should not see —
 * no session id, no API key, no job payload (customer ids, items), no value stored.
 *
 * Redis: the maintained ioredis instrumentation exports every argument of EVAL/EVALSHA/GET/DEL… as
 * `db.query.text` by default, so a session lookup exported `get <prefix>:session:<id>` and BullMQ's
 * add script the whole job. {@link redisStatement} keeps the command's name and, for commands whose
 * first argument is a key (the first of KEYS for scripts), that key's prefix: its `:`-separated
 * segments up to (not including) the last one and the first that looks like an id, then `*`.
 */

/** Commands whose first argument is a key (the others, AUTH and HELLO among them, export their name only). */
const KEY_FIRST = new RegExp(
  '^(' +
    [
      'get',
      'getdel',
      'getex',
      'getrange',
      'getset',
      'set',
      'setex',
      'psetex',
      'setnx',
      'setrange',
      'append',
      'strlen',
      'mget',
      'mset',
      'msetnx',
      'del',
      'unlink',
      'exists',
      'type',
      'touch',
      'expire',
      'pexpire',
      'expireat',
      'pexpireat',
      'expiretime',
      'pexpiretime',
      'ttl',
      'pttl',
      'persist',
      'rename',
      'renamenx',
      'copy',
      'dump',
      'restore',
      'watch',
      'incr',
      'incrby',
      'incrbyfloat',
      'decr',
      'decrby',
      'publish',
      'spublish',
      'pfadd',
      'pfcount',
      'bitcount',
      'h(del|exists|expire|pexpire|get|getall|getdel|getex|incrby|incrbyfloat|keys|len|mget|mset|persist|randfield|scan|set|setex|setnx|strlen|ttl|pttl|vals)',
      'l(index|insert|len|move|mpop|pop|pos|push|pushx|range|rem|set|trim)',
      'r(pop|poplpush|push|pushx)',
      'bl(move|pop)',
      'br(pop|poplpush)',
      'bz(popmax|popmin)',
      's(add|card|diff|diffstore|inter|interstore|ismember|members|mismember|move|pop|randmember|rem|scan|union|unionstore)',
      'z(add|card|count|diff|diffstore|incrby|inter|interstore|lexcount|mscore|popmax|popmin|randmember|range|rangebylex|rangebyscore|rangestore|rank|rem|remrangebylex|remrangebyrank|remrangebyscore|revrange|revrangebylex|revrangebyscore|revrank|scan|score|union|unionstore)',
      'x(ack|add|autoclaim|claim|del|len|pending|range|revrange|setid|trim)',
    ].join('|') +
    ')$',
  'i',
);

/** Scripts and functions: `<script|sha|function> <numkeys> <keys…> <args…>`. */
const SCRIPT = /^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro)$/i;

/** A segment that names one thing rather than a family: a UUID or hex digest, or a random token. */
function looksLikeId(segment: string): boolean {
  const bare = segment.replace(/^\{|\}$/g, '');
  return (
    /^[0-9a-f-]{16,}$/i.test(bare) || // UUIDs, hex digests
    /^\d+$/.test(bare) || // job ids, counters
    (bare.length >= 20 && /\d/.test(bare)) || // random tokens (session ids, base64url)
    bare.length > 40
  );
}

/**
 * The family of a Redis key: `conveyor:session:<id>` → `conveyor:session:*`, `bull:orders:<uuid>:lock`
 * → `bull:orders:*`, `{conveyor:orders}:orders:wait` → `{conveyor:orders}:orders:*`. A key without a
 * `:` says nothing: `*`. Never the last segment, never anything after an id.
 */
export function redisKeyPrefix(key: string): string {
  const segments = key.split(':').slice(0, -1);
  const kept: string[] = [];
  for (const segment of segments) {
    if (looksLikeId(segment)) break;
    kept.push(segment);
  }
  return kept.length > 0 ? `${kept.join(':')}:*` : '*';
}

const asText = (arg: unknown): string | undefined =>
  typeof arg === 'string' ? arg : Buffer.isBuffer(arg) ? arg.toString('utf8') : undefined;

/**
 * The `db.query.text` of a Redis command (the ioredis instrumentation's `dbStatementSerializer`):
 * its name, and the prefix of the key it works on when it names one first — never an argument.
 */
export function redisStatement(command: string, args: readonly unknown[]): string {
  const name = command.toLowerCase();
  let key: string | undefined;
  if (SCRIPT.test(name)) {
    const keys = Number(asText(args[1]) ?? args[1]);
    if (Number.isInteger(keys) && keys > 0) key = asText(args[2]);
  } else if (KEY_FIRST.test(name)) {
    key = asText(args[0]);
  }
  return key === undefined ? name : `${name} ${redisKeyPrefix(key)}`;
}

/**
 * `url.full` of a server span without what a client put in it: the route's template instead of the
 * path (`/v1/customers/:customerId/orders`, not the customer's id), no query string, no credentials.
 * A request no route matched (`/*`) keeps its origin only.
 */
export function redactedUrl(url: string, route: string | undefined): string {
  const template = route?.startsWith('/') && route !== '/*' ? route : '';
  try {
    return `${new URL(url).origin}${template}`;
  } catch {
    return template;
  }
}
