/**
 * Progress output: a one-line bar redrawn in place on a TTY, plain timestamped lines otherwise (CI
 * logs, the smoke test), so a long phase never looks hung and a log file stays readable.
 */
export interface Progress {
  /** A phase headline. */
  step(message: string): void;
  /** Progress of the current phase: `done` of `total` (total 0 = unknown). */
  update(label: string, done: number, total: number): void;
  /** Ends the current bar with a summary line. */
  done(message: string): void;
  /** Whether a TTY bar is drawn (autocannon's own bar is used then, too). */
  readonly tty: boolean;
}

const PLAIN_EVERY_MS = 5_000;

/** @example const progress = createProgress(process.stderr); progress.step('baselines'); */
export function createProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = Boolean(stream.isTTY);
  const started = Date.now();
  let lastPlain = 0;
  let barShown = false;
  const stamp = () => `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
  const clearBar = () => {
    if (tty && barShown) stream.write('\r\x1b[2K');
    barShown = false;
  };
  return {
    tty,
    step(message) {
      clearBar();
      stream.write(`${stamp()} ${message}\n`);
    },
    update(label, done, total) {
      if (tty) {
        const width = 30;
        const ratio = total > 0 ? Math.min(1, done / total) : 0;
        const filled = Math.round(ratio * width);
        const bar =
          total > 0 ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round(ratio * 100)}%` : '';
        stream.write(`\r\x1b[2K  ${label} ${bar} ${done}${total > 0 ? `/${total}` : ''}`);
        barShown = true;
        return;
      }
      if (Date.now() - lastPlain < PLAIN_EVERY_MS) return;
      lastPlain = Date.now();
      stream.write(`${stamp()}   ${label}: ${done}${total > 0 ? `/${total}` : ''}\n`);
    },
    done(message) {
      clearBar();
      lastPlain = 0;
      stream.write(`${stamp()}   ${message}\n`);
    },
  };
}
