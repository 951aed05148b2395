import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';

/**
 * KEDA's decision for a ScaledObject with one `metrics-api` trigger, as KEDA and the Kubernetes HPA
 * it drives document it, so a replay on this machine scales like the cluster would:
 *
 * - KEDA exposes the trigger's value as an external metric of type AverageValue with the trigger's
 *   `targetValue`; the HPA, every sync period (15 s by default), computes
 *   `desired = ceil(currentReplicas × metric / (targetValue × currentReplicas)) = ceil(metric / targetValue)`,
 *   unless the usage ratio is within the HPA's tolerance (0.1) of 1, when it keeps the current count.
 * - `behavior` (from `advanced.horizontalPodAutoscalerConfig`): stabilization windows (scale up to
 *   the lowest, down to the highest recommendation of the window) and rate policies per period
 *   (`Pods` / `Percent`, `selectPolicy` Max by default), exactly as the HPA's
 *   `stabilizeRecommendationWithBehaviors` and `calculateScale{Up,Down}LimitWithScalingRules`.
 * - Clamped to `[minReplicaCount, maxReplicaCount]`. KEDA itself activates 0 → 1 when the metric is
 *   above `activationTargetValue` (checked every `pollingInterval`) and deactivates 1 → 0 after
 *   `cooldownPeriod` without activity — only when `minReplicaCount` is 0.
 */

const Policy = z.object({
  type: z.enum(['Pods', 'Percent']),
  value: z.number().int().positive(),
  periodSeconds: z.number().int().positive(),
});
const Rules = z.object({
  stabilizationWindowSeconds: z.number().int().min(0).optional(),
  selectPolicy: z.enum(['Max', 'Min', 'Disabled']).default('Max'),
  policies: z.array(Policy).optional(),
});
export type ScalingRules = z.infer<typeof Rules>;

const ScaledObject = z.object({
  kind: z.literal('ScaledObject'),
  metadata: z.object({ name: z.string() }),
  spec: z.object({
    pollingInterval: z.number().int().positive().default(30),
    cooldownPeriod: z.number().int().min(0).default(300),
    minReplicaCount: z.number().int().min(0).default(0),
    maxReplicaCount: z.number().int().positive().default(100),
    advanced: z
      .object({
        horizontalPodAutoscalerConfig: z
          .object({
            behavior: z.object({ scaleUp: Rules.optional(), scaleDown: Rules.optional() }).optional(),
          })
          .optional(),
      })
      .optional(),
    triggers: z
      .array(
        z.object({
          type: z.string(),
          metadata: z.object({
            targetValue: z.coerce.number().positive(),
            activationTargetValue: z.coerce.number().min(0).default(0),
          }),
        }),
      )
      .length(1),
  }),
});

/** The HPA's defaults where `behavior` says nothing (Kubernetes autoscaling/v2). */
const DEFAULT_UP: ScalingRules = {
  stabilizationWindowSeconds: 0,
  selectPolicy: 'Max',
  policies: [
    { type: 'Percent', value: 100, periodSeconds: 15 },
    { type: 'Pods', value: 4, periodSeconds: 15 },
  ],
};
const DEFAULT_DOWN: ScalingRules = {
  stabilizationWindowSeconds: 300,
  selectPolicy: 'Max',
  policies: [{ type: 'Percent', value: 100, periodSeconds: 15 }],
};

export interface ScalerSpec {
  name: string;
  pollingIntervalS: number;
  cooldownPeriodS: number;
  minReplicas: number;
  maxReplicas: number;
  targetValue: number;
  activationTargetValue: number;
  scaleUp: ScalingRules;
  scaleDown: ScalingRules;
  /** The HPA controller's sync period (`--horizontal-pod-autoscaler-sync-period`, 15 s by default). */
  hpaSyncPeriodS: number;
  /** The HPA's tolerance (`--horizontal-pod-autoscaler-tolerance`, 0.1 by default). */
  tolerance: number;
}

/** Reads the ScaledObject named `name` from a manifest file (the one `deploy/` ships). */
export function loadScaledObject(file: string, name: string): ScalerSpec {
  const docs = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as unknown);
  const raw = docs.find(
    (d) => (d as { kind?: string; metadata?: { name?: string } })?.metadata?.name === name,
  );
  if (!raw) throw new Error(`no ScaledObject ${name} in ${file}`);
  const so = ScaledObject.parse(raw);
  const behavior = so.spec.advanced?.horizontalPodAutoscalerConfig?.behavior;
  const trigger = so.spec.triggers[0]!;
  return {
    name: so.metadata.name,
    pollingIntervalS: so.spec.pollingInterval,
    cooldownPeriodS: so.spec.cooldownPeriod,
    minReplicas: so.spec.minReplicaCount,
    maxReplicas: so.spec.maxReplicaCount,
    targetValue: trigger.metadata.targetValue,
    activationTargetValue: trigger.metadata.activationTargetValue,
    scaleUp: { ...DEFAULT_UP, ...behavior?.scaleUp },
    scaleDown: { ...DEFAULT_DOWN, ...behavior?.scaleDown },
    hpaSyncPeriodS: 15,
    tolerance: 0.1,
  };
}

/** The HPA's raw recommendation for an AverageValue external metric, tolerance applied. */
export function recommend(
  metric: number,
  current: number,
  spec: Pick<ScalerSpec, 'targetValue' | 'tolerance'>,
): number {
  if (current === 0) return Math.ceil(metric / spec.targetValue);
  const usageRatio = metric / (spec.targetValue * current);
  if (Math.abs(usageRatio - 1) <= spec.tolerance) return current;
  return Math.ceil(usageRatio * current);
}

interface TimedValue {
  atS: number;
  value: number;
}

/** Replicas added (or removed) within the last `periodS` seconds, from the scale events. */
function changedWithin(events: readonly TimedValue[], nowS: number, periodS: number): number {
  return events.filter((e) => e.atS > nowS - periodS).reduce((sum, e) => sum + e.value, 0);
}

function upLimit(current: number, rules: ScalingRules, events: readonly TimedValue[], nowS: number): number {
  if (rules.selectPolicy === 'Disabled') return current;
  const proposals = (rules.policies ?? []).map((p) => {
    const start = current - changedWithin(events, nowS, p.periodSeconds);
    return p.type === 'Pods' ? start + p.value : Math.ceil(start * (1 + p.value / 100));
  });
  if (proposals.length === 0) return Number.POSITIVE_INFINITY;
  return rules.selectPolicy === 'Min' ? Math.min(...proposals) : Math.max(...proposals);
}

function downLimit(
  current: number,
  rules: ScalingRules,
  events: readonly TimedValue[],
  nowS: number,
): number {
  if (rules.selectPolicy === 'Disabled') return current;
  const proposals = (rules.policies ?? []).map((p) => {
    const start = current + changedWithin(events, nowS, p.periodSeconds);
    return p.type === 'Pods' ? start - p.value : Math.trunc(start * (1 - p.value / 100));
  });
  if (proposals.length === 0) return 0;
  return rules.selectPolicy === 'Min' ? Math.max(...proposals) : Math.min(...proposals);
}

export interface Autoscaler {
  /**
   * One HPA sync at `nowS` (seconds) with the trigger's metric and the replicas running: the replica
   * count to scale to. Call it every `hpaSyncPeriodS`.
   */
  decide(nowS: number, metric: number, current: number): number;
}

/** A stateful replay of KEDA + HPA for one ScaledObject (recommendations and scale events remembered). */
export function createAutoscaler(spec: ScalerSpec): Autoscaler {
  const recommendations: TimedValue[] = [];
  const ups: TimedValue[] = [];
  const downs: TimedValue[] = [];
  let lastActiveS = Number.NEGATIVE_INFINITY;
  return {
    decide(nowS, metric, current) {
      const active = metric > spec.activationTargetValue;
      if (active) lastActiveS = nowS;
      // KEDA's own 0 <-> 1 (only when the ScaledObject allows 0).
      if (spec.minReplicas === 0) {
        if (current === 0) return active ? 1 : 0;
        if (!active && nowS - lastActiveS >= spec.cooldownPeriodS) return 0;
      }
      const raw = Math.min(spec.maxReplicas, Math.max(spec.minReplicas, 1, recommend(metric, current, spec)));
      recommendations.push({ atS: nowS, value: raw });
      const keepS = Math.max(
        spec.scaleUp.stabilizationWindowSeconds ?? 0,
        spec.scaleDown.stabilizationWindowSeconds ?? 0,
      );
      while (recommendations.length > 0 && recommendations[0]!.atS < nowS - keepS) recommendations.shift();
      let up = raw;
      let down = raw;
      for (const r of recommendations) {
        if (r.atS > nowS - (spec.scaleUp.stabilizationWindowSeconds ?? 0)) up = Math.min(up, r.value);
        if (r.atS > nowS - (spec.scaleDown.stabilizationWindowSeconds ?? 0)) down = Math.max(down, r.value);
      }
      let desired = current;
      if (desired < up) desired = up;
      if (desired > down) desired = down;
      if (desired > current) desired = Math.min(desired, upLimit(current, spec.scaleUp, ups, nowS));
      else if (desired < current)
        desired = Math.max(desired, downLimit(current, spec.scaleDown, downs, nowS));
      desired = Math.min(spec.maxReplicas, Math.max(Math.max(spec.minReplicas, 1), desired));
      if (desired > current) ups.push({ atS: nowS, value: desired - current });
      if (desired < current) downs.push({ atS: nowS, value: current - desired });
      return desired;
    },
  };
}
