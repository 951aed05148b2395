import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  service: string;
  /** Defaults to stdout; tests pass a stream to capture lines. */
  destination?: NodeJS.WritableStream;
  /**
   * Tracing is on: every line written inside a span carries its `trace_id` and `span_id` (beside the
   * correlation id). Off: no mixin at all, so a line costs what it did.
   */
  traceIds?: boolean;
}

/** `trace_id` and `span_id` of the active span, for pino's mixin. */
function traceIds(): Record<string, string> {
  const sc = trace.getSpan(context.active())?.spanContext();
  return sc && isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}

/**
 * The root pino logger of a process. Components take a child per request, job or event carrying
 * `correlationId`, so one id follows an order from HTTP request to read model.
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      ...(options.traceIds ? { mixin: traceIds } : {}),
      base: { service: options.service, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', '*.password'],
        censor: '[redacted]',
      },
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}
