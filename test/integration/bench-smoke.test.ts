import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { CostResults } from '../../bench/cost/report.ts';
import type { BenchResults } from '../../bench/targets.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

function run(args: readonly string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

// The harness itself, smallest mode: real processes, real HTTP, real baselines, counted afterwards.
describe('npm run bench (smoke)', () => {
  let out: string | undefined;
  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it(
    'exits 0 and writes a verified results file, a chart and the markdown table',
    { timeout: 180_000 },
    async () => {
      out = await mkdtemp(join(tmpdir(), 'conveyor-bench-'));
      const { code, output } = await run(
        [
          '--quick',
          '--duration',
          '1',
          '--rate',
          '200',
          '--e2e-rate',
          '200',
          '--backlog',
          '200',
          '--baseline-jobs',
          '200',
          '--out-dir',
          out,
        ],
        170_000,
      );
      expect(code, output).toBe(0);

      const files = await readdir(out);
      const json = files.find((f) => /^\d{4}-\d\d-\d\dT.*\.json$/.test(f));
      expect(json, files.join(', ')).toBeDefined();
      const results = JSON.parse(await readFile(join(out, json!), 'utf8')) as BenchResults;
      expect(results.format).toBe('conveyor-bench/1');
      expect(results.ok).toBe(true);
      expect(results.verified).toBe(true);
      expect(results.machine.nproc).toBeGreaterThan(0);
      expect(results.machine.postgres).not.toBe('unknown');

      // API phase: the fixed rate and saturation, then the backlog they left, counted.
      expect(results.api?.rates.map((r) => r.load.offeredPerS)).toEqual([200, null]);
      expect(results.api?.rates.every((r) => r.load.accepted > 0 && r.load.latencyMs.p99 > 0)).toBe(true);
      expect(results.api?.verification).toMatchObject({ ok: true, missing: 0, duplicateAccepts: 0 });
      expect(results.api?.backlogDrain.perS).toBeGreaterThan(0);

      // One end-to-end scenario on the BullMQ bus, every accepted order in both models exactly once.
      const [scenario] = results.scenarios;
      expect(scenario).toMatchObject({ bus: 'bullmq', workers: 1, apiReplicas: 1, status: 'ok' });
      const v = scenario!.verification!;
      expect(v).toMatchObject({ ok: true, missing: 0, duplicateAccepts: 0, deadLetters: 0, problems: [] });
      expect(v.accepted).toBeGreaterThanOrEqual(200);
      expect(v.orderView).toBe(v.writeModel);
      expect(v.dailyStatsOrders).toBe(v.writeModel);
      expect(v.projectedEvents).toBe(v.outboxEvents);
      expect(scenario!.drain?.orders).toBe(200);
      expect(scenario!.fixedRate?.timing.projectedMs.p50).toBeGreaterThan(0);
      expect(scenario!.saturation?.timing.e2ePerS).toBeGreaterThan(0);
      const peaks = scenario!.saturation!.monitor.processes;
      expect(peaks.find((p) => p.label === 'api-1')?.peakRssMb).toBeGreaterThan(20);
      expect(peaks.find((p) => p.label === 'workers-1')?.peakRssMb).toBeGreaterThan(20);

      // The three baselines ran on the same services and were counted too.
      expect(results.baselines.map((b) => b.name)).toEqual(['ceiling', 'naive', 'peer']);
      expect(results.baselines.every((b) => b.perS > 0 && b.jobs === 200 && b.verified.ok)).toBe(true);
      expect(results.ratios.conveyorOverNaive).toBeGreaterThan(0);
      expect(results.targets.find((t) => t.name.startsWith('Zero lost'))?.met).toBe(true);

      const markdown = await readFile(join(out, 'latest.md'), 'utf8');
      expect(markdown).toContain('| scenario |');
      expect(markdown).toContain(results.machine.cpuModel);
      expect(await readFile(join(out, json!.replace(/\.json$/, '.svg')), 'utf8')).toMatch(
        /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/,
      );
    },
  );

  // The cost bench (issue #25), smallest mode: one drain, counted, with its per-order profile.
  it('--cost drains, verifies and writes the per-order cost', { timeout: 150_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'conveyor-cost-'));
    try {
      const { code, output } = await run(['--cost', '--orders', '300', '--out-dir', dir], 140_000);
      expect(code, output).toBe(0);
      const results = JSON.parse(await readFile(join(dir, 'cost-latest.json'), 'utf8')) as CostResults;
      expect(results.ok).toBe(true);
      const [runResult] = results.runs;
      expect(runResult!.verified).toMatchObject({ ok: true, expected: 330, orders: 330, deadLetters: 0 });
      expect(runResult!.redis.commandsPerOrder).toBeGreaterThan(1);
      expect(runResult!.redis.byCommand.length).toBeGreaterThan(3);
      expect(runResult!.worker.cpuMsPerOrder).toBeGreaterThan(0);
      expect(runResult!.pg.tables.find((t) => t.table === 'orders')?.inserted).toBe(300);
      expect(await readFile(join(dir, 'cost-latest.md'), 'utf8')).toContain('| Redis commands / order |');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects invalid arguments with exit code 2 and the usage', async () => {
    const { code, output } = await run(['--bus', 'carrier-pigeon'], 30_000);
    expect(code).toBe(2);
    expect(output).toContain('--bus');
    expect(output).toContain('npm run bench');
  });
});
