import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The hot spots of one V8 CPU profile (`node --cpu-prof`), by self time. */
export interface ProfileSummary {
  file: string;
  /** Sampled time, idle excluded, ms. */
  busyMs: number;
  /** Self time per function, descending. */
  functions: { name: string; where: string; selfMs: number; percent: number }[];
  /** Self time per package or source area (our files, node core, GC), descending. */
  areas: { area: string; selfMs: number; percent: number }[];
  /**
   * Each busy sample charged to the nearest frame of our code (api/, workers/, shared/) up its stack —
   * "which of our functions, with what it calls in libraries" — or to the leaf's package when no frame
   * of ours is on the stack (library internals such as BullMQ's fetch loop).
   */
  attribution: { frame: string; percent: number }[];
}

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  startTime: number;
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Where a frame's code lives: an npm package, node core, V8 pseudo-frames, or a file of ours. */
function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node core';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const path = url.replace(/^file:\/\//, '').replace(ROOT, '');
  return path.split('/').slice(0, 2).join('/');
}

/**
 * Summarizes a profile: self time is the sum of the time deltas of the samples that hit a node.
 * Samples before `fromUs` (V8's monotonic clock) are skipped: start-up and warm-up (module loading
 * through tsx) would otherwise dominate a short run.
 */
export function summarizeProfile(file: string, profile: CpuProfile, fromUs = 0, top = 15): ProfileSummary {
  const selfUs = new Map<number, number>();
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (t >= fromUs) selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  const fns = new Map<string, { name: string; where: string; us: number }>();
  const areas = new Map<string, number>();
  let busyUs = 0;
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    const { functionName, url, lineNumber } = node.callFrame;
    if (us === 0 || functionName === '(idle)') continue;
    busyUs += us;
    const where = url ? `${url.replace(/^file:\/\//, '').replace(ROOT, '')}:${lineNumber + 1}` : '';
    const key = `${functionName}|${where}`;
    const f = fns.get(key) ?? { name: functionName || '(anonymous)', where, us: 0 };
    f.us += us;
    fns.set(key, f);
    const area = areaOf(url, functionName);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const c of node.children ?? []) parent.set(c, node.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const ours = /^file:\/\/.*?\/(api|workers|shared)\//;
  const charged = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const leaf = byId.get(id);
    if (!leaf || leaf.callFrame.functionName === '(idle)') continue;
    let frame = `[${areaOf(leaf.callFrame.url, leaf.callFrame.functionName)}]`;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (ours.test(cf.url)) {
        frame = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^file:\/\//, '').replace(ROOT, '')}`;
        break;
      }
    }
    charged.set(frame, (charged.get(frame) ?? 0) + us);
  }
  const pct = (us: number) => Math.round((us / Math.max(1, busyUs)) * 1000) / 10;
  const ms = (us: number) => Math.round(us / 100) / 10;
  return {
    file,
    busyMs: ms(busyUs),
    functions: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, selfMs: ms(f.us), percent: pct(f.us) })),
    areas: [...areas]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([area, us]) => ({ area, selfMs: ms(us), percent: pct(us) })),
    attribution: [...charged]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([frame, us]) => ({ frame, percent: pct(us) })),
  };
}

/**
 * Summarizes the main-thread profile in every `<stack>.<process>/` directory of `dir`, from its stack's
 * `fromUs` on (tsx's module loader thread writes a profile of its own, thread id ≠ 0: skipped).
 */
export async function summarizeProfiles(
  dir: string,
  fromUs: ReadonlyMap<string, number>,
): Promise<ProfileSummary[]> {
  const out: ProfileSummary[] = [];
  for (const processDir of (await readdir(dir).catch(() => [] as string[])).sort()) {
    const files = await readdir(join(dir, processDir)).catch(() => [] as string[]);
    const main = files.find((f) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f));
    if (!main) continue;
    const profile = JSON.parse(await readFile(join(dir, processDir, main), 'utf8')) as CpuProfile;
    out.push(summarizeProfile(processDir, profile, fromUs.get(processDir.split('.')[0]!) ?? 0));
  }
  return out;
}
