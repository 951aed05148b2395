/**
 * Coalesces concurrent calls into one batch, bounded by size and wait time. Each caller's promise
 * settles with its own item's outcome, after the batch's effect is done (e.g. committed), so work
 * is acknowledged only after it is durable — yet many jobs share one transaction.
 */
export interface Batcher<I, O> {
  submit(item: I): Promise<O>;
  /** Flushes what is pending and waits for batches in flight. */
  drain(): Promise<void>;
}

export type Settled<O> = { ok: true; value: O } | { ok: false; error: unknown };

export interface BatcherOptions<I, O> {
  maxSize: number;
  maxWaitMs: number;
  /** Processes a batch; returns one outcome per item, in order. */
  run(items: readonly I[]): Promise<Settled<O>[]>;
}

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

export function createBatcher<I, O>(options: BatcherOptions<I, O>): Batcher<I, O> {
  let pending: Pending<I, O>[] = [];
  let timer: NodeJS.Timeout | undefined;
  const inFlight = new Set<Promise<void>>();

  const flush = (): void => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (pending.length === 0) return;
    const batch = pending;
    pending = [];
    const done = options
      .run(batch.map((p) => p.item))
      .then(
        (outcomes) =>
          batch.forEach((p, i) => {
            const o = outcomes[i];
            if (!o) p.reject(new Error('batch returned no outcome for an item'));
            else if (o.ok) p.resolve(o.value);
            else p.reject(o.error);
          }),
        (error: unknown) => batch.forEach((p) => p.reject(error)),
      )
      .finally(() => inFlight.delete(done));
    inFlight.add(done);
  };

  return {
    submit(item) {
      return new Promise<O>((resolve, reject) => {
        pending.push({ item, resolve, reject });
        if (pending.length >= options.maxSize) flush();
        else if (!timer) timer = setTimeout(flush, options.maxWaitMs);
      });
    },
    async drain() {
      flush();
      await Promise.allSettled([...inFlight]);
    },
  };
}

/**
 * Runs a batch as one unit; if the unit fails, retries each item alone so one bad item cannot fail
 * its neighbours.
 */
export async function runWithIsolation<I, O>(
  items: readonly I[],
  whole: (items: readonly I[]) => Promise<O[]>,
): Promise<Settled<O>[]> {
  try {
    const values = await whole(items);
    return values.map((value) => ({ ok: true, value }));
  } catch (error) {
    if (items.length === 1) return [{ ok: false, error }];
    return Promise.all(
      items.map(async (item): Promise<Settled<O>> => {
        try {
          const [value] = await whole([item]);
          return { ok: true, value: value as O };
        } catch (err) {
          return { ok: false, error: err };
        }
      }),
    );
  }
}
