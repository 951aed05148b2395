import type { ConfirmChannel, Message, Options } from 'amqplib';

/** One message to publish; `messageId` is required so a `basic.return` can be matched to it. */
export interface OutgoingMessage {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish & { messageId: string };
}

/** The broker did not confirm within our own deadline (amqplib would wait forever on a dead link). */
export class ConfirmTimeoutError extends Error {
  override readonly name = 'ConfirmTimeoutError';
  constructor(
    readonly timeoutMs: number,
    readonly unconfirmed: number,
  ) {
    super(`broker did not confirm ${unconfirmed} message(s) within ${timeoutMs} ms`);
  }
}

/** The broker could not route a mandatory message to any queue (returned, then confirmed). */
export class UnroutableError extends Error {
  override readonly name = 'UnroutableError';
  constructor(
    readonly exchange: string,
    readonly routingKey: string,
  ) {
    super(`no queue is bound for routing key "${routingKey}" on exchange "${exchange || '(default)'}"`);
  }
}

/** The broker refused a message (`basic.nack`, e.g. a quorum queue over its length limit). */
export class PublishNackedError extends Error {
  override readonly name = 'PublishNackedError';
}

/** The channel closed before every message was confirmed. */
export class ChannelClosedError extends Error {
  override readonly name = 'ChannelClosedError';
  constructor(reason?: Error) {
    super(`amqp channel closed${reason ? `: ${reason.message}` : ''}`, { cause: reason });
  }
}

/** amqplib calls a confirm callback with "message nacked" for a nack and "channel closed" on close. */
function confirmError(err: unknown, messageId: string): Error {
  const reason = err instanceof Error ? err : new Error(String(err));
  if (reason.message === 'message nacked')
    return new PublishNackedError(`broker nacked message ${messageId}`, { cause: reason });
  return new ChannelClosedError(reason);
}

function isClosed(err: unknown): boolean {
  return err instanceof Error && err.message === 'channel closed';
}

export interface ConfirmPublisher {
  /**
   * Publishes `messages` in order (mandatory) and resolves once the broker confirmed each one.
   * Rejects on a nack, a return, channel close, or when `timeoutMs` passes — whichever comes first.
   */
  publish(messages: readonly OutgoingMessage[], timeoutMs: number): Promise<void>;
}

/**
 * Confirmed publishing on one confirm channel. Honours the channel's write buffer: when `publish`
 * returns false the next message waits for `drain`, so a large batch cannot balloon memory.
 */
export function createConfirmPublisher(channel: ConfirmChannel): ConfirmPublisher {
  // The broker sends basic.return before the basic.ack of the same message, so by the time a
  // confirm callback runs we know whether that message was returned.
  const returned = new Map<string, number>();
  let closed: ChannelClosedError | undefined;
  const failOnClose = new Set<(err: Error) => void>();

  channel.on('return', (msg: Message) => {
    const id: unknown = msg.properties.messageId;
    if (typeof id === 'string') returned.set(id, (returned.get(id) ?? 0) + 1);
  });
  // amqplib reports the server's reason for closing (e.g. 406 "message size … larger than configured
  // max size") on 'error', then emits 'close' without it: keep it, so a refusal for good is told apart.
  let lastError: Error | undefined;
  channel.on('error', (err: Error) => {
    lastError = err;
  });
  channel.once('close', (reason?: Error) => {
    closed = new ChannelClosedError(reason ?? lastError);
    for (const fail of failOnClose) fail(closed);
  });

  function takeReturned(id: string): boolean {
    const n = returned.get(id) ?? 0;
    if (n === 0) return false;
    if (n === 1) returned.delete(id);
    else returned.set(id, n - 1);
    return true;
  }

  function waitForDrain(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        channel.removeListener('drain', done);
        channel.removeListener('close', done);
        resolve();
      };
      channel.on('drain', done);
      channel.on('close', done); // the close itself fails the publish via failOnClose
    });
  }

  return {
    async publish(messages, timeoutMs) {
      if (closed) throw closed;
      if (messages.length === 0) return;
      let pending = messages.length;
      let fail: (err: Error) => void = () => undefined;
      const failed = new Promise<never>((_, reject) => {
        fail = reject;
      });
      failed.catch(() => undefined); // observed through the races below
      const timer = setTimeout(() => fail(new ConfirmTimeoutError(timeoutMs, pending)), timeoutMs);
      failOnClose.add(fail);
      try {
        const confirms: Promise<void>[] = [];
        for (const m of messages) {
          let settle: { resolve: () => void; reject: (err: Error) => void } | undefined;
          const confirmed = new Promise<void>((resolve, reject) => {
            settle = { resolve, reject };
          });
          confirmed.catch(() => undefined); // observed by Promise.all below, even if we bail out early
          confirms.push(confirmed);
          // Throws synchronously (IllegalOperationError) when the channel is already closed.
          const writable = channel.publish(
            m.exchange,
            m.routingKey,
            m.content,
            { ...m.options, mandatory: true },
            (err: unknown) => {
              pending -= 1;
              if (err)
                settle?.reject(
                  confirmError(lastError && isClosed(err) ? lastError : err, m.options.messageId),
                );
              else if (takeReturned(m.options.messageId))
                settle?.reject(new UnroutableError(m.exchange, m.routingKey));
              else settle?.resolve();
            },
          );
          // Backpressure: the socket buffer is full; write the next message only once it drained.
          if (!writable) await Promise.race([waitForDrain(), failed]);
        }
        await Promise.race([Promise.all(confirms), failed]);
      } finally {
        clearTimeout(timer);
        failOnClose.delete(fail);
      }
    },
  };
}
