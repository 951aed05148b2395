/**
 * What one consumer-group member remembers, in memory, about messages at or past a partition's
 * committed offset — the part of a delivery's state that cannot travel in Kafka headers because the
 * message is not copied anywhere:
 * - how often a held (snoozed or parked) message was snoozed, so its snooze backoff grows across the
 *   refetches of its partition; forgotten once it is done;
 * - which messages behind a held one are already done (handled, retried or dead-lettered while the
 *   batch ran), so a refetch from the held offset skips them instead of handling them again.
 *
 * Losing it (a restart, a rebalance) costs only a snooze backoff starting over and duplicate
 * deliveries the consumers already absorb; keeping it never skips work that is not done. Entries are
 * dropped once the committed offset passes them, and for partitions the member no longer owns.
 */
export interface PartitionProgress {
  snoozesOf(topic: string, partition: number, offset: string): number;
  snoozed(topic: string, partition: number, offset: string, snoozes: number): void;
  /** The message is done: its offset may be committed, and a refetch skips it. */
  done(topic: string, partition: number, offset: string): void;
  isDone(topic: string, partition: number, offset: string): boolean;
  /** Everything below `next` (the committed offset: the next to read) is forgotten. */
  committed(topic: string, partition: number, next: string): void;
  /** Keeps only the partitions of this assignment (topic → partitions). */
  retain(assignment: Readonly<Record<string, readonly number[]>>): void;
  /** Entries held in memory (for tests and logs). */
  size(): number;
}

interface Entry {
  snoozes: number;
  done: boolean;
}

export function createPartitionProgress(): PartitionProgress {
  /** `topic|partition` → offset → entry. */
  const partitions = new Map<string, Map<string, Entry>>();
  const keyOf = (topic: string, partition: number) => `${topic}|${partition}`;
  const entryOf = (topic: string, partition: number, offset: string) =>
    partitions.get(keyOf(topic, partition))?.get(offset);

  function upsert(topic: string, partition: number, offset: string): Entry {
    const key = keyOf(topic, partition);
    let offsets = partitions.get(key);
    if (!offsets) partitions.set(key, (offsets = new Map()));
    let entry = offsets.get(offset);
    if (!entry) offsets.set(offset, (entry = { snoozes: 0, done: false }));
    return entry;
  }

  return {
    snoozesOf: (topic, partition, offset) => entryOf(topic, partition, offset)?.snoozes ?? 0,
    snoozed(topic, partition, offset, snoozes) {
      upsert(topic, partition, offset).snoozes = snoozes;
    },
    done(topic, partition, offset) {
      const entry = upsert(topic, partition, offset);
      entry.done = true;
      entry.snoozes = 0;
    },
    isDone: (topic, partition, offset) => entryOf(topic, partition, offset)?.done ?? false,
    committed(topic, partition, next) {
      const key = keyOf(topic, partition);
      const offsets = partitions.get(key);
      if (!offsets) return;
      const bound = BigInt(next);
      for (const offset of offsets.keys()) if (BigInt(offset) < bound) offsets.delete(offset);
      if (offsets.size === 0) partitions.delete(key);
    },
    retain(assignment) {
      const owned = new Set(
        Object.entries(assignment).flatMap(([topic, ps]) => ps.map((p) => keyOf(topic, p))),
      );
      for (const key of partitions.keys()) if (!owned.has(key)) partitions.delete(key);
    },
    size: () => [...partitions.values()].reduce((n, offsets) => n + offsets.size, 0),
  };
}
