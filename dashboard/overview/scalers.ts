import { MODULES } from '../../modules/registry.ts';
import { scalerTargetOf } from '../../shared/modules/settings.ts';
import type { Config } from '../../shared/config/config.ts';

/**
 * The KEDA ScaledObjects `deploy/` ships, as far as the Overview needs them to say how many replicas
 * KEDA would ask for right now. The dashboard's image does not carry `deploy/` (nor a YAML parser), so
 * the numbers live here and test/e2e/console.test.ts reads every manifest and fails when they drift.
 */
export interface ScalerTarget {
  /** `metadata.name` of the ScaledObject. */
  scaledObject: string;
  /** The manifest, relative to the repository root. */
  manifest: string;
  /** What the trigger reads, for people. */
  metric: string;
  /** Per-replica target: `targetValue` (metrics-api), `lagThreshold` (kafka), `value` (rabbitmq). */
  targetValue: number;
  /** `activationTargetValue` / `activationLagThreshold` / `activationValue`. */
  activationValue: number;
  minReplicas: number;
  maxReplicas: number;
}

/** The order workers, on the `orders` backlog read from `/v1/scaling/orders`. */
export const ORDERS_SCALER: ScalerTarget = {
  scaledObject: 'conveyor-worker-orders',
  manifest: 'deploy/base/keda-orders.yaml',
  metric: 'orders backlog (waiting + prioritized + held jobs)',
  targetValue: 200,
  activationValue: 0,
  minReplicas: 1,
  maxReplicas: 20,
};

/**
 * Every command queue's ScaledObject, by queue name: orders' hand-written one, and the others rendered
 * into deploy/base/modules.yaml from the orders template with the module's own target.
 */
export const COMMAND_SCALERS: Readonly<Record<string, ScalerTarget>> = Object.fromEntries(
  MODULES.map((m) => [
    m.name,
    m.name === 'orders'
      ? ORDERS_SCALER
      : {
          ...ORDERS_SCALER,
          scaledObject: `conveyor-worker-${m.name}`,
          manifest: 'deploy/base/modules.yaml',
          metric: `${m.name} backlog (waiting + prioritized + held jobs)`,
          targetValue: scalerTargetOf(m),
        },
  ]),
);

/** The projection workers: one ScaledObject per bus overlay (none shipped for every bus). */
export const PROJECTIONS_SCALERS: Readonly<Partial<Record<Config['bus']['kind'], ScalerTarget>>> = {
  bullmq: {
    scaledObject: 'conveyor-worker-projections',
    manifest: 'deploy/overlays/bullmq/keda-projections.yaml',
    metric: 'events backlog (waiting + prioritized jobs)',
    targetValue: 20,
    activationValue: 0,
    minReplicas: 1,
    maxReplicas: 10,
  },
  kafka: {
    scaledObject: 'conveyor-worker-projections',
    manifest: 'deploy/overlays/kafka/keda-projections.yaml',
    metric: 'consumer-group lag (messages)',
    targetValue: 1000,
    activationValue: 10,
    minReplicas: 1,
    maxReplicas: 6,
  },
  rabbitmq: {
    scaledObject: 'conveyor-worker-projections',
    manifest: 'deploy/overlays/rabbitmq/keda-projections.yaml',
    metric: 'ready messages in the projections queue',
    targetValue: 200,
    activationValue: 10,
    minReplicas: 1,
    maxReplicas: 10,
  },
  sqs: {
    scaledObject: 'conveyor-worker-projections',
    manifest: 'deploy/overlays/sqs/keda-projections.yaml',
    metric: 'visible messages in the projections queue (packs of up to 100 events)',
    targetValue: 20,
    activationValue: 0,
    minReplicas: 1,
    maxReplicas: 10,
  },
};

/**
 * The replica count KEDA (through the HPA) would ask for at this metric value from a standing start:
 * `ceil(metric / target)` clamped to `[minReplicas, maxReplicas]`, and 0 only where the object allows
 * zero and the metric is at or below its activation value — the formula of bench/scaling/keda.ts
 * (`createAutoscaler(spec).decide(now, metric, 0)`), without the stabilization windows and rate
 * policies that only shape how fast the cluster gets there.
 */
export function desiredReplicas(metric: number, scaler: ScalerTarget): number {
  if (scaler.minReplicas === 0 && metric <= scaler.activationValue) return 0;
  const raw = Math.ceil(Math.max(0, metric) / scaler.targetValue);
  return Math.min(scaler.maxReplicas, Math.max(scaler.minReplicas, 1, raw));
}
