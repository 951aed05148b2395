import type { CappedDrainResult } from './drain.ts';
import type { WorkerScalingRow } from './workers.ts';

/**
 * A capacity model from two measured drains: one replica running every worker kind (the per-order cost
 * of the whole pipeline at the replica's CPU limit), and one with a replica per kind (how the worker's
 * CPU splits over orders, relay and projection). Everything per order, so a platform team can divide
 * the cores it has by it.
 */
export interface CapacityModel {
  perOrder: {
    workerCpuMs: number;
    stageCpuMs: { orders: number; relay: number; projection: number };
    redisCpuMs: number;
    redisCommands: number;
    pgCpuMs: number;
    pgTransactions: number;
    pgRowsWritten: number;
    walBytes: number;
  };
  /** Orders/s one core of each can carry (Redis: its one main thread = the whole primary). */
  perCore: { worker: number; redis: number; postgres: number };
}

export interface Prediction {
  replicas: number;
  predicted: number;
  limitedBy: 'worker CPU limit' | 'Redis (one core)' | 'the machine’s cores';
  measured: number;
  /** measured / predicted */
  ratio: number;
}

const cpuOf = (r: CappedDrainResult, label: string) =>
  r.monitor.processes.find((p) => p.label === label)?.cpuCores ?? 0;
const msPerOrder = (cores: number, perS: number) => (cores * 1000) / Math.max(perS, 1);
const round = (n: number, d = 3) => Math.round(n * 10 ** d) / 10 ** d;

export function buildCapacityModel(oneReplica: CappedDrainResult, stages: CappedDrainResult): CapacityModel {
  const workerCpuMs = msPerOrder(
    oneReplica.replicaStats.reduce((s, r) => s + r.cpuCores, 0),
    oneReplica.perS,
  );
  const raw = {
    orders: msPerOrder(cpuOf(stages, 'orders'), stages.perS),
    relay: msPerOrder(cpuOf(stages, 'outbox'), stages.perS),
    projection: msPerOrder(cpuOf(stages, 'projections'), stages.perS),
  };
  const rawSum = raw.orders + raw.relay + raw.projection || 1;
  // The split's proportions applied to the capped replica's total: a capped replica pays more per order
  // than uncapped processes (fixed costs spread over fewer orders), and the scaling runs are capped.
  const share = (x: number) => round((x / rawSum) * workerCpuMs);
  const p = oneReplica.server.perOrder;
  const pgCpuMs = msPerOrder(cpuOf(oneReplica, 'postgres'), oneReplica.perS);
  return {
    perOrder: {
      workerCpuMs: round(workerCpuMs),
      stageCpuMs: { orders: share(raw.orders), relay: share(raw.relay), projection: share(raw.projection) },
      redisCpuMs: p.redisCpuMs,
      redisCommands: p.redisCommands,
      pgCpuMs: round(pgCpuMs),
      pgTransactions: p.pgTransactions,
      pgRowsWritten: p.pgRowsWritten,
      walBytes: Math.round(p.pgWalBytes),
    },
    perCore: {
      worker: Math.round(1000 / workerCpuMs),
      redis: Math.round(1000 / Math.max(p.redisCpuMs, 1e-6)),
      postgres: Math.round(1000 / Math.max(pgCpuMs, 1e-6)),
    },
  };
}

/**
 * The model's prediction for `n` replicas of `cores` each on a machine of `machineCores` shared by
 * replicas, Redis and PostgreSQL (this one): the lowest of the replicas' CPU, Redis's one core, and
 * the machine's cores divided by everything an order costs.
 */
export function predict(
  model: CapacityModel,
  rows: readonly WorkerScalingRow[],
  cores: number,
  machineCores: number,
): Prediction[] {
  const perOrderAllMs = model.perOrder.workerCpuMs + model.perOrder.redisCpuMs + model.perOrder.pgCpuMs;
  return rows.map((r) => {
    const bounds: [number, Prediction['limitedBy']][] = [
      [r.replicas * cores * model.perCore.worker, 'worker CPU limit'],
      [model.perCore.redis, 'Redis (one core)'],
      [(machineCores * 1000) / perOrderAllMs, 'the machine’s cores'],
    ];
    const [predicted, limitedBy] = bounds.sort((a, b) => a[0] - b[0])[0]!;
    return {
      replicas: r.replicas,
      predicted: Math.round(predicted),
      limitedBy,
      measured: r.median,
      ratio: round(r.median / predicted, 2),
    };
  });
}

export function renderCapacity(
  model: CapacityModel,
  predictions: readonly Prediction[],
  cores: number,
): string {
  const p = model.perOrder;
  const c = model.perCore;
  const redisLimit = c.redis;
  const pgLimit = c.postgres;
  return [
    '| per order | worker CPU | of which orders · relay · projection | Redis | PostgreSQL |',
    '| --- | --- | --- | --- | --- |',
    `| measured (1 replica at ${cores} core) | ${p.workerCpuMs} ms | ${p.stageCpuMs.orders} · ${p.stageCpuMs.relay} · ${p.stageCpuMs.projection} ms | ${p.redisCpuMs} ms CPU, ${p.redisCommands} commands | ${p.pgCpuMs} ms CPU, ${p.pgTransactions} transactions, ${p.pgRowsWritten} rows, ${p.walBytes} B WAL |`,
    '',
    '| one … carries | orders/s | comes first when |',
    '| --- | --- | --- |',
    `| worker core | ${c.worker} | always, per replica: add replicas (KEDA) |`,
    `| Redis primary (one main thread) | ${redisLimit} | beyond ${Math.round(redisLimit / c.worker)} worker cores' worth of orders: split queues over Redis Cluster slots (one queue per slot) |`,
    `| PostgreSQL core | ${pgLimit} | a primary of N cores: N × ${pgLimit}, and ${Math.round((p.walBytes * pgLimit) / 1_048_576)} MB/s of WAL per core's worth; reads move to replicas, writes need a bigger primary or a split of the read models |`,
    '',
    '| worker replicas | predicted orders/s | limited by | measured (median) | measured ÷ predicted |',
    '| --- | --- | --- | --- | --- |',
    ...predictions.map(
      (x) => `| ${x.replicas} | ${x.predicted} | ${x.limitedBy} | ${x.measured} | ${x.ratio} |`,
    ),
  ].join('\n');
}
