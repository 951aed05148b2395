import { z } from 'zod';
import type { Config } from '../config/config.ts';
import type { CommandQueueSettings, ModuleDefinition } from './module.ts';

/** Defaults of every command queue; a module overrides some in `queueDefaults`, operators any in the environment. */
export const DEFAULT_QUEUE_SETTINGS: CommandQueueSettings = {
  concurrency: 100,
  attempts: 5,
  backoffMs: 1_000,
  backoffMaxMs: 60_000,
  batchSize: 100,
  batchWaitMs: 5,
  keepCompletedSeconds: 3_600,
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
};

/** Environment suffix of each setting: `<NAME>_<SUFFIX>`, e.g. `REFUNDS_CONCURRENCY`. */
const SUFFIXES: Record<keyof CommandQueueSettings, { suffix: string; min: number; doc: string }> = {
  concurrency: {
    suffix: 'CONCURRENCY',
    min: 1,
    doc: 'Prefetch of a worker process: jobs in progress at once',
  },
  attempts: { suffix: 'ATTEMPTS', min: 1, doc: 'Attempts before a command is dead-lettered' },
  backoffMs: { suffix: 'BACKOFF_MS', min: 1, doc: 'First retry delay (exponential, jittered)' },
  backoffMaxMs: { suffix: 'BACKOFF_MAX_MS', min: 1, doc: 'Longest retry delay' },
  batchSize: { suffix: 'BATCH_SIZE', min: 1, doc: 'Concurrent jobs whose writes share one transaction' },
  batchWaitMs: { suffix: 'BATCH_WAIT_MS', min: 0, doc: 'How long a micro-batch waits to fill' },
  keepCompletedSeconds: {
    suffix: 'KEEP_COMPLETED_SECONDS',
    min: 0,
    doc: 'How long completed jobs stay in Redis',
  },
  lockDurationMs: {
    suffix: 'LOCK_DURATION_MS',
    min: 1_000,
    doc: "BullMQ job lock: a crashed worker's jobs come back once it expires",
  },
  stalledIntervalMs: {
    suffix: 'STALLED_INTERVAL_MS',
    min: 500,
    doc: 'How often stalled jobs are looked for',
  },
};

const prefixOf = (module: Pick<ModuleDefinition, 'name'>) => module.name.toUpperCase();

/** The environment variables of one module's queue, with their defaults and docs (README, `.env.example`). */
export function queueSettingVariables(
  module: Pick<ModuleDefinition, 'name' | 'queueDefaults'>,
): { name: string; key: keyof CommandQueueSettings; default: number; min: number; doc: string }[] {
  const defaults = { ...DEFAULT_QUEUE_SETTINGS, ...module.queueDefaults };
  return (Object.keys(SUFFIXES) as (keyof CommandQueueSettings)[]).map((key) => ({
    name: `${prefixOf(module)}_${SUFFIXES[key].suffix}`,
    key,
    default: defaults[key],
    min: SUFFIXES[key].min,
    doc: SUFFIXES[key].doc,
  }));
}

/** A zod shape parsing every module's queue variables (merged into the config's environment schema). */
export function queueSettingsShape(
  modules: readonly Pick<ModuleDefinition, 'name' | 'queueDefaults'>[],
): Record<string, z.ZodDefault<z.ZodCoercedNumber<unknown>>> {
  return Object.fromEntries(
    modules.flatMap((m) =>
      queueSettingVariables(m).map((v) => [v.name, z.coerce.number().int().min(v.min).default(v.default)]),
    ),
  );
}

/** Every module's settings from a parsed environment (keys of {@link queueSettingsShape}). */
export function queueSettingsOf(
  modules: readonly Pick<ModuleDefinition, 'name' | 'queueDefaults'>[],
  env: Readonly<Record<string, unknown>>,
): Record<string, CommandQueueSettings> {
  return Object.fromEntries(
    modules.map((m) => [
      m.name,
      Object.fromEntries(
        queueSettingVariables(m).map((v) => [v.key, env[v.name] as number]),
      ) as unknown as CommandQueueSettings,
    ]),
  );
}

/** One module's queue and worker settings from the configuration. */
export function moduleSettings(config: Pick<Config, 'modules'>, name: string): CommandQueueSettings {
  const settings = config.modules[name];
  if (!settings) throw new Error(`no settings for module ${name}: is it in modules/registry.ts?`);
  return settings;
}

/**
 * Jobs waiting per replica at which KEDA adds a worker for this module's queue: 2 × its default prefetch,
 * which keeps every replica's prefetch full (deploy/base/keda-orders.yaml; scripts/render-modules.ts
 * renders the others with it, and the console's Overview computes replicas from it).
 */
export function scalerTargetOf(module: Pick<ModuleDefinition, 'queueDefaults'>): number {
  return 2 * (module.queueDefaults?.concurrency ?? DEFAULT_QUEUE_SETTINGS.concurrency);
}
