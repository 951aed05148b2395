import type { SearchQuery } from '../../shared/search/query.ts';

/** Values the loaded data holds, to vary each filter's value run by run. */
export interface Universe {
  customers: number;
  apiKeys: number;
  /** The loaded span: [from, to). */
  from: Date;
  to: Date;
  orders: number;
  traceIds: readonly string[];
}

export interface FilterCase {
  name: string;
  /** Whether the console offers it as is (the target applies), else a stress case reported alongside. */
  query(u: Universe, rnd: () => number): SearchQuery;
}

const pick = <T>(xs: readonly T[], rnd: () => number): T => xs[Math.floor(rnd() * xs.length)]!;
const int = (n: number, rnd: () => number) => Math.floor(rnd() * n);
const DAY = 86_400_000;
const ERROR_PREFIXES = [
  'currency',
  'payment declined',
  'order total',
  'payment service unavailable',
  'duplicate',
];
const customer = (u: Universe, rnd: () => number) => `cust-${int(u.customers, rnd)}`;
const key = (u: Universe, rnd: () => number) => `key-${int(u.apiKeys, rnd)}`;
/** A window of `days` somewhere in the loaded span. */
function window(u: Universe, rnd: () => number, days: number): { from: Date; to: Date } {
  const span = u.to.getTime() - u.from.getTime() - days * DAY;
  const from = new Date(u.from.getTime() + Math.max(0, span) * rnd());
  return { from, to: new Date(from.getTime() + days * DAY) };
}

/** Every filter the console offers, alone, then combined. */
export const FILTER_CASES: readonly FilterCase[] = [
  { name: 'no filter (newest first)', query: () => ({}) },
  { name: 'module', query: () => ({ module: 'orders' }) },
  {
    name: 'status',
    query: (_u, rnd) => ({
      status: pick(
        [['completed'], ['rejected'], ['dead_lettered'], ['rejected', 'dead_lettered']] as const,
        rnd,
      ).slice(),
    }),
  },
  {
    name: 'tenant',
    query: (u, rnd) => ({ tenant: rnd() < 0.5 ? key(u, rnd) : `${key(u, rnd)}/sub-${int(7, rnd)}` }),
  },
  { name: 'API key', query: (u, rnd) => ({ apiKey: key(u, rnd) }) },
  { name: 'subject (customer)', query: (u, rnd) => ({ subject: customer(u, rnd) }) },
  { name: 'time range (1 day)', query: (u, rnd) => window(u, rnd, 1) },
  { name: 'correlation id', query: (u, rnd) => ({ correlationId: `corr-${1 + int(u.orders, rnd)}` }) },
  { name: 'trace id', query: (u, rnd) => ({ traceId: pick(u.traceIds, rnd) }) },
  { name: 'error code', query: (_u, rnd) => ({ errorCode: pick(ERROR_PREFIXES, rnd) }) },
  {
    name: 'status + time range (1 day)',
    query: (u, rnd) => ({
      status: [pick(['rejected', 'dead_lettered'] as const, rnd)],
      ...window(u, rnd, 1),
    }),
  },
  {
    name: 'API key + status',
    query: (u, rnd) => ({ apiKey: key(u, rnd), status: [pick(['rejected', 'dead_lettered'] as const, rnd)] }),
  },
  {
    name: 'subject + time range (7 days)',
    query: (u, rnd) => ({ subject: customer(u, rnd), ...window(u, rnd, 7) }),
  },
  {
    name: 'tenant + status + time range (7 days)',
    query: (u, rnd) => ({ tenant: key(u, rnd), status: ['rejected'], ...window(u, rnd, 7) }),
  },
  {
    name: 'API key + error code',
    query: (u, rnd) => ({ apiKey: key(u, rnd), errorCode: pick(ERROR_PREFIXES, rnd) }),
  },
  {
    name: 'subject + error code',
    query: (u, rnd) => ({ subject: customer(u, rnd), errorCode: pick(ERROR_PREFIXES, rnd) }),
  },
  {
    name: 'error code + time range (1 day)',
    query: (u, rnd) => ({ errorCode: pick(ERROR_PREFIXES, rnd), ...window(u, rnd, 1) }),
  },
  {
    name: 'module + status + API key + subject + time range (30 days)',
    query: (u, rnd) => ({
      module: 'orders',
      status: ['completed', 'rejected'],
      apiKey: key(u, rnd),
      subject: customer(u, rnd),
      ...window(u, rnd, 30),
    }),
  },
];

/** A seeded generator, so two runs ask the same values. */
export function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
