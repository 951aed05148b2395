import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createAutoscaler, loadScaledObject, recommend, type ScalerSpec } from '../../bench/scaling/keda.ts';

// The replay's decision function against the examples of the Kubernetes HPA documentation
// ("Horizontal Pod Autoscaling": algorithm details, configurable scaling behavior) and KEDA's.

const spec = (over: Partial<ScalerSpec> = {}): ScalerSpec => ({
  name: 't',
  pollingIntervalS: 30,
  cooldownPeriodS: 300,
  minReplicas: 1,
  maxReplicas: 100,
  targetValue: 100,
  activationTargetValue: 0,
  scaleUp: { stabilizationWindowSeconds: 0, selectPolicy: 'Max', policies: [] },
  scaleDown: { stabilizationWindowSeconds: 0, selectPolicy: 'Max', policies: [] },
  hpaSyncPeriodS: 15,
  tolerance: 0.1,
  ...over,
});

describe('the HPA algorithm (AverageValue metric, as KEDA exposes a metrics-api trigger)', () => {
  it('doubles the replicas when the metric per replica is twice the target, halves them at half', () => {
    expect(recommend(400, 2, spec())).toBe(4); // 200 per replica, target 100
    expect(recommend(100, 2, spec())).toBe(1); // 50 per replica
  });

  it('skips scaling while the ratio is within the tolerance of 1.0', () => {
    expect(recommend(210, 2, spec())).toBe(2); // ratio 1.05
    expect(recommend(230, 2, spec())).toBe(3); // ratio 1.15: ceil(2.3)
  });

  it('asks KEDA`s ceil(metric / targetValue) replicas, clamped to min and max', () => {
    const a = createAutoscaler(spec({ maxReplicas: 20, targetValue: 200 }));
    expect(a.decide(0, 1_000, 1)).toBe(5);
    const b = createAutoscaler(spec({ maxReplicas: 20, targetValue: 200 }));
    expect(b.decide(0, 100_000, 1)).toBe(20);
    const c = createAutoscaler(spec({ minReplicas: 2 }));
    expect(c.decide(0, 0, 3)).toBe(2);
  });
});

describe('scaling behavior (policies and stabilization windows)', () => {
  it('scales up by the policy allowing the most change: Pods 4 or Percent 100 per 15 s (the HPA default)', () => {
    const up = {
      stabilizationWindowSeconds: 0,
      selectPolicy: 'Max' as const,
      policies: [
        { type: 'Percent' as const, value: 100, periodSeconds: 15 },
        { type: 'Pods' as const, value: 4, periodSeconds: 15 },
      ],
    };
    const a = createAutoscaler(spec({ scaleUp: up }));
    expect(a.decide(0, 10_000, 1)).toBe(5); // max(1 + 4, 2 × 1)
    expect(a.decide(5, 10_000, 5)).toBe(5); // the period's budget is spent
    expect(a.decide(15, 10_000, 5)).toBe(10); // a new period: max(5 + 4, 2 × 5)
    expect(a.decide(30, 10_000, 10)).toBe(20);
  });

  it('scales 80 replicas down by 8 (10%) rather than 4 pods, then 72 by 8 again (the documented example)', () => {
    const down = {
      stabilizationWindowSeconds: 0,
      selectPolicy: 'Max' as const,
      policies: [
        { type: 'Pods' as const, value: 4, periodSeconds: 60 },
        { type: 'Percent' as const, value: 10, periodSeconds: 60 },
      ],
    };
    const a = createAutoscaler(spec({ scaleDown: down }));
    expect(a.decide(0, 1_000, 80)).toBe(72);
    expect(a.decide(30, 1_000, 72)).toBe(72); // within the same 60 s period
    expect(a.decide(60, 1_000, 72)).toBe(64);
  });

  it('scales down only to the highest recommendation of the stabilization window (no flapping)', () => {
    const a = createAutoscaler(
      spec({ scaleDown: { stabilizationWindowSeconds: 300, selectPolicy: 'Max', policies: [] } }),
    );
    expect(a.decide(0, 1_000, 10)).toBe(10);
    expect(a.decide(15, 200, 10)).toBe(10); // the window still holds the 10
    expect(a.decide(299, 0, 10)).toBe(10);
    expect(a.decide(301, 300, 10)).toBe(3); // the 10 has left the window: highest since is 3
  });

  it('lets KEDA take a minReplicaCount 0 object to zero only after cooldownPeriod without activity', () => {
    const a = createAutoscaler(spec({ minReplicas: 0, cooldownPeriodS: 300 }));
    expect(a.decide(0, 0, 0)).toBe(0);
    expect(a.decide(10, 5, 0)).toBe(1); // activated above activationTargetValue 0
    expect(a.decide(20, 0, 1)).toBe(1);
    expect(a.decide(309, 0, 1)).toBe(1);
    expect(a.decide(310, 0, 1)).toBe(0);
  });
});

describe('the shipped ScaledObject', () => {
  it('is read from deploy/, so the replay and the cluster cannot drift', () => {
    const file = fileURLToPath(new URL('../../deploy/base/keda-orders.yaml', import.meta.url));
    const so = loadScaledObject(file, 'conveyor-worker-orders');
    expect(so).toMatchObject({ minReplicas: 1, maxReplicas: 20, targetValue: 200, activationTargetValue: 0 });
    expect(so.scaleUp.policies?.length).toBeGreaterThan(0);
    expect(so.scaleDown.stabilizationWindowSeconds).toBeGreaterThan(0);
  });
});
