import { OrderEventTypes } from '../../modules/orders/events.ts';
import {
  createRabbitmqBus,
  rabbitmqTopology,
  type RabbitmqBusConfig,
} from '../../shared/bus/rabbitmq/bus.ts';
import { deleteRabbitmqTopology, peekQueue, withAmqpChannel } from '../../shared/bus/rabbitmq/admin.ts';
import { groupTopology } from '../../shared/bus/rabbitmq/topology.ts';
import { PROJECTOR_CONSUMER } from '../../workers/projections/projector.ts';
import { describeBusContract, SECOND_GROUP, type BusContractContext } from './bus-contract.ts';

function busConfig(ctx: BusContractContext): RabbitmqBusConfig {
  return {
    ...ctx.config.bus.rabbitmq,
    maxAttempts: ctx.maxAttempts,
    backoffMs: ctx.backoffMs,
    snoozeMs: ctx.snoozeMs,
    snoozeMaxMs: ctx.snoozeMaxMs,
    shutdownGraceMs: 1_000,
    reconnectMinMs: 50,
  };
}

/** The queues the contract's subscriptions (group `projections`) consume from. */
const topologyOf = (ctx: BusContractContext) =>
  groupTopology(rabbitmqTopology(busConfig(ctx)), PROJECTOR_CONSUMER);

function stringHeaders(headers: Record<string, unknown> | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers ?? {}).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
  );
}

describeBusContract('rabbitmq', async (ctx) => createRabbitmqBus(ctx, busConfig(ctx)), {
  // Up to `prefetch` handlers run at once and finish in any order; retries come back behind later
  // events. The projector does not depend on order (see the adapter's top comment).
  ordersPerKey: false,
  // After `shutdownGraceMs` close() closes the connection under a hung handler: the broker requeues.
  closeAbandonsInFlight: true,
  async publishRaw(ctx, body, headers) {
    // A foreign producer: plain amqplib, no codec, no message id, straight to the events exchange.
    await withAmqpChannel(ctx.config.bus.rabbitmq.url, async (channel) => {
      channel.publish(ctx.config.bus.rabbitmq.exchange, OrderEventTypes.placed, body, {
        headers,
        persistent: true,
      });
      await channel.checkExchange(ctx.config.bus.rabbitmq.exchange); // a round trip: the publish is processed
    });
  },
  async transportDeadLetters(ctx) {
    const messages = await peekQueue(ctx.config.bus.rabbitmq.url, topologyOf(ctx).dlq);
    return messages.map((m) => ({ payload: m.content, headers: stringHeaders(m.properties.headers) }));
  },
  async cleanup(ctx) {
    await deleteRabbitmqTopology(ctx.config.bus.rabbitmq.url, rabbitmqTopology(busConfig(ctx)), [
      PROJECTOR_CONSUMER,
      SECOND_GROUP,
    ]);
  },
});
