import { context, SpanKind, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { endSpan, extractContext, linkTo, tracingActive, type TraceCarrier } from './trace-context.ts';

/**
 * Conveyor's own spans, where no instrumentation sees the message: a command job, an outbox event's
 * publish, an event's projection, and the batches they share. Names and attributes follow the
 * OpenTelemetry messaging conventions (`{operation} {destination}`, `messaging.*`). Every helper runs
 * `fn` untouched when tracing is off.
 */
const TRACER = 'conveyor';
const tracer = () => trace.getTracer(TRACER);

export interface MessageSpan {
  /** `send`, `process`, `publish`… the span is named `<operation> <destination>`. */
  operation: 'send' | 'process' | 'publish';
  kind: 'producer' | 'consumer';
  system: string;
  destination: string;
  messageId?: string | undefined;
  /** The message's creation context (consumer) or the context the message is created in (producer). */
  parent: TraceCarrier | Context | undefined;
  attributes?: Attributes;
}

const isContext = (v: TraceCarrier | Context): v is Context => typeof (v as Context).getValue === 'function';

/** Starts a messaging span; undefined while tracing is off. */
export function startMessageSpan(m: MessageSpan): { span: Span; context: Context } | undefined {
  if (!tracingActive()) return undefined;
  const parent =
    m.parent === undefined ? context.active() : isContext(m.parent) ? m.parent : extractContext(m.parent);
  const span = tracer().startSpan(
    `${m.operation} ${m.destination}`,
    {
      kind: m.kind === 'producer' ? SpanKind.PRODUCER : SpanKind.CONSUMER,
      attributes: {
        'messaging.system': m.system,
        'messaging.operation.name': m.operation,
        'messaging.operation.type': m.operation === 'process' ? 'process' : 'send',
        'messaging.destination.name': m.destination,
        ...(m.messageId !== undefined ? { 'messaging.message.id': m.messageId } : {}),
        ...m.attributes,
      },
    },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/** Runs `fn` inside a messaging span (see {@link startMessageSpan}), ending it with `fn`'s outcome. */
export async function inMessageSpan<T>(m: MessageSpan, fn: (span?: Span) => Promise<T>): Promise<T> {
  const started = startMessageSpan(m);
  if (!started) return fn();
  try {
    const value = await context.with(started.context, () => fn(started.span));
    endSpan(started.span);
    return value;
  } catch (err) {
    endSpan(started.span, err);
    throw err;
  }
}

/**
 * Runs a batch shared by several messages in one span: a child of the first item's span (so a lone
 * message's trace holds the whole work), linked to every item's span — each item's span keeps its
 * own parent, as the messaging conventions describe for batches.
 */
export async function inBatchSpan<I, T>(
  name: string,
  items: readonly I[],
  contextOf: (item: I) => Context | undefined,
  attributes: Attributes,
  fn: () => Promise<T>,
): Promise<T> {
  if (!tracingActive() || items.length === 0) return fn();
  const contexts = items.map(contextOf).filter((c): c is Context => c !== undefined);
  const parent = contexts[0] ?? context.active();
  const span = tracer().startSpan(
    name,
    {
      kind: SpanKind.INTERNAL,
      links: contexts.flatMap(linkTo),
      attributes: { 'messaging.batch.message_count': items.length, ...attributes },
    },
    parent,
  );
  try {
    const value = await context.with(trace.setSpan(parent, span), fn);
    endSpan(span);
    return value;
  } catch (err) {
    endSpan(span, err);
    throw err;
  }
}
