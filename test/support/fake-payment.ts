import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * How the fake answers: approve, decline, 503, never answer, approve after `delayMs`, refuse the
 * request (400) or answer 200 with something that is not a decision.
 */
export type PaymentMode = 'approve' | 'decline' | 'fail' | 'hang' | 'slow' | 'bad-request' | 'garbled';

export interface PaymentBehaviour {
  mode: PaymentMode;
  /** For `slow`: how long before it answers (approving). @defaultValue 1000 */
  delayMs?: number;
  /** In `approve`/`slow` mode, these customers are declined (a business "no", HTTP 200). */
  declineCustomerIds?: readonly string[];
  reason?: string;
}

export interface PaymentCall {
  orderId: string | undefined;
  customerId: string | undefined;
  idempotencyKey: string | undefined;
  correlationId: string | undefined;
  /** The mode the call was answered in. */
  mode: PaymentMode;
}

export interface FakePayment {
  /** `PAYMENT_URL` for the worker: http://127.0.0.1:PORT/authorize */
  readonly url: string;
  /** Every call received, in arrival order (also the ones still hanging). */
  readonly calls: readonly PaymentCall[];
  set(behaviour: PaymentMode | PaymentBehaviour): void;
  /** Calls received since the last `set()` (how many reached the service in the current mode). */
  callsSinceSet(): number;
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/**
 * A real HTTP payment service for tests (node:http on 127.0.0.1, an ephemeral port) that can be
 * switched between approving, declining, failing with 503, hanging and answering slowly, and that
 * records every call. Not a mock of our code: the worker talks to it over the loopback like production.
 */
export async function startFakePayment(
  initial: PaymentMode | PaymentBehaviour = 'approve',
): Promise<FakePayment> {
  let behaviour: PaymentBehaviour = typeof initial === 'string' ? { mode: initial } : initial;
  let setAt = 0;
  const calls: PaymentCall[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const b = behaviour;
      const call: PaymentCall = {
        orderId: typeof body.orderId === 'string' ? body.orderId : undefined,
        customerId: typeof body.customerId === 'string' ? body.customerId : undefined,
        idempotencyKey: req.headers['idempotency-key'] as string | undefined,
        correlationId: req.headers['x-correlation-id'] as string | undefined,
        mode: b.mode,
      };
      calls.push(call);
      const decide = () =>
        b.mode === 'decline' ||
        (call.customerId !== undefined && b.declineCustomerIds?.includes(call.customerId))
          ? { approved: false, reason: b.reason ?? 'insufficient funds' }
          : { approved: true };
      switch (b.mode) {
        case 'approve':
        case 'decline':
          return send(res, 200, decide());
        case 'fail':
          return send(res, 503, { error: 'payment service unavailable' });
        case 'bad-request':
          return send(res, 400, { error: 'amount missing' });
        case 'garbled':
          return send(res, 200, { status: 'ok' });
        case 'hang':
          return; // never answers; the socket is destroyed by close()
        case 'slow': {
          const timer = setTimeout(() => {
            timers.delete(timer);
            send(res, 200, decide());
          }, b.delayMs ?? 1_000);
          timers.add(timer);
        }
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/authorize`,
    calls,
    set(next) {
      behaviour = typeof next === 'string' ? { mode: next } : next;
      setAt = calls.length;
    },
    callsSinceSet: () => calls.length - setAt,
    close: () =>
      (closing ??= (async () => {
        for (const t of timers) clearTimeout(t);
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })()),
  };
}
