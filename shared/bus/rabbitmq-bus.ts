import type { BusDeps } from './create-bus.ts';
import type { EventBus } from './event-bus.ts';

export interface RabbitmqBusConfig {
  url: string;
  exchange: string;
  queue: string;
  prefetch: number;
  confirmTimeoutMs: number;
  maxAttempts: number;
  backoffMs: number;
}

export function createRabbitmqBus(_deps: BusDeps, _config: RabbitmqBusConfig): EventBus {
  throw new Error('the RabbitMQ bus is not implemented yet');
}
