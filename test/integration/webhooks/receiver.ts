import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One POST a receiver got: headers as Standard Webhooks verifiers take them, the raw body, when. */
export interface Received {
  headers: Record<string, string>;
  body: string;
  at: number;
  /** What the receiver answered (0 while it hangs). */
  status: number;
}

/** What a receiver does with its n-th request (1-based): answer a status, or hang (never answer). */
export type Behaviour = (n: number, req: IncomingMessage) => number | 'hang';

/** A real HTTP receiver on 127.0.0.1 whose answers a test scripts. */
export interface Receiver {
  url: string;
  received: Received[];
  /** Changes what it answers from now on. */
  behave(behaviour: Behaviour): void;
  close(): Promise<void>;
}

export async function startReceiver(behaviour: Behaviour = () => 200): Promise<Receiver> {
  let behave = behaviour;
  const received: Received[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      const entry: Received = {
        headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
        status: 0,
      };
      received.push(entry);
      const answer = behave(received.length, req);
      if (answer === 'hang') return; // the socket stays open until the sender gives up or close()
      entry.status = answer;
      res.writeHead(answer, { 'content-type': 'text/plain' }).end(answer < 300 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    received,
    behave: (b) => (behave = b),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
