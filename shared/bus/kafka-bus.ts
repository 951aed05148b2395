import type { BusDeps } from './create-bus.ts';
import type { EventBus } from './event-bus.ts';

export interface KafkaBusConfig {
  brokers: readonly string[];
  clientId: string;
  topic: string;
  partitions: number;
  maxAttempts: number;
  backoffMs: number;
}

export function createKafkaBus(_deps: BusDeps, _config: KafkaBusConfig): EventBus {
  throw new Error('the Kafka bus is not implemented yet');
}
