// The local webhook receiver of `npm run bench -- --results`, forked as a process of its own: a
// node:http server answering 204 to every POST at /<endpoint name>, checking each delivery's Standard
// Webhooks signature (its own HMAC-SHA256, independent of the platform's code) and counting deliveries
// per endpoint by webhook-id. Commands arrive over IPC; every command is answered once.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { z } from 'zod';

const ReceiverCommand = z.discriminatedUnion('type', [
  /** The signing secret (`whsec_<base64>`) of each endpoint, by name (the URL path without `/`). */
  z.object({ type: z.literal('secrets'), secrets: z.record(z.string(), z.string().startsWith('whsec_')) }),
  z.object({ type: z.literal('status') }),
  z.object({ type: z.literal('report') }),
]);

interface EndpointTally {
  received: number;
  ids: Set<string>;
  duplicates: number;
  badSignatures: number;
  orderIds: string[];
  firstMs: number;
  lastMs: number;
}

const send = (message: unknown) => process.send?.(message);
const keys = new Map<string, Buffer>();
const tallies = new Map<string, EndpointTally>();
let total = 0;

/** Standard Webhooks: base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`)) among the `v1,<sig>` entries. */
function signatureOk(key: Buffer, id: string, timestamp: string, body: string, header: string): boolean {
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return header.split(' ').some((entry) => {
    const [version, sig] = entry.split(',');
    if (version !== 'v1' || !sig) return false;
    const got = Buffer.from(sig, 'base64');
    return got.length === expected.length && timingSafeEqual(got, expected);
  });
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const now = performance.timeOrigin + performance.now();
    res.writeHead(204).end();
    const name = (req.url ?? '/').slice(1);
    const body = Buffer.concat(chunks).toString('utf8');
    const id = String(req.headers['webhook-id'] ?? '');
    let t = tallies.get(name);
    if (!t) {
      t = {
        received: 0,
        ids: new Set(),
        duplicates: 0,
        badSignatures: 0,
        orderIds: [],
        firstMs: now,
        lastMs: now,
      };
      tallies.set(name, t);
    }
    total += 1;
    t.received += 1;
    t.lastMs = now;
    if (t.ids.has(id)) t.duplicates += 1;
    t.ids.add(id);
    const key = keys.get(name);
    const ok =
      key !== undefined &&
      signatureOk(
        key,
        id,
        String(req.headers['webhook-timestamp'] ?? ''),
        body,
        String(req.headers['webhook-signature'] ?? ''),
      );
    if (!ok) t.badSignatures += 1;
    try {
      const orderId = (JSON.parse(body) as { data?: { orderId?: unknown } }).data?.orderId;
      if (typeof orderId === 'string') t.orderIds.push(orderId);
    } catch {
      /* counted as received; its order is then missing from the check */
    }
  });
});
server.keepAliveTimeout = 5_000;

process.on('message', (raw) => {
  const parsed = ReceiverCommand.safeParse(raw);
  if (!parsed.success) return send({ type: 'error', error: parsed.error.message });
  const c = parsed.data;
  if (c.type === 'secrets') {
    for (const [name, secret] of Object.entries(c.secrets)) {
      keys.set(name, Buffer.from(secret.slice('whsec_'.length), 'base64'));
    }
    return send({ type: 'ok' });
  }
  if (c.type === 'status') return send({ type: 'status', total });
  const endpoints = Object.fromEntries(
    [...tallies].map(([name, t]) => [
      name,
      {
        received: t.received,
        uniqueIds: t.ids.size,
        duplicates: t.duplicates,
        badSignatures: t.badSignatures,
        orderIds: t.orderIds,
        firstMs: t.firstMs,
        lastMs: t.lastMs,
      },
    ]),
  );
  send({ type: 'report', total, endpoints });
});
process.on('disconnect', () => process.exit(0));
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  send({ type: 'listening', port: typeof address === 'object' && address ? address.port : 0 });
});
