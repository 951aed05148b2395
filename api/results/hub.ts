import { setMaxListeners } from 'node:events';
import type { Logger } from '../../shared/observability/logger.ts';
import { duplicateClient, connectionNameOf, whenReady, type Redis } from '../../shared/queue/redis.ts';
import { OutcomeMessageSchema, outcomeChannel, type OutcomeStep } from '../../shared/results/wire.ts';

/**
 * Told of a command's steps: `step` for a message naming it, `undefined` after the hub (re)subscribed
 * — a message may have been missed meanwhile, so look at the command's durable state once.
 */
export type StepListener = (step: OutcomeStep | undefined) => void;

/**
 * The outcome hub of one API process: ONE Redis subscriber connection on every module's steps
 * channel, dispatching each step to this process's listeners of that command (a Map, no per-request
 * polling and no per-request connection).
 */
export interface OutcomeHub {
  /** Listens to one command's steps until the returned function is called. */
  watch(module: string, id: string, listener: StepListener): () => void;
  /** Listeners registered now (waiters and streams): a leak shows here. */
  readonly listening: number;
  /** The subscriber connection (tests cut it with CLIENT KILL to prove a resubscribe re-checks). */
  readonly connection: Redis;
  /**
   * Aborted when the hub starts closing (the API shuts down): waiters answer at once (202), streams
   * end (their clients resume elsewhere with Last-Event-ID), so no open stream holds the shutdown.
   */
  readonly closing: AbortSignal;
  close(): Promise<void>;
}

/**
 * Opens the hub: a subscriber connection duplicated from `redis`, subscribed to `modules`' channels.
 * Resolves once subscribed. After every later reconnect it subscribes again (ioredis would too; this
 * waits for Redis to confirm) and only then calls every listener with `undefined`: what was decided
 * while the connection was down is found by that one re-read, not left to a waiter's timeout.
 */
export async function openOutcomeHub(
  redis: Redis,
  options: { prefix: string; modules: readonly string[]; logger: Logger },
): Promise<OutcomeHub> {
  const log = options.logger.child({ component: 'results-hub' });
  const connection = duplicateClient(redis, {
    connectionName: `${connectionNameOf(redis) ?? 'conveyor'}-results`,
  });
  const channels = new Map(options.modules.map((m) => [outcomeChannel(options.prefix, m), m]));
  const listeners = new Map<string, Set<StepListener>>();
  let listening = 0;
  const closing = new AbortController();
  // Every waiter and stream listens to it: thousands are expected, not a leak.
  setMaxListeners(0, closing.signal);
  const keyOf = (module: string, id: string) => `${module}\u0000${id}`;

  function dispatch(key: string, step: OutcomeStep | undefined): void {
    const set = listeners.get(key);
    if (!set) return;
    for (const l of [...set]) {
      try {
        l(step);
      } catch (err) {
        log.error({ err }, 'results listener threw');
      }
    }
  }

  connection.on('message', (channel: string, text: string) => {
    const module = channels.get(channel);
    if (module === undefined || listening === 0) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const message = OutcomeMessageSchema.safeParse(parsed);
    if (!message.success) {
      log.debug({ channel }, 'results message not understood; ignored');
      return;
    }
    for (const step of message.data.steps) dispatch(keyOf(module, step.id), step);
  });

  let first = true;
  connection.on('ready', () => {
    if (first) return;
    // A reconnect: subscribe (again) and, once Redis confirmed, have every listener look once.
    void connection
      .subscribe(...channels.keys())
      .then(() => {
        log.info({ listeners: listening }, 'results hub resubscribed; re-checking every waiter');
        for (const key of [...listeners.keys()]) dispatch(key, undefined);
      })
      .catch((err: unknown) => log.warn({ err }, 'results hub could not resubscribe'));
  });
  try {
    await whenReady(connection);
    await connection.subscribe(...channels.keys());
  } catch (err) {
    connection.disconnect();
    throw err;
  }
  first = false;

  return {
    watch(module, id, listener) {
      const key = keyOf(module, id);
      let set = listeners.get(key);
      if (!set) listeners.set(key, (set = new Set()));
      set.add(listener);
      listening++;
      let removed = false;
      return () => {
        if (removed) return;
        removed = true;
        listening--;
        set.delete(listener);
        if (set.size === 0) listeners.delete(key);
      };
    },
    get listening() {
      return listening;
    },
    connection,
    closing: closing.signal,
    async close() {
      if (closing.signal.aborted) return;
      closing.abort();
      await connection.quit().catch(() => connection.disconnect());
    },
  };
}
