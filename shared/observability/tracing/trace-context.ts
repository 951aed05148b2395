import {
  context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  trace,
  type Context,
  type Link,
  type Span,
} from '@opentelemetry/api';

/**
 * Trace context as it travels between processes: the W3C `traceparent` (and `tracestate`) text map
 * that goes into job options, outbox rows and message headers. Only `@opentelemetry/api` here: with
 * no SDK registered every call is a no-op, which is what "tracing off" costs.
 */
export type TraceCarrier = Readonly<Record<string, string>>;

/** The W3C header names a {@link TraceCarrier} may hold (what the buses copy into their headers). */
export const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

const STATE = Symbol.for('conveyor.tracing');

/** True once the SDK was started in this process (shared/observability/tracing/sdk.ts). */
export function tracingActive(): boolean {
  return (globalThis as { [STATE]?: unknown })[STATE] !== undefined;
}

/** What a process does with the running SDK: flush spans before it exits, or stop it. */
export interface TracingHandle {
  /** Exports every span ended so far (the SDK keeps running). */
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

/** The SDK's handle, set by `startTracing`; absent while tracing is off. */
export function tracingHandle(): TracingHandle | undefined {
  return (globalThis as { [STATE]?: TracingHandle })[STATE];
}

/** @internal For the SDK starter only. */
export function setTracingHandle(handle: TracingHandle | undefined): void {
  (globalThis as { [STATE]?: unknown })[STATE] = handle;
}

/** The carrier of `ctx` (default: the active context); undefined when there is nothing to carry. */
export function injectCarrier(ctx: Context = context.active()): TraceCarrier | undefined {
  if (!tracingActive()) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier['traceparent'] ? carrier : undefined;
}

/** The context a carrier describes, as a remote parent (root when the carrier is empty or invalid). */
export function extractContext(carrier: TraceCarrier | null | undefined): Context {
  if (!carrier || !tracingActive()) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, carrier);
}

/** The trace headers of a message's headers (any casing of values: Buffers from Kafka, strings elsewhere). */
export function carrierFromHeaders(
  headers: Readonly<Record<string, unknown>> | null | undefined,
): TraceCarrier | undefined {
  if (!headers) return undefined;
  let carrier: Record<string, string> | undefined;
  for (const name of TRACE_HEADERS) {
    const raw = headers[name];
    const value = Buffer.isBuffer(raw) ? raw.toString('utf8') : typeof raw === 'string' ? raw : undefined;
    if (value) (carrier ??= {})[name] = value;
  }
  return carrier;
}

/** A carrier stored as JSON (BullMQ's `telemetry.metadata`, the outbox's `trace_context`), or undefined. */
export function parseCarrier(json: unknown): TraceCarrier | undefined {
  let value = json;
  if (typeof json === 'string') {
    try {
      value = JSON.parse(json);
    } catch {
      return undefined;
    }
  }
  return carrierFromHeaders(
    value && typeof value === 'object' ? (value as Record<string, unknown>) : undefined,
  );
}

/** A link to the span `ctx` holds, for a batch span (none for an invalid or absent span). */
export function linkTo(ctx: Context): Link[] {
  const sc = trace.getSpanContext(ctx);
  return sc && isSpanContextValid(sc) ? [{ context: sc }] : [];
}

const TRACE = Symbol('conveyor.trace-carrier');

/**
 * An event (or any object) tagged with the trace context it was created in. The tag is a symbol
 * property: JSON never sees it, so envelopes, outbox rows and message bodies stay as they are.
 */
export function withCarrier<T extends object>(value: T, carrier: TraceCarrier | undefined): T {
  return carrier ? { ...value, [TRACE]: carrier } : value;
}

/** The carrier {@link withCarrier} tagged `value` with. */
export function carrierOf(value: object): TraceCarrier | undefined {
  return (value as { [TRACE]?: TraceCarrier })[TRACE];
}

/** Ends `span`, recording `err` (when given) as its error. */
export function endSpan(span: Span, err?: unknown): void {
  if (err !== undefined) {
    const error = err instanceof Error ? err : new Error(String(err));
    span.recordException(error);
    span.setStatus({ code: 2, message: error.message });
  }
  span.end();
}

/** Runs `fn` in the context `carrier` describes (spans it starts become its children); as is without one. */
export function withinCarrier<T>(carrier: TraceCarrier | undefined, fn: () => T): T {
  return carrier && tracingActive() ? context.with(extractContext(carrier), fn) : fn();
}
