// `npm run groups:retire -- <group> [--settle-ms=<ms>]`: retires a subscription group on the bus the
// environment configures (EVENT_BUS): stops the fan-out to it and deletes its queue(s) or consumer
// group. Refuses the default group and a group with live consumers (stop them first). Exit codes:
// 0 retired (or nothing was left of it), 1 refused, 2 bad usage, 3 failed, 78 bad configuration.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { isGroupName } from '../shared/bus/event-bus.ts';
import { retireGroup, RetireGroupRefusedError } from '../shared/bus/retire-group.ts';
import { loadConfigOrExit } from '../shared/config/config.ts';
import { MODULES } from '../modules/registry.ts';

const usage = 'usage: npm run groups:retire -- <group> [--settle-ms=<ms>]\n';

const Args = z.object({
  group: z.string().refine(isGroupName, 'not a subscription group name'),
  settleMs: z.coerce.number().int().min(0).max(600_000).default(5_000),
});

function parse(): z.infer<typeof Args> {
  try {
    const { values, positionals } = parseArgs({
      args: process.argv.slice(2),
      options: { 'settle-ms': { type: 'string' } },
      allowPositionals: true,
    });
    if (positionals.length !== 1) throw new Error('name exactly one group');
    const parsed = Args.safeParse({ group: positionals[0], settleMs: values['settle-ms'] });
    if (!parsed.success) throw new Error(parsed.error.issues.map((i) => i.message).join('; '));
    return parsed.data;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage}`);
    process.exit(2);
  }
}

const args = parse();
const config = loadConfigOrExit(process.env, { modules: MODULES });
try {
  const retired = await retireGroup(config, args.group, { settleMs: args.settleMs });
  const what = retired.deleted.length > 0 ? `deleted ${retired.deleted.join(', ')}` : 'nothing to delete';
  const fanOut = retired.unregistered ? 'publishes no longer reach it' : 'it was not registered';
  process.stdout.write(`group ${retired.group} retired on ${retired.bus}: ${fanOut}; ${what}\n`);
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = err instanceof RetireGroupRefusedError ? 1 : 3;
}
