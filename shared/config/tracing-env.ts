import { z } from 'zod';

/**
 * The OpenTelemetry variables (the SDK's standard names), parsed with zod like every other variable.
 * Kept apart from config.ts, which loads the module registry: the tracing register entry point
 * (shared/observability/tracing/register.ts) parses these before any instrumented module is loaded.
 */

const int = (min: number) => z.coerce.number().int().min(min);
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
/** `key=value,key=value` (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES), values URL-decoded. */
const keyValues = z.string().transform((s, ctx) => {
  const out: Record<string, string> = {};
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) {
      ctx.addIssue({ code: 'custom', message: `"${part}" is not key=value` });
      return z.NEVER;
    }
    try {
      out[part.slice(0, eq).trim()] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      ctx.addIssue({ code: 'custom', message: `"${part}" has a badly encoded value` });
      return z.NEVER;
    }
  }
  return out;
});

export const TracingEnvShape = {
  /** Where spans go: otlp | zipkin | console | none. Unset = none, or otlp when an OTLP endpoint is set. */
  OTEL_TRACES_EXPORTER: z.enum(['otlp', 'zipkin', 'console', 'none']).optional(),
  /** Turns tracing off whatever OTEL_TRACES_EXPORTER says. */
  OTEL_SDK_DISABLED: bool.default(false),
  OTEL_SERVICE_NAME: z.string().min(1).optional(),
  OTEL_RESOURCE_ATTRIBUTES: keyValues.optional(),
  /** OTLP/HTTP (protobuf) base URL; traces go to <endpoint>/v1/traces. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url().optional(),
  /** The full OTLP traces URL, used as is (wins over OTEL_EXPORTER_OTLP_ENDPOINT). */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.url().optional(),
  OTEL_EXPORTER_OTLP_HEADERS: keyValues.optional(),
  OTEL_EXPORTER_OTLP_TIMEOUT: int(1).default(10_000),
  OTEL_EXPORTER_ZIPKIN_ENDPOINT: z.url().default('http://localhost:9411/api/v2/spans'),
  OTEL_TRACES_SAMPLER: z
    .enum([
      'always_on',
      'always_off',
      'traceidratio',
      'parentbased_always_on',
      'parentbased_always_off',
      'parentbased_traceidratio',
    ])
    .default('parentbased_always_on'),
  /** The ratio of the *traceidratio samplers, 0..1. */
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).optional(),
  OTEL_BSP_SCHEDULE_DELAY: int(0).default(5_000),
  OTEL_BSP_EXPORT_TIMEOUT: int(1).default(30_000),
  OTEL_BSP_MAX_QUEUE_SIZE: int(1).default(2_048),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: int(1).default(512),
} as const;

export const TracingEnvSchema = z.object(TracingEnvShape);
export type TracingEnv = z.infer<typeof TracingEnvSchema>;

/** What the tracing SDK is built from ({@link tracingSettings}). */
export interface TracingSettings {
  exporter: 'otlp' | 'zipkin' | 'console' | 'none';
  enabled: boolean;
  serviceName: string;
  resourceAttributes: Readonly<Record<string, string>>;
  otlp: { url: string; headers: Readonly<Record<string, string>>; timeoutMs: number };
  zipkin: { url: string };
  sampler: { name: TracingEnv['OTEL_TRACES_SAMPLER']; ratio: number };
  batch: {
    scheduledDelayMillis: number;
    exportTimeoutMillis: number;
    maxQueueSize: number;
    maxExportBatchSize: number;
  };
}

/** The settings of a parsed environment; `fallbackServiceName` when OTEL_SERVICE_NAME is unset. */
export function tracingSettings(env: TracingEnv, fallbackServiceName: string): TracingSettings {
  const otlpSet = env.OTEL_EXPORTER_OTLP_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  const exporter = env.OTEL_SDK_DISABLED
    ? 'none'
    : (env.OTEL_TRACES_EXPORTER ?? (otlpSet !== undefined ? 'otlp' : 'none'));
  const base = (env.OTEL_EXPORTER_OTLP_ENDPOINT ?? 'http://localhost:4318').replace(/\/+$/, '');
  return {
    exporter,
    enabled: exporter !== 'none',
    serviceName:
      env.OTEL_SERVICE_NAME ?? env.OTEL_RESOURCE_ATTRIBUTES?.['service.name'] ?? fallbackServiceName,
    resourceAttributes: env.OTEL_RESOURCE_ATTRIBUTES ?? {},
    otlp: {
      url: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? `${base}/v1/traces`,
      headers: env.OTEL_EXPORTER_OTLP_HEADERS ?? {},
      timeoutMs: env.OTEL_EXPORTER_OTLP_TIMEOUT,
    },
    zipkin: { url: env.OTEL_EXPORTER_ZIPKIN_ENDPOINT },
    sampler: { name: env.OTEL_TRACES_SAMPLER, ratio: env.OTEL_TRACES_SAMPLER_ARG ?? 1 },
    batch: {
      scheduledDelayMillis: env.OTEL_BSP_SCHEDULE_DELAY,
      exportTimeoutMillis: env.OTEL_BSP_EXPORT_TIMEOUT,
      maxQueueSize: env.OTEL_BSP_MAX_QUEUE_SIZE,
      // The SDK refuses a batch larger than the queue.
      maxExportBatchSize: Math.min(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, env.OTEL_BSP_MAX_QUEUE_SIZE),
    },
  };
}
