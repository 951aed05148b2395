// Types only (erased): the SDK's modules are loaded by the dynamic imports below, when tracing is on.
import type * as SdkTraceNode from '@opentelemetry/sdk-trace-node';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import type { Sampler, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-node';
import type { TracingSettings } from '../../config/tracing-env.ts';
import { redactedUrl, redisStatement } from './redact.ts';
import { setTracingHandle, tracingHandle, type TracingHandle } from './trace-context.ts';

/** The running SDK of a process: flush its spans before exiting, stop it. */
export type Tracing = TracingHandle;

export interface StartTracingOptions {
  /** Auto-instrumentations to enable (PostgreSQL and ioredis by default); tests pass [] when they only want our spans. */
  instrumentations?: readonly ('pg' | 'ioredis')[];
  /** Replaces the exporter OTEL_TRACES_EXPORTER picks (tests). */
  exporter?: SpanExporter;
}

/**
 * Starts the OpenTelemetry SDK from parsed settings: a Node tracer provider (AsyncLocalStorage
 * context, W3C trace-context + baggage propagation) with the sampler, batch span processor and
 * exporter the OTEL_* variables name, and the PostgreSQL and ioredis instrumentations. No span leaves
 * with a secret or a payload in it: Redis statements carry the command and the key's prefix only,
 * PostgreSQL spans the parameterized SQL without its values, server spans the route, not the URL. Loads the SDK's modules
 * only here, so a process with tracing off never loads them. Idempotent per process.
 */
export async function startTracing(
  settings: TracingSettings,
  options: StartTracingOptions = {},
): Promise<Tracing> {
  const running = tracingHandle();
  if (running) return running;
  if (!settings.enabled && !options.exporter)
    return { forceFlush: async () => undefined, shutdown: async () => undefined };
  const [node, resources, core] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/core'),
  ]);
  const exporter = options.exporter ?? (await createExporter(settings, node));
  const provider = new node.NodeTracerProvider({
    resource: resources.resourceFromAttributes({
      ...settings.resourceAttributes,
      'service.name': settings.serviceName,
    }),
    sampler: createSampler(settings.sampler, node),
    spanProcessors: [redactingProcessor(), new node.BatchSpanProcessor(exporter, settings.batch)],
  });
  provider.register({
    propagator: new core.CompositePropagator({
      propagators: [new core.W3CTraceContextPropagator(), new core.W3CBaggagePropagator()],
    }),
  });
  const instrumentations = await loadInstrumentations(options.instrumentations ?? ['pg', 'ioredis']);
  const handle: Tracing = {
    forceFlush: () => provider.forceFlush(),
    shutdown: async () => {
      for (const i of instrumentations) i.disable();
      await provider.shutdown();
      setTracingHandle(undefined);
    },
  };
  setTracingHandle(handle);
  return handle;
}

async function createExporter(settings: TracingSettings, node: typeof SdkTraceNode): Promise<SpanExporter> {
  switch (settings.exporter) {
    case 'zipkin': {
      const { ZipkinExporter } = await import('@opentelemetry/exporter-zipkin');
      return new ZipkinExporter({ url: settings.zipkin.url, serviceName: settings.serviceName });
    }
    case 'console':
      return new node.ConsoleSpanExporter();
    default: {
      const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
      return new OTLPTraceExporter({
        url: settings.otlp.url,
        headers: { ...settings.otlp.headers },
        timeoutMillis: settings.otlp.timeoutMs,
      });
    }
  }
}

function createSampler({ name, ratio }: TracingSettings['sampler'], node: typeof SdkTraceNode): Sampler {
  const ratioSampler = new node.TraceIdRatioBasedSampler(ratio);
  switch (name) {
    case 'always_on':
      return new node.AlwaysOnSampler();
    case 'always_off':
      return new node.AlwaysOffSampler();
    case 'traceidratio':
      return ratioSampler;
    case 'parentbased_always_off':
      return new node.ParentBasedSampler({ root: new node.AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new node.ParentBasedSampler({ root: ratioSampler });
    default:
      return new node.ParentBasedSampler({ root: new node.AlwaysOnSampler() });
  }
}

/**
 * The maintained instrumentations we use. Both only create spans inside a trace (`requireParentSpan`):
 * the relay's polls, BullMQ's blocking fetches and the pools' housekeeping are not worth a trace each.
 * Not amqplib's nor kafkajs's: they inject their own context into message headers per publish call,
 * which would replace each event's own (a relay batch is one call carrying many orders' events).
 */
async function loadInstrumentations(names: readonly ('pg' | 'ioredis')[]): Promise<{ disable(): void }[]> {
  if (names.length === 0) return [];
  const { registerInstrumentations } = await import('@opentelemetry/instrumentation');
  const list: Instrumentation[] = [];
  if (names.includes('pg')) {
    const { PgInstrumentation } = await import('@opentelemetry/instrumentation-pg');
    // enhancedDatabaseReporting would export every query's parameter values (customer ids, payloads) as
    // `db.postgresql.values`; off, a span carries the SQL text alone, and our SQL takes values as $n.
    list.push(
      new PgInstrumentation({
        requireParentSpan: true,
        enhancedDatabaseReporting: false,
        addSqlCommenterCommentToQueries: false,
      }),
    );
  }
  if (names.includes('ioredis')) {
    const { IORedisInstrumentation } = await import('@opentelemetry/instrumentation-ioredis');
    // By default every argument of every command is exported: session ids (GET <prefix>:session:<id>),
    // BullMQ's add script with the whole job. Keep the command and the key's prefix only.
    list.push(
      new IORedisInstrumentation({
        requireParentSpan: true,
        dbStatementSerializer: (command, args) => redisStatement(command, args),
      }),
    );
  }
  registerInstrumentations({ instrumentations: list });
  return list;
}

/**
 * Rewrites, as each span ends, what an instrumentation put in it from a client's request: a server
 * span's `url.full` (@hono/otel's, with the path's ids and the query) becomes its route's template.
 */
function redactingProcessor(): SpanProcessor {
  return {
    onStart: () => undefined,
    onEnding: (span) => {
      const url = span.attributes['url.full'];
      if (typeof url !== 'string') return;
      const route = span.attributes['http.route'];
      span.setAttribute('url.full', redactedUrl(url, typeof route === 'string' ? route : undefined));
    },
    onEnd: () => undefined,
    forceFlush: async () => undefined,
    shutdown: async () => undefined,
  };
}
