import type { Logger } from '../observability/logger.ts';

export type Release = () => Promise<void>;

export interface Lifecycle {
  /** Registers a cleanup; cleanups run in reverse order of registration. */
  defer(name: string, release: Release): void;
  /** Idempotent: runs every cleanup once, even if one throws, within the deadline. */
  close(): Promise<void>;
  /** Calls `close` on SIGTERM/SIGINT, then exits (0, or 1 if the grace period ran out). */
  handleSignals(graceMs: number): void;
}

export function createLifecycle(log: Logger): Lifecycle {
  const releasers: { name: string; release: Release }[] = [];
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      for (const { name, release } of releasers.toReversed()) {
        await release().catch((err: unknown) => log.error({ err, component: name }, 'release failed'));
      }
    })());
  return {
    defer: (name, release) => void releasers.push({ name, release }),
    close,
    handleSignals(graceMs) {
      const onSignal = (signal: NodeJS.Signals) => {
        log.info({ signal, graceMs }, 'shutting down: finishing in-flight work');
        const force = setTimeout(() => {
          log.error({ graceMs }, 'shutdown grace period exceeded; exiting');
          log.flush();
          process.exit(1);
        }, graceMs + 5_000);
        force.unref();
        void close().then(() => {
          log.info('shutdown complete');
          log.flush();
          process.exit(0);
        });
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    },
  };
}
