import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createCpuGroup, type CpuGroup, type cgroupLayout } from './cgroup.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type CgroupLayout = Exclude<ReturnType<typeof cgroupLayout>, string>;

/** A platform process running in its own CPU-limited cgroup, like a pod with `limits.cpu`. */
export interface Replica {
  label: string;
  group: CpuGroup;
  child: ChildProcess;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  /** Its last output lines, for the report when it dies. */
  tail: string[];
  /** SIGTERM (a scale-down: finish in-flight work, exit), then SIGKILL past `graceMs`; removes the group. */
  stop(graceMs?: number): Promise<number | null>;
}

let seq = 0;

/**
 * Starts `entry` (e.g. `workers/main.ts`) with `env` inside a new cgroup of `cores` CPU: from the
 * compiled output in `compiledDir` (`<dir>/workers/main.js`, as the container image runs it) when
 * given, else from the sources through tsx.
 * @example const r = startReplica(layout, 'orders-1', 0.2, 'workers/main.ts', env, dist);
 */
export function startReplica(
  layout: CgroupLayout,
  label: string,
  cores: number,
  entry: string,
  env: Record<string, string>,
  compiledDir?: string,
): Replica {
  const group = createCpuGroup(layout, `conveyor-bench-${process.pid}-${++seq}`, cores);
  const argv = compiledDir
    ? [process.execPath, `${compiledDir}/${entry.replace(/\.ts$/, '.js')}`]
    : [process.execPath, '--import', 'tsx', entry];
  const { command, args } = group.wrap(argv);
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const keep = (b: Buffer) => {
    tail.push(...b.toString().split('\n').filter(Boolean));
    tail.splice(0, Math.max(0, tail.length - 50));
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stopping: Promise<number | null> | undefined;
  return {
    label,
    group,
    child,
    exited,
    tail,
    stop: (graceMs = 30_000) =>
      (stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const code = await exited;
        clearTimeout(timer);
        group.destroy();
        return code;
      })()),
  };
}

/**
 * Polls `probe` every 100 ms until it holds; fails at once with its last lines when one of `replicas`
 * exits (a start-up error), or after `timeoutMs`.
 */
export async function until(
  what: string,
  timeoutMs: number,
  probe: () => Promise<boolean>,
  replicas: readonly Replica[],
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    const dead = replicas.find((r) => r.child.exitCode !== null);
    if (dead)
      throw new Error(`${dead.label} exited (${dead.child.exitCode}):\n${dead.tail.slice(-10).join('\n')}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
