import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import type { BlockList } from 'node:net';
import { checkDestination, checkUrlForm, type DestinationPolicy } from '../ssrf.ts';

/** What one delivery attempt got. */
export type AttemptResult =
  | { ok: true; status: number }
  /** `status` when the receiver answered (not 2xx), absent when it never did (refused, timeout, network). */
  | { ok: false; status?: number; error: string };

export interface PostOptions {
  policy: DestinationPolicy;
  allowed: BlockList;
  /** Bounds the whole attempt: resolution, connect, sending, and the answer (head and body). */
  timeoutMs: number;
  /** Most of the answer's body read; the rest is dropped (the connection closed). */
  maxResponseBytes: number;
}

/**
 * POSTs `body` to `rawUrl` once: the host is resolved and checked ({@link checkDestination}) and the
 * connection pinned to the checked address (a `lookup` that answers it; TLS still verifies the host
 * name). Redirects are not followed (a 3xx is a failed attempt), the attempt is bounded by
 * `timeoutMs`, and at most `maxResponseBytes` of the answer is read. Never throws.
 */
export async function postOnce(
  rawUrl: string,
  headers: Record<string, string>,
  body: string,
  options: PostOptions,
): Promise<AttemptResult> {
  const started = Date.now();
  let url: URL;
  let pinned: { address: string; family: 4 | 6 };
  try {
    url = checkUrlForm(rawUrl);
    pinned = await checkDestination(url, options.policy, options.allowed);
  } catch (err) {
    return { ok: false, error: `destination refused: ${(err as Error).message}` };
  }
  const left = Math.max(1, options.timeoutMs - (Date.now() - started));
  const lookup: LookupFunction = (_host, opts, callback) => {
    if (opts.all) callback(null, [{ address: pinned.address, family: pinned.family }]);
    else callback(null, pinned.address, pinned.family);
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<AttemptResult>((resolve) => {
    let settled = false;
    const finish = (result: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(result);
    };
    const req = send(
      url,
      {
        method: 'POST',
        lookup,
        agent: false,
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      },
      (res: IncomingMessage) => {
        const status = res.statusCode ?? 0;
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          // The answer's body is never needed past a bound: read no more of it.
          if (read >= options.maxResponseBytes) done();
        });
        const done = () =>
          finish(
            status >= 200 && status < 300
              ? { ok: true, status }
              : {
                  ok: false,
                  status,
                  error:
                    status >= 300 && status < 400
                      ? `endpoint answered ${status} (redirects are not followed)`
                      : `endpoint answered ${status}`,
                },
          );
        res.on('end', done);
        res.on('error', done);
      },
    );
    const timer = setTimeout(
      () => finish({ ok: false, error: `no answer within ${options.timeoutMs} ms` }),
      left,
    );
    req.on('error', (err) => finish({ ok: false, error: err.message || String(err) }));
    req.end(body);
  });
}
