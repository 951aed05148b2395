import { ROOT_CONTEXT } from '@opentelemetry/api';
import pg from 'pg';
import type { EventBus } from '../../shared/bus/event-bus.ts';
import { backoffDelayMs } from '../../shared/bus/codec.ts';
import type { Pool } from '../../shared/db/pool.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import { asError, fatalOrLog, superviseLoop, type OnFatal } from '../../shared/runtime/lifecycle.ts';
import { inBatchSpan, startMessageSpan } from '../../shared/observability/tracing/spans.ts';
import {
  endSpan,
  injectCarrier,
  parseCarrier,
  tracingActive,
  withCarrier,
} from '../../shared/observability/tracing/trace-context.ts';
import { isRefusedForGood, outboxDeadLetter, refusalOf } from '../../shared/delivery/refusal.ts';
import {
  claimBatch,
  markPublished,
  markQuarantined,
  recordQuarantined,
  type OutboxRow,
} from './relay.sql.ts';
import { outboxChannel } from './wake.ts';

export interface RelayConfig {
  databaseUrl: string;
  schema: string;
  batchSize: number;
  /** Safety-net poll; NOTIFY is the real wake-up. */
  pollIntervalMs: number;
}

export interface RelayDeps {
  pool: Pool;
  bus: EventBus;
  logger: Logger;
  /** Test hook: called after publish, before the rows are marked (chaos tests kill here). */
  afterPublish?: (count: number) => Promise<void> | void;
  /**
   * Told when the relay can no longer publish: its publish loop or its LISTEN loop died of an error
   * they do not retry (failed batches and lost connections are retried; anything escaping is a bug or
   * a misconfiguration a restart may clear). Absent: logged only.
   */
  onFatal?: OnFatal | undefined;
  /** Told how many events of a batch the bus refused for good and the relay quarantined (metrics). */
  onQuarantined?: ((count: number) => void) | undefined;
}

export interface Relay {
  /** Publishes until nothing is pending; returns how many events it published. */
  drainOnce(): Promise<number>;
  close(): Promise<void>;
}

/**
 * The error a quarantined event's dead letter names: the publish's failure, and the broker's own
 * refusal when the bus wrapped it in a message of its own.
 */
function brokerError(err: unknown): Error {
  const outer = asError(err);
  const inner = refusalOf(err);
  if (!inner || inner === outer || outer.message.includes(inner.message)) return outer;
  const error = new Error(`${outer.message}: ${inner.message}`, { cause: err });
  error.stack = outer.stack ?? error.stack;
  return error;
}

/** An outbox row the bus refused for good, with the broker's answer. */
interface Refused {
  row: OutboxRow;
  error: Error;
}

/**
 * The transactional-outbox relay: claims unpublished rows in batches, publishes them durably through
 * the event bus, and only then marks them published (at-least-once; consumers deduplicate by event id).
 *
 * Quarantine: when the bus refuses a batch for good ({@link isRefusedForGood}: SQS refusing a
 * character or a size, Kafka's MESSAGE_TOO_LARGE, a RabbitMQ publish over its max size), the relay
 * halves the batch until it has found the events refused alone; those become dead letters (kind
 * event, origin `outbox`, the broker's error) and are marked published and quarantined, in the same
 * transaction that marks the others published. So one event no broker will take never blocks the
 * ones behind it; a redrive of its dead letter (after an operator's fix) publishes it. Any other
 * failure (an outage, a timeout, a closed bus) rolls the batch back and is retried with backoff.
 */
export function createRelay(deps: RelayDeps, config: RelayConfig): Relay {
  const log = deps.logger.child({ component: 'outbox-relay' });
  let running = true;
  let wake: (() => void) | undefined;
  let pendingWake = false;
  const signal = () => {
    pendingWake = true;
    wake?.();
  };

  /**
   * Publishes claimed rows. Tracing on: each event gets a producer span, a child of the context its
   * outbox row carries (the command's), whose W3C headers the bus puts on the message (codec.ts); the
   * batch's span links to them all.
   */
  async function publishTraced(rows: readonly OutboxRow[]) {
    if (!tracingActive()) return deps.bus.publish(rows.map((r) => r.envelope));
    const spans = rows.map((r) =>
      startMessageSpan({
        operation: 'publish',
        kind: 'producer',
        system: deps.bus.kind,
        destination: 'events',
        messageId: r.envelope.eventId,
        parent: parseCarrier(r.trace_context) ?? ROOT_CONTEXT,
        attributes: {
          'messaging.message.conversation_id': r.envelope.correlationId,
          'conveyor.event.type': r.envelope.type,
        },
      }),
    );
    const events = rows.map((r, i) => withCarrier(r.envelope, spans[i] && injectCarrier(spans[i].context)));
    try {
      await inBatchSpan(
        'publish batch',
        spans,
        (s) => s?.context,
        { 'messaging.system': deps.bus.kind },
        () => deps.bus.publish(events),
      );
      for (const s of spans) if (s) endSpan(s.span);
    } catch (err) {
      for (const s of spans) if (s) endSpan(s.span, err);
      throw err;
    }
  }

  /**
   * Publishes `rows`; when the bus refuses them for good, halves them until each refusal is pinned to
   * one event (a batch of n with one refused event costs about 2·log2(n) publishes). Returns the
   * events refused alone; every other one is published. Throws what is not a refusal (the batch is
   * then retried as a whole: what went through meanwhile is published again, consumers dedupe).
   */
  async function publishIsolating(rows: readonly OutboxRow[]): Promise<Refused[]> {
    try {
      await publishTraced(rows);
      return [];
    } catch (err) {
      if (!isRefusedForGood(err)) throw err;
      if (rows.length === 1) return [{ row: rows[0]!, error: brokerError(err) }];
      log.warn(
        { err, events: rows.length },
        'the bus refused a batch for good; publishing it in halves to isolate the refused events',
      );
      const half = Math.ceil(rows.length / 2);
      const first = await publishIsolating(rows.slice(0, half));
      return [...first, ...(await publishIsolating(rows.slice(half)))];
    }
  }

  async function publishBatch(): Promise<number> {
    const client = await deps.pool.connect();
    let refused: Refused[] = [];
    let published: OutboxRow[] = [];
    try {
      await client.query('BEGIN');
      const rows = await claimBatch(client, config.batchSize);
      if (rows.length > 0) {
        refused = await publishIsolating(rows);
        await deps.afterPublish?.(rows.length);
        const quarantined = new Set(refused.map((r) => r.row.id));
        published = rows.filter((r) => !quarantined.has(r.id));
        // The dead letters and both marks commit together: an event is quarantined only with its
        // dead letter on record (an outage here rolls everything back, and the batch is tried again).
        for (const { row, error } of refused) {
          const event = withCarrier(row.envelope, parseCarrier(row.trace_context));
          await recordQuarantined(client, outboxDeadLetter(event, deps.bus.kind, error));
        }
        await markQuarantined(client, [...quarantined]);
        await markPublished(
          client,
          published.map((r) => r.id),
        );
      }
      await client.query('COMMIT');
      for (const { row, error } of refused) {
        log.error(
          {
            correlationId: row.envelope.correlationId,
            eventId: row.envelope.eventId,
            type: row.envelope.type,
            err: error,
          },
          'event refused by the bus for good: quarantined into the dead letters (origin outbox)',
        );
      }
      if (refused.length > 0) deps.onQuarantined?.(refused.length);
      for (const r of published) {
        log.debug(
          { correlationId: r.envelope.correlationId, eventId: r.envelope.eventId, type: r.envelope.type },
          'event published',
        );
      }
      return rows.length;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async function drainOnce(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await publishBatch();
      total += n;
      if (n < config.batchSize || !running) return total;
    }
  }

  // LISTEN on a dedicated connection; reconnects after failures (the poll covers the gap).
  let listener: pg.Client | undefined;
  async function listen(): Promise<void> {
    while (running) {
      const client = new pg.Client({ connectionString: config.databaseUrl, connectionTimeoutMillis: 5_000 });
      try {
        await client.connect();
        client.on('notification', signal);
        const closed = new Promise<void>((resolve) => {
          client.on('error', () => resolve());
          client.on('end', () => resolve());
        });
        await client.query(`LISTEN "${outboxChannel(config.schema)}"`);
        listener = client;
        signal(); // catch up on what was committed while we were not listening
        await closed;
      } catch (err) {
        if (running) log.warn({ err }, 'outbox LISTEN connection failed; retrying');
      } finally {
        listener = undefined;
        await client.end().catch(() => undefined);
      }
      if (running) await new Promise((r) => setTimeout(r, 1_000));
    }
  }

  async function loop(): Promise<void> {
    let failures = 0;
    while (running) {
      pendingWake = false;
      try {
        const n = await drainOnce();
        if (n > 0) log.debug({ published: n }, 'outbox drained');
        failures = 0;
      } catch (err) {
        failures += 1;
        log.error({ err, failures }, 'outbox relay failed; backing off');
        await new Promise((r) => setTimeout(r, backoffDelayMs(failures, 200, 10_000)));
        continue;
      }
      if (pendingWake || !running) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, config.pollIntervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  }

  const onFatal = fatalOrLog(deps.onFatal, log);
  const stopping = () => !running;
  const listening = superviseLoop('outbox-relay (listen)', listen(), onFatal, stopping);
  const looping = superviseLoop('outbox-relay', loop(), onFatal, stopping);

  let closing: Promise<void> | undefined;
  return {
    drainOnce,
    close: () =>
      (closing ??= (async () => {
        running = false;
        wake?.();
        await listener?.end().catch(() => undefined);
        await Promise.allSettled([looping, listening]);
      })()),
  };
}
