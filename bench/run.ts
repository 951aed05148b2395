import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCeiling, runNaive, runPeer, type BaselineResult } from './baselines/baselines.ts';
import { renderChart } from './chart.ts';
import { parseBenchArgs, USAGE, type BenchOptions } from './cli.ts';
import { describeMachine } from './machine.ts';
import { createMonitor } from './monitor.ts';
import { summarizeProfiles } from './profile-summary.ts';
import { createProgress } from './progress.ts';
import { renderMarkdown } from './report.ts';
import { runApiPhase, runScenario, type ApiPhaseResult, type Env, type ScenarioResult } from './scenarios.ts';
import { evaluateTargets, ratios, type BenchResults } from './targets.ts';

/**
 * `npm run bench`: drives the real stack over HTTP, runs the baselines on the same Redis and
 * PostgreSQL, verifies every run by counting, and writes `<out>/<timestamp>.json`, `<timestamp>.svg`,
 * `latest.svg` and `latest.md`. Exits 1 when anything was lost or duplicated or a scenario failed.
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The end-to-end configurations: every bus once, then the first bus scaled out one step at a time. */
function scenarioPlan(
  o: BenchOptions,
): { bus: BenchOptions['buses'][number]; workers: number; api: number }[] {
  const plan = o.buses.map((bus) => ({ bus, workers: 1, api: 1 }));
  const bus = o.buses[0]!;
  const maxWorkers = Math.max(...o.workerCounts);
  for (const workers of o.workerCounts.filter((w) => w !== 1)) plan.push({ bus, workers, api: 1 });
  for (const api of o.apiReplicaCounts.filter((a) => a !== 1)) plan.push({ bus, workers: maxWorkers, api });
  return plan;
}

async function runBaselines(env: Env): Promise<BaselineResult[]> {
  const { options, progress } = env;
  const out: BaselineResult[] = [];
  const base = { jobs: options.baselineJobs, orderSize: options.orderSize, progress };
  for (const [name, fn] of [
    ['raw ceiling (no-op BullMQ worker)', runCeiling],
    ['naive BullMQ + one transaction per job', runNaive],
    ['graphile-worker 0.17.3', runPeer],
  ] as const) {
    progress.step(`baseline: ${name}, ${options.baselineJobs} jobs`);
    const r = await fn(base);
    progress.done(
      `${r.perS} orders/s${r.verified.ok ? '' : ` — VERIFICATION FAILED: ${r.verified.problems.join('; ')}`}`,
    );
    out.push(r);
  }
  return out;
}

async function main(): Promise<number> {
  if (process.argv.includes('--scaling')) {
    const { scalingMain } = await import('./scaling/main.ts');
    return scalingMain(process.argv.slice(2));
  }
  if (process.argv.includes('--fairness')) {
    const { fairnessMain } = await import('./fairness/main.ts');
    return fairnessMain(process.argv.slice(2));
  }
  if (process.argv.includes('--results')) {
    const { resultsMain } = await import('./results-bench/main.ts');
    return resultsMain(process.argv.slice(2));
  }
  if (process.argv.includes('--bulk')) {
    const { bulkMain } = await import('./bulk/main.ts');
    return bulkMain(process.argv.slice(2));
  }
  if (process.argv.includes('--cost')) {
    const { costMain } = await import('./cost/main.ts');
    return costMain(process.argv.slice(2));
  }
  if (process.argv.includes('--search')) {
    const { searchMain } = await import('./search/main.ts');
    return searchMain(process.argv.slice(2));
  }
  if (process.argv.includes('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let options: BenchOptions;
  try {
    options = parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  const started = new Date();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const outDir = resolve(ROOT, options.outDir);
  const cpuProfDir = options.cpuProf ? join(outDir, 'profiles', stamp) : undefined;
  await mkdir(cpuProfDir ?? outDir, { recursive: true });
  const progress = createProgress();
  const monitor = createMonitor();
  monitor.watch('bench', process.pid);
  // The shared services: where the CPU the platform's processes do not use goes.
  monitor.watchGroup('redis', ['redis-server']);
  monitor.watchGroup('postgres', ['postgres']);
  monitor.watchGroup('kafka', ['java'], 'kafka.Kafka');
  monitor.watchGroup('elasticmq', ['java'], 'org.elasticmq');
  monitor.watchGroup('rabbitmq', ['beam.smp']);
  const env: Env = { options, monitor, progress, cpuProfDir, profileFrom: new Map(), live: new Set() };
  // Ctrl-C: stop the platform's processes and drop their schemas and queues before exiting.
  const interrupt = (signal: NodeJS.Signals) => {
    progress.step(`${signal}: stopping ${env.live.size} running stack(s) and cleaning up`);
    void Promise.allSettled([...env.live].map((s) => s.close())).then(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);

  progress.step('machine');
  const machine = await describeMachine();
  progress.done(`${machine.nproc} × ${machine.cpuModel}, load average ${machine.loadAverageAtStart}`);

  let api: ApiPhaseResult | undefined;
  let apiError: string | undefined;
  if (!options.skipApiRates) {
    try {
      api = await runApiPhase(env);
    } catch (err) {
      apiError = err instanceof Error ? err.message : String(err);
      progress.done(`API phase FAILED: ${apiError}`);
    }
  }
  const scenarios: ScenarioResult[] = [];
  for (const s of scenarioPlan(options)) scenarios.push(await runScenario(env, s.bus, s.workers, s.api));
  const baselines = options.skipBaselines ? [] : await runBaselines(env);
  const profiles = cpuProfDir ? await summarizeProfiles(cpuProfDir, env.profileFrom) : [];
  monitor.close();

  const finished = new Date();
  const checks = [api?.verification, ...scenarios.map((s) => s.verification)].filter((v) => v !== undefined);
  const verified =
    checks.every((v) => v.ok) && baselines.every((b) => b.verified.ok) && apiError === undefined;
  const partial = {
    format: 'conveyor-bench/1' as const,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    wallS: Math.round((finished.getTime() - started.getTime()) / 1000),
    command: ['npm run bench --', ...process.argv.slice(2)].join(' '),
    options,
    machine,
    ...(api ? { api } : {}),
    scenarios,
    baselines,
    ratios: ratios(scenarios, baselines),
    profiles,
    verified,
  };
  const results: BenchResults = {
    ...partial,
    targets: evaluateTargets(partial, machine),
    ok: verified && scenarios.every((s) => s.status !== 'failed'),
  };

  const jsonFile = join(outDir, `${stamp}.json`);
  const svgFile = join(outDir, `${stamp}.svg`);
  await writeFile(jsonFile, `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(svgFile, renderChart(results));
  await copyFile(svgFile, join(outDir, 'latest.svg'));
  await writeFile(
    join(outDir, 'latest.md'),
    renderMarkdown(results, relative(ROOT, join(outDir, 'latest.svg'))),
  );

  progress.step(
    `results: ${relative(ROOT, jsonFile)}, chart: ${relative(ROOT, svgFile)}, table: ${relative(ROOT, join(outDir, 'latest.md'))}`,
  );
  for (const t of results.targets) {
    progress.done(`${t.met === null ? '  n/a  ' : t.met ? '  MET  ' : 'NOT MET'}  ${t.name}: ${t.measured}`);
  }
  if (!results.ok) {
    const failures = [
      ...(apiError ? [`API phase: ${apiError}`] : []),
      ...scenarios.filter((s) => s.status === 'failed').map((s) => `${s.name}: ${s.error}`),
      ...checks.flatMap((v) => v.problems),
      ...baselines.flatMap((b) => b.verified.problems.map((p) => `${b.name}: ${p}`)),
    ];
    process.stderr.write(`\nBENCHMARK FAILED:\n${failures.map((f) => `  - ${f}`).join('\n')}\n`);
    return 1;
  }
  return 0;
}

process.exitCode = await main();
