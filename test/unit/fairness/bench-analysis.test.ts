import { describe, expect, it } from 'vitest';
import {
  bothBackloggedWindow,
  completionsIn,
  overlapWindow,
  startedBetween,
  steadyPhase,
  timeline,
  type BacklogSample,
  type OrderTimes,
  type SteadyOrder,
} from '../../../bench/fairness/analysis.ts';
import { redisCost } from '../../../bench/fairness/private-redis.ts';
import { parseSteadyCustomer, scheduledAt } from '../../../bench/fairness/steady.ts';
import { evaluateFairnessTargets, median } from '../../../bench/fairness/report.ts';

// The fairness bench's arithmetic (bench/fairness/analysis.ts): the numbers issue #21's targets are judged on.

let ids = 0;
const order = (tenant: string, acceptedAt: number, decidedAt: number, customerId = 'x'): OrderTimes => ({
  orderId: `o-${++ids}`,
  tenant,
  customerId,
  acceptedAt,
  decidedAt,
  projectedAt: decidedAt + 5,
});

describe('steady producers', () => {
  it('recovers a request’s scheduled time from its customer id and slice start', () => {
    const c = parseSteadyCustomer('b-3-17');
    expect(c).toEqual({ tag: 'b', slice: 3, index: 17 });
    // Slice 3 started at 10_000; its t0 is 5 ms later; request 17 at 20/s is due 850 ms after t0.
    expect(scheduledAt(new Map([[3, 10_000]]), 20, 3, 17)).toBe(10_855);
    expect(scheduledAt(new Map(), 20, 3, 17)).toBeUndefined();
    expect(parseSteadyCustomer('a-17')).toBeUndefined();
  });

  it('splits latencies by the phase each order was scheduled in', () => {
    const orders: SteadyOrder[] = [
      { ...order('b', 1_010, 1_030), scheduledAt: 1_000 }, // quiet: 20 ms
      { ...order('b', 2_010, 2_050), scheduledAt: 2_000 }, // quiet: 40 ms
      { ...order('b', 5_100, 5_400), scheduledAt: 5_000 }, // flood: 300 ms from accepted, 400 from scheduled
    ];
    const quiet = steadyPhase(orders, 0, 5_000);
    expect(quiet.acceptedToDecided.n).toBe(2);
    expect(quiet.acceptedToDecided.max).toBe(40);
    const flood = steadyPhase(orders, 5_000, 10_000);
    expect(flood.acceptedToDecided).toMatchObject({ n: 1, p50: 300, p99: 300 });
    expect(flood.scheduledToDecided.p99).toBe(400);
    expect(flood.scheduledToAccepted.p99).toBe(100);
    expect(flood.acceptedToProjected.p99).toBe(305);
    expect(flood.stages.orders).toBe(0);
  });

  it('splits accepted → decided into API, queue and worker by the job’s own timestamps', () => {
    const orders: SteadyOrder[] = [
      // Accepted at 5_100, added 5_120 (API 20), picked 5_350 (queue 230), decided 5_400 (worker 50).
      {
        ...order('b', 5_100, 5_400),
        scheduledAt: 5_000,
        job: { addedAt: 5_120, pickedAt: 5_350, held: true },
      },
      { ...order('b', 6_100, 6_150), scheduledAt: 6_000 }, // its job was already trimmed: not in the split
    ];
    const { stages } = steadyPhase(orders, 0, 10_000);
    expect(stages.orders).toBe(1);
    expect(stages.held).toBe(1);
    expect([stages.api.p99, stages.queue.p99, stages.worker.p99]).toEqual([20, 230, 50]);
  });
});

describe('the weighted window', () => {
  const sample = (at: number, h: number, l: number, sh: number, sl: number): BacklogSample => ({
    at,
    waiting: { h, l },
    started: { h: sh, l: sl },
  });

  it('spans the samples in which both tenants had commands waiting', () => {
    const samples = [
      sample(0, 10, 0, 0, 0),
      sample(200, 10, 5, 3, 1),
      sample(400, 8, 4, 6, 2),
      sample(600, 5, 0, 9, 3),
    ];
    expect(bothBackloggedWindow(samples, ['h', 'l'])).toEqual({ from: 200, to: 400, samples: 2 });
    expect(startedBetween(samples[1]!, samples[2]!, ['h', 'l'])).toEqual({ h: 3, l: 1 });
    expect(bothBackloggedWindow(samples.slice(0, 2), ['h', 'l'])).toBeUndefined();
  });

  it('counts completions per tenant inside the window only', () => {
    const orders = [
      order('h', 0, 100),
      order('h', 0, 250),
      order('h', 0, 300),
      order('l', 0, 260),
      order('l', 0, 900),
    ];
    expect(completionsIn(orders, ['h', 'l'], 200, 400)).toEqual({ h: 2, l: 1 });
  });

  it('falls back to the overlap of the tenants’ accepted and decided spans', () => {
    const orders = [order('h', 100, 500), order('h', 120, 700), order('l', 150, 400), order('l', 160, 1_000)];
    expect(overlapWindow(orders, ['h', 'l'])).toEqual({ from: 150, to: 700 });
    expect(overlapWindow(orders, ['h', 'nobody'])).toBeUndefined();
  });
});

describe('timeline and Redis cost', () => {
  it('buckets decisions per second and keeps each second’s worst latency', () => {
    const t = timeline(
      [order('a', 0, 500), order('a', 100, 1_500), order('b', 1_200, 1_250)],
      ['a', 'b'],
      0,
      2_000,
    );
    expect(t.map((p) => p.decided)).toEqual([
      { a: 1, b: 0 },
      { a: 1, b: 1 },
    ]);
    expect(t[0]!.worstMs).toEqual({ a: 1_400 });
    expect(t[1]!.worstMs).toEqual({ b: 50 });
  });

  it('divides command and CPU deltas by the orders, leaving INFO out', () => {
    const before = {
      calls: new Map([
        ['evalsha', 10],
        ['info', 5],
      ]),
      cpuS: 1,
    };
    const after = {
      calls: new Map([
        ['evalsha', 30],
        ['hset', 40],
        ['info', 50],
      ]),
      cpuS: 1.5,
    };
    const cost = redisCost(before, after, 10);
    expect(cost.commandsPerOrder).toBe(6);
    expect(cost.scriptsPerOrder).toBe(2);
    expect(cost.cpuMsPerOrder).toBe(50);
    expect(cost.top[0]).toEqual({ command: 'hset', perOrder: 4 });
  });
});

describe('targets', () => {
  it('judges the weighted ratio against the configured weights ±10%', () => {
    const base = {
      format: 'conveyor-fairness/1' as const,
      verified: true,
      rounds: [],
    } as unknown as Parameters<typeof evaluateFairnessTargets>[0];
    const weighted = (ratio: number) =>
      evaluateFairnessTargets({
        ...base,
        weighted: {
          tenants: 'weight-3:weight=3,weight-1:weight=1',
          ratio,
          completions: { 'weight-3': 300, 'weight-1': 100 },
          dispatchedRatio: null,
          window: { from: 0, to: 10_000, seconds: 10, source: 'backlog samples' },
          verification: { ok: true, accepted: 400, problems: [] },
        },
      } as unknown as Parameters<typeof evaluateFairnessTargets>[0]).find((t) =>
        t.name.startsWith('weights'),
      )!;
    expect(weighted(3.2).met).toBe(true);
    expect(weighted(2.69).met).toBe(false);
    expect(weighted(3.31).met).toBe(false);
  });

  it('judges throughput on the median round of each side when there are several', () => {
    const round = (fairness: boolean, totalPerS: number) => ({
      fairness,
      totalPerS,
      floodDrainPerS: totalPerS,
      p99: {},
      redisCommandsPerOrder: 1,
      loadAverage: { start: 0, end: 0 },
    });
    const throughput = (rounds: ReturnType<typeof round>[]) =>
      evaluateFairnessTargets({
        format: 'conveyor-fairness/1',
        verified: true,
        rounds,
      } as unknown as Parameters<typeof evaluateFairnessTargets>[0]).find((t) => t.name.startsWith('total'))!;
    // One slow fair round (a busy machine) does not decide it: medians 2000 vs 2100 = 95%.
    const t = throughput([
      round(true, 2_000),
      round(false, 2_100),
      round(false, 2_000),
      round(true, 900),
      round(true, 2_100),
      round(false, 2_200),
    ]);
    expect(t.met).toBe(true);
    expect(t.measured).toContain('2000 vs 2100');
    expect(throughput([round(true, 1_800), round(false, 2_100)]).met).toBe(false);
  });

  it('takes the mean of the two middle values of an even count as the median', () => {
    expect(median([1_595, 1_088])).toBe(1_341.5);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([])).toBe(0);
  });
});
