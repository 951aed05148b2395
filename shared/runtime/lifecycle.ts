import type { Logger } from '../observability/logger.ts';

export type Release = () => Promise<void>;

/**
 * Exit code of a process that stopped because one of its components could no longer do its work
 * (sysexits' EX_SOFTWARE). Distinct from 0 (clean shutdown) and 1 (failed start, or a shutdown that
 * overran its grace period), so a supervisor or a log search can tell the three apart.
 */
export const EXIT_FATAL = 70;

/** Why the process can no longer do its work: what `/healthz` reports once a component failed. */
export interface Failure {
  component: string;
  reason: string;
  /** ISO timestamp of the failure. */
  since: string;
}

/**
 * Reports that `component` can no longer do its work and will not recover by itself: its consumer
 * gave up, its loop died. Components get one through their deps; {@link Lifecycle.fail} is the
 * process's, so they never reach for process-level things themselves.
 */
export type OnFatal = (component: string, err: Error) => void;

export interface Lifecycle {
  /** Registers a cleanup; cleanups run in reverse order of registration. */
  defer(name: string, release: Release): void;
  /** Idempotent: runs every cleanup once, even if one throws, within the deadline. */
  close(): Promise<void>;
  /**
   * Makes this lifecycle own the process: SIGTERM/SIGINT → `close` → exit 0 (1 if the grace period
   * ran out); a {@link Lifecycle.fail} → `close` → exit {@link EXIT_FATAL}.
   */
  handleSignals(graceMs: number): void;
  /**
   * Records that `component` can no longer work (logged at fatal level with why, reported by every
   * `/healthz` of the process as 503), then — when the lifecycle owns the process — shuts down
   * gracefully and exits {@link EXIT_FATAL}, so Kubernetes or `npm start`'s caller restarts it. The
   * first failure is the one reported.
   */
  fail: OnFatal;
  /** The failure that stopped the process, or undefined while every component can work. */
  failure(): Failure | undefined;
}

/** Error out of anything thrown. */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export function createLifecycle(log: Logger): Lifecycle {
  const releasers: { name: string; release: Release }[] = [];
  let closing: Promise<void> | undefined;
  let failed: Failure | undefined;
  /** Set by `handleSignals`: ends the process with at least `code` once `close` is done. */
  let exit: ((code: number) => void) | undefined;
  const close = () =>
    (closing ??= (async () => {
      for (const { name, release } of releasers.toReversed()) {
        await release().catch((err: unknown) => log.error({ err, component: name }, 'release failed'));
      }
    })());
  const fail: OnFatal = (component, err) => {
    if (failed) {
      log.error({ err, component }, 'another component failed while the process was already failing');
      return;
    }
    failed = { component, reason: err.message, since: new Date().toISOString() };
    log.fatal({ err, component }, `${component} can no longer do its work: ${err.message}; shutting down`);
    exit?.(EXIT_FATAL);
  };
  return {
    defer: (name, release) => void releasers.push({ name, release }),
    close,
    fail,
    failure: () => failed,
    handleSignals(graceMs) {
      let code: number | undefined;
      exit = (wanted) => {
        const first = code === undefined;
        // A failure while a signal's shutdown runs still makes the exit non-zero.
        code = Math.max(code ?? 0, wanted);
        if (!first) return;
        const force = setTimeout(() => {
          log.error({ graceMs }, 'shutdown grace period exceeded; exiting');
          log.flush();
          process.exit(code || 1);
        }, graceMs + 5_000);
        force.unref();
        void close().then(() => {
          log.info({ exitCode: code }, 'shutdown complete');
          log.flush();
          process.exit(code);
        });
      };
      const onSignal = (signal: NodeJS.Signals) => {
        if (code !== undefined) return log.info({ signal }, 'already shutting down');
        log.info({ signal, graceMs }, 'shutting down: finishing in-flight work');
        exit?.(0);
      };
      // `on`, not `once`: under `npm start` the same SIGTERM comes twice (sent to the process group,
      // then forwarded by npm), and a second one must not kill a shutdown in progress.
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      if (failed) exit(EXIT_FATAL); // a component failed before the process was owned
    },
  };
}

/**
 * `onFatal`, or — for a component used outside a process lifecycle (tests, tools) — one that only
 * logs, so a caller that passes none still learns why the component stopped.
 */
export function fatalOrLog(onFatal: OnFatal | undefined, log: Logger): OnFatal {
  return (
    onFatal ?? ((component, err) => log.error({ err, component }, `${component} can no longer do its work`))
  );
}

/**
 * Watches a loop that must run until its owner stops it (a consumer's `run()`, a relay loop): if the
 * promise rejects — or resolves — while `stopping()` is false, the owner can no longer do its work and
 * `onFatal` hears why. Never rejects, so a `close()` may await it.
 * @example const running = superviseLoop('outbox-relay', loop(), onFatal, () => !running);
 */
export function superviseLoop(
  component: string,
  loop: Promise<unknown>,
  onFatal: OnFatal,
  stopping: () => boolean,
): Promise<void> {
  return loop.then(
    () => {
      if (!stopping()) onFatal(component, new Error(`${component} stopped on its own`));
    },
    (err: unknown) => {
      if (!stopping()) onFatal(component, asError(err));
    },
  );
}
