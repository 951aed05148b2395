import { describe, expect, it } from 'vitest';
import { cgroupLayout } from '../../bench/scaling/cgroup.ts';
import { cappedDrain } from '../../bench/scaling/drain.ts';

// A short run of the scaling scenario (`npm run bench -- --scaling`): a worker replica in a
// CPU-limited cgroup drains a backlog, stays within its limit, and every order is counted once.
const layout = cgroupLayout();

describe('scaling scenario smoke', () => {
  it.skipIf(typeof layout === 'string')(
    `drains a backlog with a replica held to 0.2 core (${typeof layout === 'string' ? `skipped: ${layout}` : `cgroup v${layout.version}`})`,
    async () => {
      if (typeof layout === 'string') return;
      const r = await cappedDrain({ layout, replicas: 1, cores: 0.2, backlog: 300, warmupPerReplica: 50 });
      expect(r.verified).toMatchObject({ ok: true, expected: 350, orders: 350, statsCounted: 350 });
      expect(r.perS).toBeGreaterThan(0);
      const [replica] = r.replicaStats;
      // The quota holds: never much above 0.2 core over the drain, and the limit was reached.
      expect(replica!.cpuCores).toBeLessThanOrEqual(0.3);
      expect(replica!.throttledPct).toBeGreaterThan(0);
      expect(r.server.perOrder.redisCommands).toBeGreaterThan(0);
      expect(r.server.perOrder.pgWalBytes).toBeGreaterThan(0);
    },
  );
});
