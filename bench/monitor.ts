import { readdirSync, readFileSync } from 'node:fs';

/** Memory and CPU of one process over a window. */
export interface ProcessPeak {
  label: string;
  pid: number;
  /** Highest VmRSS sampled in the window, MiB. */
  peakRssMb: number;
  /** VmHWM at the last sample: the kernel's lifetime high-water mark of the process, MiB. */
  hwmMb: number;
  /** Average CPU use over the window, in cores (1.0 = one core busy all the time). */
  cpuCores: number;
}

/** The window's processes plus the whole machine's CPU use, in cores (others' work included). */
export interface MonitorWindow {
  processes: ProcessPeak[];
  machineCpuCores: number;
  seconds: number;
}

export interface ProcessMonitor {
  /** Starts sampling `pid` under `label` (e.g. `workers-1`). */
  watch(label: string, pid: number): void;
  /**
   * Samples every process whose command name (/proc/<pid>/comm) is one of `names`, as one entry
   * (e.g. all `postgres` backends): its CPU is the sum, its RSS the largest single process (shared
   * memory would be counted once per backend otherwise). With `cmdline`, only those whose command line
   * contains it (two JVMs are both `java`: Kafka's main class is `kafka.Kafka`, ElasticMQ's `org.elasticmq…`).
   */
  watchGroup(label: string, names: readonly string[], cmdline?: string): void;
  /** Peaks and CPU since the last `window()` call (or since watching started), then starts a new window. */
  window(): MonitorWindow;
  close(): void;
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
const TICKS_PER_S = 100;

/** Reads VmRSS and VmHWM (kB) from /proc/<pid>/status; undefined once the process is gone. */
export function readProcMemory(pid: number): { rssKb: number; hwmKb: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    const rssKb = field('VmRSS');
    return Number.isFinite(rssKb) ? { rssKb, hwmKb: field('VmHWM') } : undefined;
  } catch {
    return undefined;
  }
}

/** utime + stime of a process, in ticks. */
function readProcTicks(pid: number): number | undefined {
  try {
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/** Busy ticks of the whole machine (all CPUs): everything but idle and iowait. */
function readMachineBusyTicks(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = cpu;
  return user + nice + system + irq + softirq + steal;
}

const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;

interface Watched {
  label: string;
  peakKb: number;
  hwmKb: number;
  ticksAtWindow: number;
  lastTicks: number;
}

/**
 * Samples /proc of watched processes every `intervalMs`: a few file reads per process, cheap enough
 * not to disturb the measurement.
 */
function pidsNamed(names: ReadonlySet<string>, cmdline?: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!names.has(readFileSync(`/proc/${entry}/comm`, 'utf8').trim())) continue;
      if (cmdline === undefined || readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(cmdline))
        pids.push(Number(entry));
    } catch {
      // exited between readdir and read
    }
  }
  return pids;
}

interface Group {
  label: string;
  names: ReadonlySet<string>;
  cmdline: string | undefined;
  /** Last ticks seen per member pid, to add only what each used since. */
  ticks: Map<number, number>;
  usedTicks: number;
  peakKb: number;
}

export function createMonitor(intervalMs = 250): ProcessMonitor {
  const watched = new Map<number, Watched>();
  const groups: Group[] = [];
  let windowStarted = performance.now();
  let machineTicksAtWindow = readMachineBusyTicks();
  const sample = () => {
    for (const [pid, w] of watched) {
      const m = readProcMemory(pid);
      const ticks = readProcTicks(pid);
      if (ticks !== undefined) w.lastTicks = ticks;
      if (!m) continue;
      w.peakKb = Math.max(w.peakKb, m.rssKb);
      w.hwmKb = Math.max(w.hwmKb, m.hwmKb);
    }
    for (const g of groups) {
      for (const pid of pidsNamed(g.names, g.cmdline)) {
        const ticks = readProcTicks(pid);
        if (ticks === undefined) continue;
        // A new member (e.g. a fresh backend) counts from now: its earlier CPU is not this window's.
        g.usedTicks += ticks - (g.ticks.get(pid) ?? ticks);
        g.ticks.set(pid, ticks);
        g.peakKb = Math.max(g.peakKb, readProcMemory(pid)?.rssKb ?? 0);
      }
    }
  };
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  return {
    watch(label, pid) {
      const ticks = readProcTicks(pid) ?? 0;
      watched.set(pid, { label, peakKb: 0, hwmKb: 0, ticksAtWindow: ticks, lastTicks: ticks });
      sample();
    },
    watchGroup(label, names, cmdline) {
      groups.push({ label, names: new Set(names), cmdline, ticks: new Map(), usedTicks: 0, peakKb: 0 });
      sample();
    },
    window() {
      sample();
      const seconds = Math.max(0.001, (performance.now() - windowStarted) / 1000);
      const machineTicks = readMachineBusyTicks();
      const round2 = (n: number) => Math.round(n * 100) / 100;
      const result: MonitorWindow = {
        seconds: round2(seconds),
        machineCpuCores: round2((machineTicks - machineTicksAtWindow) / TICKS_PER_S / seconds),
        processes: [...watched].map(([pid, w]) => ({
          label: w.label,
          pid,
          peakRssMb: mb(w.peakKb),
          hwmMb: mb(w.hwmKb),
          cpuCores: round2((w.lastTicks - w.ticksAtWindow) / TICKS_PER_S / seconds),
        })),
      };
      for (const g of groups) {
        result.processes.push({
          label: g.label,
          pid: 0,
          peakRssMb: mb(g.peakKb),
          hwmMb: mb(g.peakKb),
          cpuCores: round2(g.usedTicks / TICKS_PER_S / seconds),
        });
        g.usedTicks = 0;
        g.peakKb = 0;
      }
      windowStarted = performance.now();
      machineTicksAtWindow = machineTicks;
      for (const [pid, w] of watched) {
        const m = readProcMemory(pid);
        if (!m) {
          watched.delete(pid);
          continue;
        }
        w.peakKb = m.rssKb;
        w.ticksAtWindow = w.lastTicks;
      }
      return result;
    },
    close: () => clearInterval(timer),
  };
}
