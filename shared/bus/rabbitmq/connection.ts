import { connect, type ChannelModel } from 'amqplib';
import type { Logger } from '../../observability/logger.ts';

export interface AmqpConnectOptions {
  url: string;
  /** Shown in the RabbitMQ management UI and `rabbitmqctl list_connections`. */
  connectionName: string;
  /** Dead-peer detection; a half-open TCP connection is noticed after about twice this. */
  heartbeatSeconds: number;
  /** Bound on TCP connect + AMQP handshake, so a black-holed broker fails fast. */
  connectTimeoutMs: number;
}

/**
 * Opens one AMQP connection with a heartbeat and a connect timeout, and with an `error` listener
 * attached before anything else can happen (an unhandled `error` event would crash the process).
 * @example const model = await openAmqpConnection({ url, connectionName: 'conveyor-publisher', heartbeatSeconds: 10, connectTimeoutMs: 5_000 }, log);
 */
export async function openAmqpConnection(options: AmqpConnectOptions, log: Logger): Promise<ChannelModel> {
  const url = new URL(options.url);
  // An explicit ?heartbeat= in the URL wins: operators may tune it per environment.
  if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(options.heartbeatSeconds));
  const model = await connect(url.toString(), {
    timeout: options.connectTimeoutMs,
    clientProperties: { connection_name: options.connectionName },
  });
  const connection = options.connectionName;
  model.on('error', (err: Error) => log.warn({ err, connection }, 'amqp connection error'));
  // A resource alarm (memory, disk) blocks publishing connections: confirms stop until it clears.
  model.on('blocked', (reason: string) =>
    log.warn({ connection, reason }, 'amqp connection blocked by the broker'),
  );
  model.on('unblocked', () => log.info({ connection }, 'amqp connection unblocked'));
  return model;
}

/**
 * Destroys the socket under a channel model (amqplib does not type it, so it is looked up
 * defensively). With an error: amqplib only notices a socket's `error` or `end`, not a bare `close`.
 */
function destroySocket(model: ChannelModel, reason: Error): void {
  const connection: unknown = model.connection;
  if (typeof connection !== 'object' || connection === null || !('stream' in connection)) return;
  const stream: unknown = connection.stream;
  if (typeof stream !== 'object' || stream === null || !('destroy' in stream)) return;
  const destroy: unknown = stream.destroy;
  if (typeof destroy === 'function') destroy.call(stream, reason);
}

/**
 * Closes a connection politely within `graceMs`, then destroys its socket. A polite close waits for
 * the broker's close-ok, which never comes over a dead or black-holed link; destroying the socket
 * makes amqplib fail every pending operation and emit `close`, so nothing is left hanging.
 */
export async function forceCloseConnection(model: ChannelModel, graceMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const polite = model.close().then(
    () => true,
    () => false,
  );
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), graceMs);
  });
  const closed = await Promise.race([polite, timedOut]);
  clearTimeout(timer);
  if (!closed) destroySocket(model, new Error(`amqp connection forced closed after ${graceMs} ms`));
}

/** Resolves once the model or the channel closes, with the reason when there is one. */
export function whenClosed(
  ...emitters: { once(event: 'close', listener: (err?: Error) => void): unknown }[]
): Promise<Error | undefined> {
  return new Promise((resolve) => {
    for (const emitter of emitters) emitter.once('close', (err?: Error) => resolve(err));
  });
}
