import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { DeadLetterSink } from '../../dead-letters/dead-letter.ts';
import { PoisonMessageError } from '../../errors/domain.ts';
import type { Logger } from '../../observability/logger.ts';
import { fatalOrLog, superviseLoop, type OnFatal } from '../../runtime/lifecycle.ts';
import { backoffDelayMs, decodeEvent, EventHeaders } from '../codec.ts';
import { carrierFromHeaders } from '../../observability/tracing/trace-context.ts';
import type { EventHandler } from '../event-bus.ts';
import { createConfirmPublisher, type ConfirmPublisher } from './confirm.ts';
import { pause } from '../../runtime/deadline.ts';
import { forceCloseConnection, whenClosed } from './connection.ts';
import { copyOf, deadLetterRecord, intHeader, RabbitmqHeaders } from './messages.ts';
import {
  deadLetterExchange,
  declareExchanges,
  declareGroup,
  detectQueueType,
  retryQueueFor,
  type GroupTopology,
  type TopologyConfig,
} from './topology.ts';

export interface ConsumerOptions {
  topology: GroupTopology;
  topologyConfig: TopologyConfig;
  /** Opens a fresh connection (one per session: a reconnect gets a new one). */
  connect: () => Promise<ChannelModel>;
  handler: EventHandler;
  deadLetters: DeadLetterSink;
  log: Logger;
  prefetch: number;
  maxAttempts: number;
  deliveryLimit: number;
  confirmTimeoutMs: number;
  shutdownGraceMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** How long reconnecting may keep failing (broker down, unreachable) before the consumer gives up. */
  recoveryBudgetMs: number;
  /** Told when the consumer gave up (see {@link createConsumer}). Absent: logged only. */
  onFatal?: OnFatal | undefined;
}

/**
 * AMQP replies no reconnect can change: 403 ACCESS_REFUSED (credentials, permissions), 406
 * PRECONDITION_FAILED (someone declared our exchange or queue with other arguments), 530 NOT_ALLOWED
 * (vhost). amqplib puts the code on channel errors and only in the message of a refused handshake.
 */
const PERMANENT_REPLY_CODES = new Set([403, 406, 530]);

function isPermanent(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code =
    'code' in err && typeof err.code === 'number' ? err.code : Number(/\b(\d{3}) \(/.exec(err.message)?.[1]);
  return PERMANENT_REPLY_CODES.has(code);
}

export interface Consumer {
  /** Opens the first session; rejects when the broker is unreachable or the topology is refused. */
  start(): Promise<void>;
  /** Idempotent: cancels, waits for in-flight handlers up to the grace period, closes. */
  close(): Promise<void>;
}

/** One connection + confirm channel: deliveries, acks, retry and dead-letter publishes all use it. */
interface Session {
  model: ChannelModel;
  channel: ConfirmChannel;
  publisher: ConfirmPublisher;
  consumerTag: string;
  closed: Promise<Error | undefined>;
  open: boolean;
}

/**
 * A consumer group on its own connection: bounded prefetch, manual acks after the handler resolved,
 * retries through the TTL delay queues, dead letters to `<queue>.dlq` and the dead-letter sink, and a
 * supervisor that reconnects with exponential backoff whenever the connection or channel is lost.
 * Reconnecting rides out an outage for `recoveryBudgetMs`; past it, or at once when the broker refuses
 * what no retry changes (a re-declare answered 406, refused credentials: {@link PERMANENT_REPLY_CODES}),
 * the consumer gives up and `onFatal` hears why: a restart, or an operator, has to step in.
 */
export function createConsumer(o: ConsumerOptions): Consumer {
  const log = o.log.child({ queue: o.topology.queue, group: o.topology.group });
  const onFatal = fatalOrLog(o.onFatal, log);
  const stop = new AbortController();
  const inFlight = new Set<Promise<void>>();
  let current: Session | undefined;
  let supervisor: Promise<void> | undefined;
  let closing: Promise<void> | undefined;

  async function openSession(): Promise<Session> {
    const model = await o.connect();
    try {
      const channel = await model.createConfirmChannel();
      channel.on('error', (err: Error) => log.warn({ err }, 'amqp consumer channel error'));
      const closed = whenClosed(model, channel);
      const queueType = detectQueueType(model);
      await declareExchanges(channel, o.topologyConfig.exchange);
      await declareGroup(channel, o.topologyConfig.exchange, o.topology, {
        queueType,
        deliveryLimit: o.deliveryLimit,
      });
      await channel.prefetch(o.prefetch);
      const session: Session = {
        model,
        channel,
        publisher: createConfirmPublisher(channel),
        consumerTag: '',
        closed,
        open: true,
      };
      void closed.then(() => (session.open = false));
      const { consumerTag } = await channel.consume(
        o.topology.queue,
        (msg) => {
          // null = the broker cancelled us (queue deleted): drop the session, the supervisor redeclares.
          if (msg === null) return void forceCloseConnection(model, 1_000);
          const work = processDelivery(session, msg).finally(() => inFlight.delete(work));
          inFlight.add(work);
        },
        { noAck: false },
      );
      session.consumerTag = consumerTag;
      return session;
    } catch (err) {
      await forceCloseConnection(model, 1_000);
      throw err;
    }
  }

  async function supervise(first: Session): Promise<void> {
    let session = first;
    for (;;) {
      const reason = await session.closed;
      current = undefined;
      await forceCloseConnection(session.model, 1_000); // when only the channel died
      if (stop.signal.aborted) return;
      log.warn({ err: reason }, 'amqp consumer connection lost; reconnecting');
      const lostAt = Date.now();
      for (let attempt = 1; ; attempt++) {
        await pause(backoffDelayMs(attempt, o.reconnectMinMs, o.reconnectMaxMs), stop.signal);
        if (stop.signal.aborted) return;
        try {
          session = await openSession();
          break;
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          if (isPermanent(err))
            throw new Error(`the broker refuses what a reconnect needs: ${message}`, { cause: err });
          if (Date.now() - lostAt >= o.recoveryBudgetMs)
            throw new Error(`could not reconnect for ${o.recoveryBudgetMs} ms: ${message}`, { cause: err });
          log.warn({ err, attempt }, 'amqp consumer reconnect failed');
        }
      }
      if (stop.signal.aborted) {
        await forceCloseConnection(session.model, 1_000);
        return;
      }
      current = session;
      log.info('amqp consumer reconnected');
    }
  }

  /** Acks/nacks only on the channel the message came from; on a dead channel the broker requeues it. */
  function settle(session: Session, msg: ConsumeMessage, ack: boolean): void {
    if (!session.open) return;
    try {
      if (ack) session.channel.ack(msg);
      else session.channel.nack(msg, false, true);
    } catch (err) {
      log.debug({ err }, 'settle on a closing channel skipped; the broker will redeliver');
    }
  }

  async function deadLetter(
    session: Session,
    msg: ConsumeMessage,
    error: Error,
    attempts: number,
    orderId: string | null,
  ): Promise<void> {
    const record = deadLetterRecord(o.topology.queue, msg, error, attempts, orderId);
    const copy = copyOf(
      msg,
      { exchange: deadLetterExchange(o.topologyConfig.exchange), routingKey: o.topology.queue },
      {
        [RabbitmqHeaders.error]: error.message.slice(0, 1_000),
        [RabbitmqHeaders.attempts]: attempts,
        [RabbitmqHeaders.originQueue]: o.topology.queue,
      },
    );
    await session.publisher.publish([copy], o.confirmTimeoutMs);
    await o.deadLetters.record(record);
    log.warn(
      { deadLetterId: record.id, correlationId: record.correlationId, attempts, err: error },
      'event dead-lettered',
    );
  }

  async function retry(session: Session, msg: ConsumeMessage, attempt: number, error: Error): Promise<void> {
    const target = retryQueueFor(o.topologyConfig, o.topology, attempt);
    const firstFailedAt = msg.properties.headers?.[RabbitmqHeaders.firstFailedAt];
    const copy = copyOf(
      msg,
      { exchange: '', routingKey: target.name },
      {
        [RabbitmqHeaders.attempt]: attempt + 1,
        [RabbitmqHeaders.firstFailedAt]:
          typeof firstFailedAt === 'string' ? firstFailedAt : new Date().toISOString(),
      },
    );
    await session.publisher.publish([copy], o.confirmTimeoutMs);
    log.info(
      { correlationId: copy.options.correlationId, attempt, delayMs: target.ttlMs, err: error },
      'event scheduled for retry',
    );
  }

  async function processDelivery(session: Session, msg: ConsumeMessage): Promise<void> {
    const headers = msg.properties.headers;
    const attempt = intHeader(headers, RabbitmqHeaders.attempt) ?? 1;
    const redeliveries = intHeader(headers, 'x-delivery-count') ?? 0;
    let orderId: string | null = null;
    try {
      // The quorum queue would dead-letter the next return on its own, without our record: the
      // consumer keeps dying on this message (crash, OOM, kill), so stop trying it here.
      if (redeliveries >= o.deliveryLimit) {
        throw new PoisonMessageError(
          `delivered ${redeliveries + 1} times without an ack (consumer crashed?)`,
        );
      }
      const event = decodeEvent(msg.content);
      orderId = event.key;
      await o.handler(event, { attempt, transport: 'rabbitmq', trace: carrierFromHeaders(headers) });
      settle(session, msg, true);
      return;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      try {
        if (error instanceof PoisonMessageError || attempt >= o.maxAttempts) {
          await deadLetter(session, msg, error, attempt, orderId);
        } else {
          await retry(session, msg, attempt, error);
        }
        // Only now: the copy is confirmed by the broker (and the dead letter recorded).
        settle(session, msg, true);
      } catch (failure) {
        // Neither retried nor dead-lettered: keep the original. Hold it a moment so a broken sink or
        // DLQ does not turn into a hot redelivery loop, then requeue.
        log.error(
          { err: failure, cause: error, correlationId: headers?.[EventHeaders.correlationId] },
          'event could not be retried or dead-lettered; requeued',
        );
        await pause(backoffDelayMs(redeliveries + 1, o.reconnectMinMs, o.reconnectMaxMs), stop.signal);
        settle(session, msg, false);
      }
    }
  }

  async function waitForInFlight(deadline: number): Promise<void> {
    while (inFlight.size > 0 && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...inFlight]),
        new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now())))),
      ]);
      clearTimeout(timer);
    }
    if (inFlight.size > 0)
      log.warn({ inFlight: inFlight.size }, 'shutdown grace elapsed; unacked events will be redelivered');
  }

  return {
    async start() {
      const session = await openSession();
      current = session;
      supervisor = superviseLoop(
        `rabbitmq consumer ${o.topology.queue}`,
        supervise(session),
        onFatal,
        () => stop.signal.aborted,
      );
    },
    close() {
      closing ??= (async () => {
        const deadline = Date.now() + o.shutdownGraceMs;
        stop.abort();
        const session = current;
        if (session?.open) {
          // Stop new deliveries first; handlers already running finish and ack on this channel.
          await session.channel.cancel(session.consumerTag).catch(() => undefined);
        }
        await waitForInFlight(deadline);
        if (session) await forceCloseConnection(session.model, Math.max(1_000, deadline - Date.now()));
        await supervisor;
      })();
      return closing;
    },
  };
}
