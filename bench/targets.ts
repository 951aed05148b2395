import type { BaselineResult } from './baselines/baselines.ts';
import type { BenchOptions } from './cli.ts';
import type { Machine } from './machine.ts';
import type { MonitorWindow } from './monitor.ts';
import type { ProfileSummary } from './profile-summary.ts';
import type { ApiPhaseResult, ScenarioResult } from './scenarios.ts';

/** Everything one run measured: what `bench/results/<timestamp>.json` holds. */
export interface BenchResults {
  format: 'conveyor-bench/1';
  startedAt: string;
  finishedAt: string;
  wallS: number;
  /** The arguments the run was started with. */
  command: string;
  options: BenchOptions;
  machine: Machine;
  api?: ApiPhaseResult;
  scenarios: ScenarioResult[];
  baselines: BaselineResult[];
  ratios: Record<string, number | null>;
  targets: Target[];
  profiles: ProfileSummary[];
  /** Every run counted: nothing lost, nothing duplicated, read models equal to the write model. */
  verified: boolean;
  /** verified, and no scenario failed (a Kafka/RabbitMQ bus that never came up is `unavailable`, not failed). */
  ok: boolean;
}

export interface Target {
  name: string;
  measured: string;
  /** null = not measured in this run. */
  met: boolean | null;
  /** What the run measured around it (CPU, memory, rates): the evidence for the cause. */
  context: string;
}

/** The Conveyor scenario compared with the baselines: BullMQ bus, one worker process, one API. */
export function referenceScenario(
  scenarios: readonly ScenarioResult[],
  bus = 'bullmq',
): ScenarioResult | undefined {
  return (
    scenarios.find((s) => s.bus === bus && s.workers === 1 && s.apiReplicas === 1 && s.drain) ??
    scenarios.find((s) => s.bus === bus && s.drain)
  );
}

export function ratios(
  scenarios: readonly ScenarioResult[],
  baselines: readonly BaselineResult[],
): Record<string, number | null> {
  const base = (name: BaselineResult['name']) => baselines.find((b) => b.name === name)?.perS;
  const of = (bus: string, name: BaselineResult['name']) => {
    const s = referenceScenario(scenarios, bus)?.drain?.perS;
    const b = base(name);
    return s !== undefined && b ? Math.round((s / b) * 100) / 100 : null;
  };
  return {
    conveyorOverNaive: of('bullmq', 'naive'),
    conveyorOverCeiling: of('bullmq', 'ceiling'),
    conveyorOverPeer: of('bullmq', 'peer'),
    kafkaOverNaive: of('kafka', 'naive'),
    rabbitmqOverNaive: of('rabbitmq', 'naive'),
    sqsOverNaive: of('sqs', 'naive'),
  };
}

function cpu(window: MonitorWindow | undefined): string {
  if (!window) return '';
  const procs = window.processes
    .filter((p) => p.cpuCores > 0.02)
    .map((p) => `${p.label} ${p.cpuCores} cores`)
    .join(', ');
  return `${procs}; machine ${window.machineCpuCores} of its cores busy`;
}

function ratioTarget(name: string, ratio: number | null, min: number, context: string): Target {
  return {
    name,
    measured: ratio === null ? 'not measured' : `${ratio}×`,
    met: ratio === null ? null : ratio >= min,
    context,
  };
}

/** Evaluates the targets against a run. */
export function evaluateTargets(r: Omit<BenchResults, 'targets' | 'ok'>, machine: Machine): Target[] {
  const ref = referenceScenario(r.scenarios);
  const naive = r.baselines.find((b) => b.name === 'naive');
  const peer = r.baselines.find((b) => b.name === 'peer');
  const ceiling = r.baselines.find((b) => b.name === 'ceiling');
  const drainCtx = ref?.drain
    ? `Conveyor drain ${ref.drain.perS}/s (${cpu(ref.drain.monitor)}); naive ${naive?.perS ?? '-'}/s, ceiling ${ceiling?.perS ?? '-'}/s, graphile-worker ${peer?.perS ?? '-'}/s; ${machine.nproc} cores`
    : 'no BullMQ scenario ran';
  const targets: Target[] = [
    ratioTarget('End-to-end (BullMQ bus) ≥ 4× naive', r.ratios.conveyorOverNaive ?? null, 4, drainCtx),
    {
      ...ratioTarget(
        'End-to-end (BullMQ bus) ≥ 60% of the raw ceiling',
        r.ratios.conveyorOverCeiling ?? null,
        0.6,
        drainCtx,
      ),
      measured:
        r.ratios.conveyorOverCeiling == null
          ? 'not measured'
          : `${Math.round(r.ratios.conveyorOverCeiling * 100)}%`,
    },
    ratioTarget('End-to-end ≥ 3× graphile-worker', r.ratios.conveyorOverPeer ?? null, 3, drainCtx),
  ];
  const at5k = r.api?.rates.find((x) => x.load.offeredPerS === 5_000);
  targets.push({
    name: 'API enqueue p99 ≤ 10 ms at 5,000 req/s offered (1 API process)',
    measured: at5k
      ? `p99 ${at5k.load.latencyMs.p99} ms at ${at5k.load.acceptedPerS} accepted/s`
      : 'not measured',
    met: at5k ? at5k.load.latencyMs.p99 <= 10 && at5k.load.acceptedPerS >= 4_750 : null,
    context: at5k ? `${cpu(at5k.monitor)} (bench = autocannon)` : '',
  });
  const busNames = { kafka: 'Kafka', rabbitmq: 'RabbitMQ', sqs: 'SQS (ElasticMQ)' } as const;
  for (const bus of ['kafka', 'rabbitmq', 'sqs'] as const) {
    const s = r.scenarios.find((x) => x.bus === bus);
    const ratio = r.ratios[`${bus}OverNaive`] ?? null;
    targets.push({
      ...ratioTarget(`${busNames[bus]} end-to-end ≥ 3× naive`, ratio, 3, ''),
      ...(s && s.status !== 'ok'
        ? { measured: `${s.status}: ${(s.error ?? '').split('\n')[0]!.slice(0, 160)}` }
        : {}),
      context: s?.drain ? `drain ${s.drain.perS}/s (${cpu(s.drain.monitor)})` : s ? '' : 'not run',
    });
  }
  const drain = r.api?.backlogDrain;
  const worker = drain?.monitor.processes.find((p) => p.label.startsWith('workers'));
  targets.push({
    name: 'Worker RSS < 250 MB draining a large backlog',
    measured: worker
      ? `${worker.peakRssMb} MB (VmHWM ${worker.hwmMb} MB) draining ${drain!.orders} orders`
      : 'not measured',
    met: worker ? Math.max(worker.peakRssMb, worker.hwmMb) < 250 : null,
    context: drain
      ? `backlog ${drain.orders} orders (the brief's 200,000 scaled to the run's time budget), ${drain.perS}/s`
      : '',
  });
  const api = at5k?.monitor.processes.find((p) => p.label.startsWith('api'));
  targets.push({
    name: 'API RSS < 200 MB at 5,000 req/s',
    measured: api ? `${api.peakRssMb} MB (VmHWM ${api.hwmMb} MB)` : 'not measured',
    met: api ? Math.max(api.peakRssMb, api.hwmMb) < 200 : null,
    context: '',
  });
  const checks = [r.api?.verification, ...r.scenarios.map((s) => s.verification)].filter(
    (v) => v !== undefined,
  );
  const baseOk = r.baselines.every((b) => b.verified.ok);
  const lost = checks.reduce((n, v) => n + v.missing, 0);
  const dup = checks.reduce(
    (n, v) => n + v.duplicateAccepts + Math.max(0, v.dailyStatsOrders - v.writeModel),
    0,
  );
  const counted = checks.reduce((n, v) => n + v.accepted, 0);
  targets.push({
    name: 'Zero lost or duplicated orders',
    measured: `${counted} accepted orders counted in ${checks.length} runs: ${lost} lost, ${dup} duplicated`,
    met: checks.length > 0 ? checks.every((v) => v.ok) && baseOk : null,
    context: checks.flatMap((v) => v.problems).join('; '),
  });
  return targets;
}
