/**
 * The tracing entry point: `node --import tsx --import ./shared/observability/tracing/register.ts main.ts`
 * (the npm scripts), `node --import ./dist/shared/observability/tracing/register.js dist/main.js` (the
 * image). Loaded before the application so the module hooks of the instrumentations (ESM and CommonJS)
 * see `pg` being loaded. With OTEL_TRACES_EXPORTER unset or `none` it parses the OTEL_* variables and
 * does nothing else — no SDK module is loaded. The one module of the code base with a side effect at
 * import, by design.
 */
import { register } from 'node:module';
import { z } from 'zod';
import { TracingEnvSchema, tracingSettings } from '../../config/tracing-env.ts';
import { startTracing } from './sdk.ts';

const cleaned = Object.fromEntries(
  Object.entries(process.env).filter(([, v]) => v !== undefined && v !== ''),
);
const parsed = TracingEnvSchema.safeParse(cleaned);
if (!parsed.success) {
  // The process's own config parse names every bad variable and exits 78; stay out of its way.
  process.stderr.write(`tracing off: ${z.prettifyError(parsed.error)}\n`);
} else {
  const settings = tracingSettings(parsed.data, z.string().catch('conveyor').parse(cleaned['SERVICE_NAME']));
  if (settings.enabled) {
    // import-in-the-middle's loader hook: patches ESM imports of instrumented packages.
    register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
    await startTracing(settings);
  }
}
