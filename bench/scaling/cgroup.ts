import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * CPU limits the way Kubernetes applies `resources.limits.cpu`: a CFS quota on the process's cgroup
 * (`250m` = 25 ms of CPU per 100 ms period). Children inherit the group, so a replica started inside
 * one runs like a pod with that limit. cgroup v1's `cpu` controller (`/sys/fs/cgroup/cpu`) or cgroup
 * v2 (`cpu.max`, at `/sys/fs/cgroup/unified` or `/sys/fs/cgroup`), whichever is writable here.
 */

const PERIOD_US = 100_000;

interface Layout {
  version: 1 | 2;
  root: string;
}

export interface CpuGroup {
  readonly path: string;
  readonly cores: number;
  /**
   * The command prefix that starts `argv` inside the group: a shell writes its own pid into
   * `cgroup.procs`, then execs (so the pid the caller gets is the program's).
   */
  wrap(argv: readonly string[]): { command: string; args: string[] };
  /** CFS periods, how many were throttled, and the time throttled (ms) since the group was made. */
  stat(): { periods: number; throttled: number; throttledMs: number };
  /** Removes the group (its processes must have exited). */
  destroy(): void;
}

function writable(root: string, version: 1 | 2): boolean {
  const probe = join(root, `conveyor-probe-${process.pid}`);
  try {
    mkdirSync(probe);
    const ok = existsSync(join(probe, version === 1 ? 'cpu.cfs_quota_us' : 'cpu.max'));
    rmdirSync(probe);
    return ok;
  } catch {
    return false;
  }
}

/** Where CPU-limited groups can be made on this machine, or why not (as a sentence). */
export function cgroupLayout(): Layout | string {
  if (writable('/sys/fs/cgroup/cpu', 1)) return { version: 1, root: '/sys/fs/cgroup/cpu' };
  for (const root of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
    if (existsSync(join(root, 'cgroup.controllers')) && writable(root, 2)) return { version: 2, root };
  }
  return 'no writable cgroup with a CPU controller (cgroup v1 /sys/fs/cgroup/cpu or v2 cpu.max); run as root on a machine that has one';
}

/** A CPU-limited group `name` with `cores` of CPU (0.2 = 200m). */
export function createCpuGroup(layout: Layout, name: string, cores: number): CpuGroup {
  const path = join(layout.root, name);
  mkdirSync(path, { recursive: true });
  const quotaUs = Math.max(1_000, Math.round(cores * PERIOD_US));
  if (layout.version === 1) {
    writeFileSync(join(path, 'cpu.cfs_period_us'), String(PERIOD_US));
    writeFileSync(join(path, 'cpu.cfs_quota_us'), String(quotaUs));
  } else {
    writeFileSync(join(path, 'cpu.max'), `${quotaUs} ${PERIOD_US}`);
  }
  const procs = join(path, 'cgroup.procs');
  return {
    path,
    cores,
    wrap: (argv) => ({
      command: 'sh',
      args: ['-c', `echo $$ > '${procs}' && exec "$@"`, 'conveyor-replica', ...argv],
    }),
    stat() {
      const fields = Object.fromEntries(
        readFileSync(join(path, 'cpu.stat'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => l.split(' ') as [string, string]),
      );
      const n = (k: string) => Number(fields[k] ?? 0);
      return {
        periods: n('nr_periods'),
        throttled: n('nr_throttled'),
        throttledMs: layout.version === 1 ? n('throttled_time') / 1e6 : n('throttled_usec') / 1e3,
      };
    },
    destroy() {
      try {
        rmdirSync(path);
      } catch {
        // still has processes, or gone already: nothing to do
      }
    },
  };
}
