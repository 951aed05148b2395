import { parseArgs } from 'node:util';
import type { z } from 'zod';

/** A scenario's options as `node:util` parseArgs takes them. */
export type ScenarioOptions = Record<string, { type: 'boolean' | 'string' }>;

/** Parsed arguments, or the exit code a scenario returns at once (0 after `--help`, 2 on bad input). */
export type ScenarioArgs<T> = { ok: true; args: T } | { ok: false; exitCode: number };

/**
 * A bench scenario's command line (`npm run bench -- --<scenario> …`): `--help` prints `usage`; unknown
 * options and values its zod schema refuses print what is wrong, then `usage`, on stderr.
 *
 * @example
 * const parsed = parseScenarioArgs(argv, { bulk: { type: 'boolean' }, rate: { type: 'string' } }, Args, USAGE);
 * if (!parsed.ok) return parsed.exitCode;
 */
export function parseScenarioArgs<S extends z.ZodType>(
  argv: readonly string[],
  options: ScenarioOptions,
  schema: S,
  usage: string,
): ScenarioArgs<z.infer<S>> {
  if (argv.includes('--help')) {
    process.stdout.write(`${usage}\n`);
    return { ok: false, exitCode: 0 };
  }
  let values: unknown;
  try {
    ({ values } = parseArgs({ args: [...argv], strict: true, options }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage}\n`);
    return { ok: false, exitCode: 2 };
  }
  const parsed = schema.safeParse(values);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `  --${i.path.join('.')}: ${i.message}`).join('\n');
    process.stderr.write(`invalid arguments:\n${issues}\n\n${usage}\n`);
    return { ok: false, exitCode: 2 };
  }
  return { ok: true, args: parsed.data };
}
