import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { DeadLetterSink, NewDeadLetter } from '../../dead-letters/dead-letter.ts';
import { createDeliveryCore, type DeliveryCoreDeps, type Inbound } from '../../delivery/core.ts';
import { PoisonMessageError } from '../../delivery/outcome.ts';
import type { DeliveryPolicy, DeliveryState } from '../../delivery/policy.ts';
import type { Logger } from '../../observability/logger.ts';
import { carrierFromHeaders } from '../../observability/tracing/trace-context.ts';
import { pause } from '../../runtime/deadline.ts';
import { fatalOrLog, superviseLoop, type OnFatal } from '../../runtime/lifecycle.ts';
import { backoffDelayMs, decodeEvent, EventHeaders } from '../codec.ts';
import type { EventHandler } from '../event-bus.ts';
import {
  ChannelClosedError,
  createConfirmPublisher,
  UnroutableError,
  type ConfirmPublisher,
  type OutgoingMessage,
} from './confirm.ts';
import { forceCloseConnection, whenClosed } from './connection.ts';
import { copyOf, deadLetterRecord, intHeader, originalHeaders, RabbitmqHeaders } from './messages.ts';
import {
  declareExchanges,
  declareGroup,
  delayQueueFor,
  detectQueueType,
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
  /** Told each verdict carried out (metrics). */
  onVerdict?: DeliveryCoreDeps['onVerdict'];
  log: Logger;
  prefetch: number;
  /** Attempts, backoff and snooze delays: the delivery core's (see `shared/delivery`). */
  policy: DeliveryPolicy;
  /**
   * Deliveries without an ack (crashes, lost connections) after which the consumer dead-letters a
   * message without running its handler again: the quorum queue's `x-delivery-limit`.
   */
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

/** One connection + confirm channel: deliveries, acks and hand-back and dead-letter publishes all use it. */
interface Session {
  model: ChannelModel;
  channel: ConfirmChannel;
  publisher: ConfirmPublisher;
  /** The work queue's consumer and the `undelivered` queue's. */
  consumerTags: string[];
  closed: Promise<Error | undefined>;
  open: boolean;
}

/** Where a delivery came from: the group's work queue, or what the broker gave up on (see topology.ts). */
type Source = 'work' | 'undelivered';

/** A copy due this close (or earlier) is handled, not held again: clocks of two consumers differ a little. */
const DUE_SLACK_MS = 20;

/**
 * A consumer group on its own connection, an adapter of the delivery core: bounded prefetch, and for
 * each delivery the core decides (ack, retry, snooze, dead letter, park) while this file only carries
 * it out — `ack` on the channel the message came from, `handBack` as a confirmed copy to a delay queue
 * (then the ack), `copyToDeadLetters` as a confirmed copy to `<queue>.dlq`. A decision of ours never
 * returns a message to the broker unacked (nack-requeue): a quorum queue counts each return and past
 * `x-delivery-limit` dead-letters on its own. Only when the transport itself fails (a hand-back or an
 * ack on a dead link) does the message go back, with its channel, and cost a redelivery.
 *
 * A supervisor reconnects with exponential backoff whenever the connection or channel is lost.
 * Reconnecting rides out an outage for `recoveryBudgetMs`; past it, or at once when the broker refuses
 * what no retry changes (a re-declare answered 406, refused credentials: {@link PERMANENT_REPLY_CODES}),
 * the consumer gives up and `onFatal` hears why: a restart, or an operator, has to step in.
 */
export function createConsumer(o: ConsumerOptions): Consumer {
  const log = o.log.child({ queue: o.topology.queue, group: o.topology.group });
  const onFatal = fatalOrLog(o.onFatal, log);
  const core = createDeliveryCore(
    { sink: o.deadLetters, logger: log, onVerdict: o.onVerdict },
    o.policy,
    o.topology.queue,
  );
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
        consumerTags: [],
        closed,
        open: true,
      };
      void closed.then(() => (session.open = false));
      for (const [queue, source] of [
        [o.topology.queue, 'work'],
        [o.topology.undelivered, 'undelivered'],
      ] as const) {
        const { consumerTag } = await channel.consume(
          queue,
          (msg) => {
            // null = the broker cancelled us (queue deleted): drop the session, the supervisor redeclares.
            if (msg === null) return void forceCloseConnection(model, 1_000);
            const work = processDelivery(session, msg, source).finally(() => inFlight.delete(work));
            inFlight.add(work);
          },
          { noAck: false },
        );
        session.consumerTags.push(consumerTag);
      }
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

  /** Acks on the channel the message came from; on a dead channel the broker requeues it anyway. */
  function ack(session: Session, msg: ConsumeMessage): void {
    if (!session.open) throw new ChannelClosedError();
    session.channel.ack(msg);
  }

  /**
   * The core's hand-back: a confirmed copy as `next` to the delay queue of `delayMs` (see
   * `delayQueueFor`; longer than the longest: with `x-due-at`, held again on arrival), then the ack
   * of the original. Never a nack: the broker would count it toward its own dead-lettering.
   */
  async function handBack(
    session: Session,
    msg: ConsumeMessage,
    delayMs: number,
    next: Required<DeliveryState>,
    returns: number,
  ): Promise<void> {
    const target = delayQueueFor(o.topology, delayMs);
    const firstFailedAt = msg.properties.headers?.[RabbitmqHeaders.firstFailedAt];
    const headers: Record<string, string | number> = {
      [RabbitmqHeaders.attempt]: next.attempt,
      [RabbitmqHeaders.firstFailedAt]:
        typeof firstFailedAt === 'string' ? firstFailedAt : new Date().toISOString(),
    };
    if (next.snoozes > 0) headers[RabbitmqHeaders.snoozes] = next.snoozes;
    if (returns > 0) headers[RabbitmqHeaders.returns] = returns;
    if (target && target.ttlMs < delayMs) headers[RabbitmqHeaders.dueAt] = Date.now() + delayMs;
    const copy = copyOf(msg, { exchange: '', routingKey: target?.name ?? o.topology.queue }, headers);
    await publish(session, copy);
    ack(session, msg); // only now: the copy is confirmed by the broker
  }

  /** The core's native dead-letter copy (after the row): confirmed, straight to `<queue>.dlq`. */
  async function copyToDeadLetters(session: Session, msg: ConsumeMessage, record: NewDeadLetter) {
    const copy = copyOf(
      msg,
      { exchange: '', routingKey: o.topology.dlq },
      {
        [RabbitmqHeaders.error]: record.error.slice(0, 1_000),
        [RabbitmqHeaders.attempts]: record.attempts,
        [RabbitmqHeaders.originQueue]: o.topology.queue,
      },
    );
    await publish(session, copy);
  }

  /**
   * A confirmed publish on the session's channel. A copy no queue took (someone deleted a delay queue
   * or the DLQ) also drops the connection: the supervisor reconnects and declares the topology again.
   */
  async function publish(session: Session, copy: OutgoingMessage): Promise<void> {
    try {
      await session.publisher.publish([copy], o.confirmTimeoutMs);
    } catch (err) {
      if (err instanceof UnroutableError && session.open) void forceCloseConnection(session.model, 1_000);
      throw err;
    }
  }

  /**
   * Why a message of `undelivered` failed: the broker gave up on it (past `x-delivery-limit`, as
   * `x-death` says), or it is an earlier version's dead-letter copy (`x-error`), which was routed
   * where the broker's own dead letters now go.
   */
  function givenUp(msg: ConsumeMessage): PoisonMessageError {
    const headers = msg.properties.headers ?? {};
    const earlier: unknown = headers[RabbitmqHeaders.error];
    if (typeof earlier === 'string') return new PoisonMessageError(earlier);
    const deaths: unknown = headers['x-death'];
    const death = Array.isArray(deaths)
      ? (deaths as unknown[]).find(
          (d): d is { reason?: unknown } =>
            typeof d === 'object' && d !== null && (d as { queue?: unknown }).queue === o.topology.queue,
        )
      : undefined;
    const reason = typeof death?.reason === 'string' ? death.reason : 'unknown';
    return new PoisonMessageError(
      `delivered more than ${o.deliveryLimit} times without an ack; the broker gave up on it (${reason})`,
    );
  }

  async function processDelivery(session: Session, msg: ConsumeMessage, source: Source): Promise<void> {
    const headers = msg.properties.headers;
    const state: Required<DeliveryState> = {
      attempt:
        intHeader(headers, RabbitmqHeaders.attempt) ??
        (source === 'undelivered' ? intHeader(headers, RabbitmqHeaders.attempts) : undefined) ??
        1,
      snoozes: intHeader(headers, RabbitmqHeaders.snoozes) ?? 0,
    };
    // Deliveries of this message that ended without an ack: earlier copies' (carried by hand-backs,
    // so a parked message keeps them), this copy's, and the broker's limit when it gave up on it.
    const returns =
      (intHeader(headers, RabbitmqHeaders.returns) ?? 0) +
      (intHeader(headers, 'x-delivery-count') ?? 0) +
      (source === 'undelivered' ? o.deliveryLimit + 1 : 0);
    const original = originalHeaders(headers);
    let subjectId: string | null = original[RabbitmqHeaders.key] ?? null;
    const inbound: Inbound = {
      state,
      actions: {
        ack: async () => ack(session, msg),
        handBack: (delayMs, next) => handBack(session, msg, delayMs, next, returns),
        copyToDeadLetters: (record) => copyToDeadLetters(session, msg, record),
      },
      deadLetter: (error, attempts) => deadLetterRecord(o.topology.queue, msg, error, attempts, subjectId),
      log: {
        correlationId: original[EventHeaders.correlationId],
        eventId: original[EventHeaders.eventId],
        ...(source === 'undelivered' ? { from: o.topology.undelivered } : {}),
      },
    };
    try {
      const dueAt = source === 'work' ? intHeader(headers, RabbitmqHeaders.dueAt) : undefined;
      if (dueAt !== undefined && dueAt - Date.now() > DUE_SLACK_MS) {
        // Handed back for longer than the longest delay queue: not due yet, so wait the rest.
        await handBack(session, msg, dueAt - Date.now(), state, returns);
        return;
      }
      if (source === 'undelivered') {
        await core.settle(inbound, { kind: 'poison', error: givenUp(msg) });
        return;
      }
      // The consumer keeps dying on this message (crash, OOM, kill): stop trying it, and dead-letter
      // it ourselves, with a row, before the quorum queue's own limit.
      if (returns >= o.deliveryLimit) {
        const error = new PoisonMessageError(
          `delivered ${returns + 1} times without an ack (consumer crashed?)`,
        );
        await core.settle(inbound, { kind: 'poison', error });
        return;
      }
      await core.deliver(inbound, async () => {
        const event = decodeEvent(msg.content);
        subjectId = event.key;
        await o.handler(event, {
          attempt: state.attempt,
          transport: 'rabbitmq',
          trace: carrierFromHeaders(headers),
        });
      });
    } catch (err) {
      // The transport failed under a hand-back or an ack (the link died, a confirm never came, the
      // broker refused the copy). The message stays unacked; close the connection so the broker
      // requeues it now rather than when the link times out (a redelivery, counted by the quorum
      // queue), and the supervisor reconnects.
      log.warn(
        { err, ...inbound.log },
        'delivery could not be settled on the broker; it will be redelivered',
      );
      if (session.open) void forceCloseConnection(session.model, 1_000);
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
          for (const tag of session.consumerTags) await session.channel.cancel(tag).catch(() => undefined);
        }
        await waitForInFlight(deadline);
        if (session) await forceCloseConnection(session.model, Math.max(1_000, deadline - Date.now()));
        await supervisor;
      })();
      return closing;
    },
  };
}
