import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../shared/config/config.ts';
import { MODULES } from '../../modules/registry.ts';

const tracing = (env: Record<string, string>) => loadConfig(env, { modules: MODULES }).tracing;

describe('tracing configuration (OTEL_*)', () => {
  it('is off by default', () => {
    expect(tracing({})).toMatchObject({ enabled: false, exporter: 'none', serviceName: 'conveyor' });
  });

  it('turns on with an exporter, or with an OTLP endpoint alone (otlp, the spec default)', () => {
    expect(tracing({ OTEL_TRACES_EXPORTER: 'zipkin' })).toMatchObject({
      enabled: true,
      exporter: 'zipkin',
      zipkin: { url: 'http://localhost:9411/api/v2/spans' },
    });
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' })).toMatchObject({
      exporter: 'otlp',
      otlp: { url: 'http://collector:4318/v1/traces' },
    });
    expect(
      tracing({
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://tempo.example/otlp/v1/traces',
        OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=a%20b,x-tenant=t1',
      }).otlp,
    ).toEqual({
      url: 'https://tempo.example/otlp/v1/traces',
      headers: { 'x-api-key': 'a b', 'x-tenant': 't1' },
      timeoutMs: 10_000,
    });
  });

  it('is off with OTEL_SDK_DISABLED whatever the exporter', () => {
    expect(tracing({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_SDK_DISABLED: 'true' }).enabled).toBe(false);
  });

  it('reads the service name, resource attributes, sampler and batch processor', () => {
    expect(
      tracing({
        OTEL_TRACES_EXPORTER: 'console',
        OTEL_SERVICE_NAME: 'orders-eu',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=staging',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
        OTEL_BSP_MAX_QUEUE_SIZE: '100',
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '512',
      }),
    ).toMatchObject({
      serviceName: 'orders-eu',
      resourceAttributes: { 'deployment.environment.name': 'staging' },
      sampler: { name: 'parentbased_traceidratio', ratio: 0.25 },
      batch: { maxQueueSize: 100, maxExportBatchSize: 100 },
    });
  });

  it('names every bad OTEL_* variable', () => {
    let error: unknown;
    try {
      loadConfig(
        {
          OTEL_TRACES_EXPORTER: 'jaeger',
          OTEL_TRACES_SAMPLER_ARG: '2',
          OTEL_EXPORTER_OTLP_HEADERS: 'no-equals-sign',
        },
        { modules: MODULES },
      );
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    for (const name of ['OTEL_TRACES_EXPORTER', 'OTEL_TRACES_SAMPLER_ARG', 'OTEL_EXPORTER_OTLP_HEADERS'])
      expect(problems).toContain(name);
  });
});
