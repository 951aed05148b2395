// One operator's redrive alone in a process, for the crash test: it claims the dead letter `DL_ID`, then
// stops for good just before the send (`DL_CRASH_AT=before-send`) or just after it was acknowledged
// (`after-send`), says so on its log and waits to be SIGKILLed there — no shutdown, no rollback of its own.
import { loadConfig } from '../../shared/config/config.ts';
import { createDeadLetterActions } from '../../shared/dead-letters/actions.ts';
import type { Redriver } from '../../shared/dead-letters/redrive.ts';
import { createRuntimeRedriver } from '../../shared/dead-letters/runtime-redriver.ts';
import { bootstrap } from '../../shared/runtime/bootstrap.ts';
import { MODULES } from '../../modules/registry.ts';

const at = process.env.DL_CRASH_AT === 'after-send' ? 'after-send' : 'before-send';
const id = process.env.DL_ID ?? '';
const config = loadConfig(process.env, { modules: MODULES });
const rt = await bootstrap(config, 'redrive-test-child', MODULES);
const runtime = createRuntimeRedriver({
  config,
  logger: rt.logger,
  pool: rt.pool,
  redis: rt.redis,
  modules: MODULES,
});
const redrive: Redriver = async (dl) => {
  if (at === 'after-send') await runtime.redrive(dl);
  rt.logger.info({ deadLetterId: dl.id }, `redrive child stopped ${at}`);
  // Until killed: the timer keeps the process alive, the promise never settles.
  setInterval(() => undefined, 60_000);
  await new Promise<never>(() => undefined);
};
const actions = createDeadLetterActions({
  pool: rt.pool,
  redis: rt.redis,
  queuePrefix: config.redis.queuePrefix,
  redrive,
  modules: MODULES,
  logger: rt.logger,
});
await actions.redrive(id, {
  actor: 'crashing-operator',
  role: 'admin',
  source: 'api',
  ip: null,
  userAgent: null,
});
