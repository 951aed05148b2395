// `npm run demo`: a few minutes of realistic traffic against a running `npm start`, so the console and
// the metrics have something true to show — several producers (API keys, one naming sub-tenants), a
// share of payment declines and unsupported currencies, a batch, refunds (one refused), a command that
// keeps failing until it is dead-lettered, and a foreign producer's malformed job.
//
//   env $(npm run -s demo -- --env) npm start   # the platform with the demo's keys, tenants and payment service
//   npm run demo [-- --minutes 3 --rate 6 --url http://localhost:3000 --payment-port 4010]
//
// The demo runs the payment service the platform calls (PAYMENT_URL from --env): it declines about one
// order in ten and refuses the requests of customer `c-poison` as malformed (400), so that order is
// retried until its attempts run out. Against a plain `npm start` (no demo keys) it runs with the `dev`
// key alone and the built-in payment approver: no declines, no dead-lettered payment.
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { OrdersQueues, PLACE_ORDER_JOB } from '../modules/orders/queue.ts';
import { loadConfig } from '../shared/config/config.ts';
import { MODULES } from '../modules/registry.ts';

/** The demo's producers: each an API key (secrets fixed so that `--env` and the run agree; local use only). */
export const DEMO_PRODUCERS = [
  { id: 'shop', secret: 'demo-shop-key', subTenants: [] as string[], share: 0.4 },
  {
    id: 'marketplace',
    secret: 'demo-marketplace-key',
    subTenants: ['acme', 'globex', 'initech'],
    share: 0.4,
  },
  { id: 'warehouse', secret: 'demo-warehouse-key', subTenants: [] as string[], share: 0.2 },
] as const;

const DemoArgsSchema = z.object({
  minutes: z.coerce.number().positive().max(120).default(3),
  /** Orders per second over all producers. */
  rate: z.coerce.number().positive().max(500).default(6),
  url: z.url().default('http://localhost:3000'),
  paymentPort: z.coerce.number().int().min(1).max(65_535).default(4010),
  env: z.boolean().default(false),
});
export type DemoArgs = z.infer<typeof DemoArgsSchema>;

export const DEMO_USAGE =
  'usage: npm run demo -- [--minutes 3] [--rate 6] [--url http://localhost:3000] [--payment-port 4010]\n' +
  '       npm run -s demo -- --env    (prints the settings to start the platform with: env $(…) npm start)\n';

/** `--minutes 0.5 --rate 10 --url … --payment-port … --env` → the demo's settings (throws on anything else). */
export function parseDemoArgs(argv: readonly string[]): DemoArgs {
  const raw: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new Error(`unexpected argument: ${arg}`);
    const key = m[1]!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (key === 'env') {
      raw.env = true;
      continue;
    }
    if (!['minutes', 'rate', 'url', 'paymentPort'].includes(key))
      throw new Error(`unknown option: --${m[1]}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`--${m[1]} needs a value`);
    raw[key] = value;
  }
  const parsed = DemoArgsSchema.safeParse(raw);
  if (!parsed.success) {
    throw new Error(parsed.error.issues.map((i) => `--${String(i.path[0])}: ${i.message}`).join('; '));
  }
  return parsed.data;
}

const sha256hex = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/**
 * The environment the platform needs for the demo: the demo's keys (and `dev`, so the README's examples
 * keep working), the marketplace's sub-tenants, and the payment service the demo runs.
 */
export function demoEnv(paymentPort: number): Record<string, string> {
  const keys = [
    `dev:admin:${sha256hex('dev')}:10000/10000`,
    ...DEMO_PRODUCERS.map((p) => `${p.id}:orders:write+orders:read:${sha256hex(p.secret)}:10000/10000`),
  ];
  return {
    API_KEYS: keys.join(','),
    TENANTS: 'marketplace:weight=2;sub_tenants=on',
    PAYMENT_URL: `http://127.0.0.1:${paymentPort}/authorize`,
  };
}

/** The same order always gets the same answer: about one in ten is declined. */
export function paymentDecision(orderId: string, customerId: string): { status: number; body: unknown } {
  if (customerId === 'c-poison') return { status: 400, body: { error: 'customer record is corrupt' } };
  const declined = parseInt(sha256hex(orderId).slice(0, 8), 16) % 10 === 0;
  return declined
    ? { status: 200, body: { approved: false, reason: 'insufficient funds' } }
    : { status: 200, body: { approved: true } };
}

interface PaymentService {
  calls: number;
  close(): Promise<void>;
}

async function startPaymentService(port: number): Promise<PaymentService | undefined> {
  const service = { calls: 0, close: () => Promise.resolve() };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      service.calls++;
      let body: { orderId?: string; customerId?: string } = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
      } catch {
        /* answered as a malformed request below */
      }
      const answer = body.orderId
        ? paymentDecision(body.orderId, body.customerId ?? '')
        : { status: 400, body: { error: 'no orderId' } };
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
    });
  });
  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (!listening) return undefined;
  service.close = () => new Promise<void>((r) => server.close(() => r()));
  process.stdout.write(
    `demo: payment service on http://127.0.0.1:${(server.address() as AddressInfo).port}/authorize\n`,
  );
  return service;
}

interface Producer {
  id: string;
  key: string;
  subTenants: readonly string[];
  share: number;
}

interface Sent {
  producer: Producer;
  orderId: string;
  customerId: string;
}

const SKUS = ['kettle', 'mug', 'teapot', 'filter', 'grinder', 'scale', 'beans-1kg', 'beans-250g'];
const CURRENCIES = ['EUR', 'EUR', 'EUR', 'USD', 'USD', 'GBP', 'CHF', 'JPY'];
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

function randomOrder(customerId: string, currency = pick(CURRENCIES)) {
  const items = Array.from({ length: 1 + Math.floor(Math.random() * 3) }, () => ({
    sku: pick(SKUS),
    quantity: 1 + Math.floor(Math.random() * 3),
    unitPriceCents: 250 + Math.floor(Math.random() * 40) * 125,
  }));
  return { customerId, currency, items };
}

async function call(
  base: string,
  path: string,
  key: string,
  init: { method?: string; json?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, {
    method: init.method ?? (init.json === undefined ? 'GET' : 'POST'),
    headers: {
      authorization: `Bearer ${key}`,
      ...(init.json === undefined ? {} : { 'content-type': 'application/json' }),
      ...init.headers,
    },
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
  });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    body = { text };
  }
  return { status: res.status, body };
}

/** Runs the demo; resolves with what it did (also printed). */
export async function runDemo(args: DemoArgs, env: Record<string, string | undefined> = process.env) {
  const base = args.url.replace(/\/$/, '');
  const out = (line: string) => process.stdout.write(`demo: ${line}\n`);
  const ready = await fetch(`${base}/readyz`).catch(() => undefined);
  if (!ready?.ok) throw new Error(`nothing ready at ${base} (start the platform first: npm start)`);

  const withKeys = (await call(base, '/v1/stats?days=1', DEMO_PRODUCERS[0].secret)).status !== 401;
  const producers: Producer[] = withKeys
    ? DEMO_PRODUCERS.map((p) => ({ id: p.id, key: p.secret, subTenants: p.subTenants, share: p.share }))
    : [{ id: 'dev', key: 'dev', subTenants: [], share: 1 }];
  if (!withKeys) {
    out('the platform does not know the demo keys: posting with the dev key only, no payment declines.');
    out('For several producers and declines: env $(npm run -s demo -- --env) npm start');
  }
  const admin = 'dev';
  const payment = withKeys ? await startPaymentService(args.paymentPort) : undefined;
  if (withKeys && !payment)
    out(`port ${args.paymentPort} is taken: is another demo running? Payments will wait.`);

  const sent: Sent[] = [];
  const counts = { accepted: 0, refused: 0, unsupportedCurrency: 0, refunds: 0, batchOrders: 0 };
  let batchId: string | undefined;
  let poisonOrderId: string | undefined;
  const started = Date.now();
  const endAt = started + args.minutes * 60_000;
  const runId = started.toString(36);

  const post = async (producer: Producer, order: ReturnType<typeof randomOrder>, n: number) => {
    const tenant = producer.subTenants.length > 0 ? pick(producer.subTenants) : undefined;
    const res = await call(base, '/v1/orders', producer.key, {
      json: order,
      headers: {
        'idempotency-key': `demo-${runId}-${producer.id}-${n}`,
        ...(tenant ? { 'conveyor-tenant': tenant } : {}),
      },
    });
    if (res.status === 202) {
      counts.accepted++;
      const orderId = String(res.body.orderId);
      sent.push({ producer, orderId, customerId: order.customerId });
      return orderId;
    }
    counts.refused++;
    return undefined;
  };

  // A foreign producer's malformed job, straight into the orders queue: dead-lettered at once.
  const config = loadConfig(env, { modules: MODULES });
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: 1 });
  const queue = new Queue(OrdersQueues.commands, { connection: redis, prefix: config.redis.queuePrefix });
  const foreignJobId = `demo-foreign-${runId}`;
  try {
    await queue.add(PLACE_ORDER_JOB, { hello: 'world', note: 'not an order' }, { jobId: foreignJobId });
    out(`posted a malformed job straight to the orders queue (job id ${foreignJobId})`);
  } catch (err) {
    out(`could not reach Redis for the malformed job: ${(err as Error).message}`);
  } finally {
    await queue.close();
    redis.disconnect();
  }

  let n = 0;
  const duration = endAt - started;
  let nextRefundAt = started + Math.min(10_000, duration / 4);
  const batchAt = started + Math.min(20_000, duration / 3);
  const interval = 1_000 / args.rate;
  // Posts leave at the rate asked whatever the answers take (at most 64 in flight).
  const inFlight = new Set<Promise<unknown>>();
  const launch = (work: Promise<unknown>) => {
    const p = work.catch((err: unknown) => out(`request failed: ${(err as Error).message}`));
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const refundOne = async () => {
    // An order decided `completed` among the earlier ones (`Prefer: wait` until each is decided).
    for (const target of sent
      .slice(0, Math.max(1, sent.length - 5))
      .sort(() => Math.random() - 0.5)
      .slice(0, 8)) {
      const order = await call(base, `/v1/orders/${target.orderId}`, target.producer.key, {
        headers: { prefer: 'wait=5' },
      });
      if (order.body.status !== 'completed') continue;
      const total = Number(order.body.totalCents);
      const tooMuch = counts.refunds === 1; // the second refund asks for more than the order's total
      const res = await call(base, `/v1/orders/${target.orderId}/refunds`, target.producer.key, {
        json: { amountCents: tooMuch ? total + 100 : Math.max(1, Math.floor(total / 4)), reason: 'demo' },
        headers: { 'idempotency-key': `demo-${runId}-refund-${counts.refunds}`, prefer: 'wait=5' },
      });
      counts.refunds++;
      out(
        `refund of order ${target.orderId}${tooMuch ? ' (more than its total)' : ''}: ${String(res.body.status ?? res.status)}` +
          (typeof res.body.lastError === 'string' ? ` (${res.body.lastError})` : ''),
      );
      return;
    }
  };
  try {
    while (Date.now() < endAt) {
      const tickStart = Date.now();
      const r = Math.random();
      let acc = 0;
      const producer = producers.find((p) => (acc += p.share) >= r) ?? producers[0]!;
      const customer = `c-${producer.id}-${1 + Math.floor(Math.random() * 40)}`;
      n++;
      if (n === 5 && withKeys) {
        launch(
          post(producer, randomOrder('c-poison', 'EUR'), n).then((id) => {
            poisonOrderId = id;
            if (id) out(`posted order ${id}: its payment request keeps being refused (400)`);
          }),
        );
      } else if (Math.random() < 0.04) {
        counts.unsupportedCurrency++;
        launch(post(producer, randomOrder(customer, 'SEK'), n));
      } else {
        launch(post(producer, randomOrder(customer), n));
      }

      if (!batchId && Date.now() >= batchAt) {
        const batchProducer = producers.find((p) => p.id === 'warehouse') ?? producers[0]!;
        const orders = Array.from({ length: 200 }, (_, i) => randomOrder(`c-restock-${i % 20}`, 'EUR'));
        batchId = 'posting';
        const res = await call(base, '/v1/orders/batch', batchProducer.key, {
          json: { orders },
          headers: { 'idempotency-key': `demo-${runId}-batch` },
        });
        batchId = typeof res.body.batchId === 'string' ? res.body.batchId : undefined;
        counts.batchOrders = Array.isArray(res.body.orders) ? res.body.orders.length : 0;
        out(
          `posted a batch of ${counts.batchOrders} orders as ${batchProducer.id} (batch ${batchId ?? '?'})`,
        );
        batchId ??= 'failed';
      }

      if (Date.now() >= nextRefundAt && sent.length > 10) {
        nextRefundAt = Date.now() + 15_000;
        launch(refundOne());
      }
      while (inFlight.size >= 64) await Promise.race(inFlight);
      const wait = interval - (Date.now() - tickStart);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    await Promise.all(inFlight);

    // The outcomes, read back in pages of 100.
    const outcomes: Record<string, number> = {};
    const examples: Record<string, string> = {};
    for (const producer of producers) {
      const ids = sent.filter((s) => s.producer === producer).map((s) => s.orderId);
      for (let i = 0; i < ids.length; i += 100) {
        const res = await call(base, `/v1/orders?ids=${ids.slice(i, i + 100).join(',')}`, producer.key);
        for (const o of (res.body.orders ?? []) as {
          orderId: string;
          status: string;
          lastError?: string;
        }[]) {
          const key =
            o.status === 'rejected' && o.lastError ? `rejected (${o.lastError.split(':')[0]})` : o.status;
          outcomes[key] = (outcomes[key] ?? 0) + 1;
          examples[key] ??= o.orderId;
        }
      }
    }
    const dead = await call(base, '/v1/dead-letters?status=pending', admin);
    const dash = base.replace(/:3000$/, ':3001');
    out(
      `${args.minutes} min: ${counts.accepted} orders accepted from ${producers.map((p) => p.id).join(', ')}` +
        ` (${counts.unsupportedCurrency} in an unsupported currency), ${counts.refused} refused, ` +
        `${counts.refunds} refunds, ${counts.batchOrders} orders in a batch` +
        (payment ? `, ${payment.calls} payment calls answered` : ''),
    );
    out(`outcomes so far: ${JSON.stringify(outcomes)}`);
    out(`pending dead letters: ${Array.isArray(dead.body.deadLetters) ? dead.body.deadLetters.length : '?'}`);
    out('Where to look (admin / conveyor):');
    out(`  ${dash}/dashboard                      the Overview: queues, dead letters, breakers`);
    out(`  ${dash}/dashboard/dead-letters         the malformed job and the refused order: inspect, redrive`);
    out(`  ${dash}/dashboard/tenants              the producers taking turns`);
    for (const [status, id] of Object.entries(examples)) {
      if (id !== poisonOrderId) out(`  ${dash}/dashboard/orders/${id}   a ${status} order's story`);
    }
    if (poisonOrderId) {
      out(
        `  ${dash}/dashboard/orders/${poisonOrderId}   retried, then dead-lettered (its attempts take ~30 s)`,
      );
    }
    if (batchId && batchId !== 'failed') {
      out(`  ${base}/v1/batches/${batchId}   the batch's progress (key of the warehouse)`);
    }
    out(`  ${base}/metrics                      conveyor_* series`);
    return { counts, outcomes, batchId, poisonOrderId, foreignJobId };
  } finally {
    await payment?.close();
  }
}

async function main(): Promise<void> {
  let args: DemoArgs;
  try {
    args = parseDemoArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${DEMO_USAGE}`);
    process.exit(2);
  }
  if (args.env) {
    for (const [k, v] of Object.entries(demoEnv(args.paymentPort))) process.stdout.write(`${k}=${v}\n`);
    return;
  }
  await runDemo(args);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
