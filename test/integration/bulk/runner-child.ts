// A bulk runner alone in a process, for the crash test: SIGKILLed mid-action, it leaves its lease to expire.
import { loadConfig } from '../../../shared/config/config.ts';
import { createRuntimeBulkRunner } from '../../../shared/bulk/runtime.ts';
import { bootstrap } from '../../../shared/runtime/bootstrap.ts';
import { MODULES } from '../../../modules/registry.ts';

const config = loadConfig(process.env, { modules: MODULES });
const rt = await bootstrap(config, 'bulk-test-child', MODULES);
const runner = createRuntimeBulkRunner(rt, {
  pollIntervalMs: 50,
  leaseMs: Number(process.env.BULK_TEST_LEASE_MS ?? 1_000),
});
runner.start();
rt.lifecycle.defer('bulk-runner', () => runner.stop());
rt.logger.info('bulk runner child started');
