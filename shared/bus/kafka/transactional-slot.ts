import { randomBytes } from 'node:crypto';
import type { Logger } from '../../observability/logger.ts';
import { createProducerRedis, whenReady, type Redis } from '../../queue/redis.ts';
import { withDeadline } from '../../runtime/deadline.ts';
import { currentReplica } from './connection.ts';

/**
 * Transactional ids from a fixed pool of slots, `<KAFKA_TRANSACTIONAL_ID>-<n>`, leased in Redis.
 *
 * Why: a relay killed (`kill -9`, a node lost) inside a transaction leaves it open, and every
 * read-committed consumer of the partitions it touched stops at it (the last stable offset) until
 * something ends it. Kafka ends it in two ways: the broker aborts it after `transaction.timeout.ms`
 * (kafkajs asks for 60 s), or a producer initialised with the *same* transactional id fences the old
 * one and aborts its open transaction at once. An id made from the pod name never comes back when a
 * Deployment replaces the pod, so readers waited for the timeout. With slots, the id does come back:
 *
 * - **Lease.** A relay takes the lowest free slot with `SET <slot key> <owner> NX PX <leaseMs>`, adds
 *   it to the set of slots in use, and renews the lease every `leaseMs / 3`. Taking a slot a dead relay
 *   held (its lease expired) fences it: the bus initialises its producer before its first send.
 * - **Sweep.** A replacement usually starts while the dead relay's lease still runs, and takes another
 *   slot. So every relay also looks, on each renewal, for slots in use whose lease has expired (their
 *   relay died without releasing them), leases such a slot for a moment, fences it (InitProducerId with
 *   its id: the open transaction is aborted) and frees it. The stall after a crash is therefore bounded
 *   by about `leaseMs * 4 / 3`, not by the transaction timeout.
 * - **Release.** A clean close deletes the lease and takes the slot out of the set: nothing to fence.
 * - **Lost lease.** A renewal that finds the lease gone or someone else's (a pause or a Redis outage
 *   longer than the lease) calls `onLost`: the bus drops the producer and takes a slot afresh before its
 *   next send, instead of fencing the relay that took its old slot. `acquire` re-checks the lease each
 *   time it hands out the id, so a new producer never starts on a slot this relay no longer owns.
 *
 * Keys (one hash tag, so one Redis Cluster slot): `<prefix>:kafka-txn:{<base>}:slot:<n>` (the lease,
 * value = the owner) and `<prefix>:kafka-txn:{<base>}:in-use` (the set of slot numbers).
 */
export interface TransactionalSlotLeaseOptions {
  /** `KAFKA_TRANSACTIONAL_ID`: the slots' ids are `<base>-<n>`. */
  base: string;
  redisUrl: string;
  redisClusterNodes?: readonly string[] | undefined;
  /** The deployment's Redis key prefix (`QUEUE_PREFIX`). */
  redisPrefix: string;
  /** How long a slot stays leased without renewal: a dead relay's transaction is aborted about `leaseMs * 4/3` after it died. */
  leaseMs: number;
  /** Slots 0 … maxSlots−1. @defaultValue 256 */
  maxSlots?: number;
  logger: Logger;
  /**
   * Initialises a producer with `transactionalId` (InitProducerId): fences whoever used it and aborts
   * its open transaction. Used on slots whose relay died.
   */
  fence(transactionalId: string): Promise<void>;
  /** The held slot's lease was lost: stop using `transactionalId` (the next `acquire` takes a slot again). */
  onLost(transactionalId: string): void;
}

export interface TransactionalSlotLease {
  /**
   * The transactional id of the slot this process holds — its lease checked and renewed now — or of
   * the lowest free slot, which it then leases and keeps renewing.
   */
  acquire(): Promise<string>;
  /**
   * Stops renewing and frees the slot. `clean`: no transaction of this relay is left open (the producer
   * disconnected after its last send), so the slot is forgotten; otherwise it stays in use for a sweep
   * to fence. Closes the Redis connection.
   */
  release(clean: boolean): Promise<void>;
}

/** The transactional id of slot `n`. */
export function slotTransactionalId(base: string, n: number): string {
  return `${base}-${n}`;
}

/** The Redis keys of `base`'s slots. */
export function transactionalSlotKeys(redisPrefix: string, base: string) {
  const root = `${redisPrefix}:kafka-txn:{${base}}`;
  return { slot: (n: number) => `${root}:slot:${n}`, inUse: `${root}:in-use` };
}

// Renew only our own lease: 1 renewed, 0 gone or someone else's.
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
// Free our own lease; with ARGV[3] = '1' also forget the slot (nothing left open on it).
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) if ARGV[3] == '1' then redis.call('SREM', KEYS[2], ARGV[2]) end return 1 end return 0`;

const COMMAND_TIMEOUT_MS = 2_000;

/** A {@link TransactionalSlotLease}; nothing connects until the first `acquire`. */
export function createTransactionalSlotLease(options: TransactionalSlotLeaseOptions): TransactionalSlotLease {
  const { base, leaseMs } = options;
  const maxSlots = options.maxSlots ?? 256;
  const keys = transactionalSlotKeys(options.redisPrefix, base);
  const replica = currentReplica();
  const owner = `${replica.hostname}-${replica.pid}-${randomBytes(4).toString('hex')}`;
  const log = options.logger.child({ component: 'kafka-transactional-slot', base });
  const tickMs = Math.max(100, Math.floor(leaseMs / 3));

  let redis: Redis | undefined;
  let held: { n: number; renewedAt: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;
  let released = false;

  async function connection(): Promise<Redis> {
    if (!redis) {
      redis = createProducerRedis(
        {
          url: options.redisUrl,
          clusterNodes: options.redisClusterNodes,
          commandTimeoutMs: COMMAND_TIMEOUT_MS,
        },
        'conveyor-kafka-txn-slot',
      );
    }
    await withDeadline(
      whenReady(redis),
      5_000,
      () => new Error('Redis not reachable for the Kafka transactional slot lease'),
    );
    return redis;
  }

  /** Renews the held lease; false when it is not ours any more. */
  async function renew(r: Redis, n: number): Promise<boolean> {
    return Number(await r.eval(RENEW, 1, keys.slot(n), owner, leaseMs)) === 1;
  }

  /** Forgets the held slot `n`; `notify`: tell the bus (not when `acquire`, its caller, finds out). */
  function lose(n: number, why: string, notify = true): void {
    if (held?.n !== n) return;
    held = undefined;
    const id = slotTransactionalId(base, n);
    log.warn(
      { transactionalId: id, why },
      'kafka transactional slot lost; a new one is taken before the next send',
    );
    if (notify) options.onLost(id);
  }

  /** Fences every slot in use whose relay died (lease expired, never released). */
  async function sweep(r: Redis): Promise<void> {
    const inUse = await r.smembers(keys.inUse);
    for (const member of inUse) {
      const n = Number(member);
      if (!Number.isInteger(n) || n === held?.n || released) continue;
      if ((await r.exists(keys.slot(n))) === 1) continue; // a live relay's
      const token = `${owner}-sweep`;
      if ((await r.set(keys.slot(n), token, 'PX', leaseMs, 'NX')) !== 'OK') continue;
      const id = slotTransactionalId(base, n);
      let fenced = false;
      try {
        const started = Date.now();
        await withDeadline(options.fence(id), leaseMs);
        fenced = true;
        log.warn(
          { transactionalId: id, ms: Date.now() - started },
          'kafka transactional slot of a relay that died fenced; its open transaction is aborted',
        );
      } catch (err) {
        log.warn(
          { err, transactionalId: id },
          'fencing an abandoned kafka transactional slot failed; retried later',
        );
      } finally {
        await r.eval(RELEASE, 2, keys.slot(n), keys.inUse, token, String(n), fenced ? '1' : '0');
      }
    }
  }

  async function tick(): Promise<void> {
    const r = redis;
    if (!r || released) return;
    const current = held;
    if (current) {
      const sentAt = Date.now();
      try {
        if (await renew(r, current.n)) current.renewedAt = sentAt;
        else lose(current.n, 'the lease expired or another relay took the slot');
      } catch (err) {
        if (Date.now() - current.renewedAt >= leaseMs) lose(current.n, 'not renewed within the lease');
        else log.warn({ err }, 'renewing the kafka transactional slot lease failed; retried');
      }
    }
    try {
      await sweep(r);
    } catch (err) {
      log.warn({ err }, 'looking for abandoned kafka transactional slots failed; retried');
    }
  }

  function schedule(): void {
    if (released || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      ticking = tick().finally(() => {
        ticking = undefined;
        schedule();
      });
    }, tickMs);
    timer.unref();
  }

  return {
    async acquire() {
      if (released) throw new Error('kafka transactional slot lease is released');
      const r = await connection();
      if (held) {
        const sentAt = Date.now();
        if (await renew(r, held.n)) {
          held.renewedAt = sentAt;
          return slotTransactionalId(base, held.n);
        }
        lose(held.n, 'the lease expired or another relay took the slot', false);
      }
      for (let n = 0; n < maxSlots; n++) {
        const sentAt = Date.now();
        if ((await r.set(keys.slot(n), owner, 'PX', leaseMs, 'NX')) !== 'OK') continue;
        // In the set before any producer uses the id: a crash from here on leaves it to a sweep.
        await r.sadd(keys.inUse, String(n));
        held = { n, renewedAt: sentAt };
        schedule();
        const id = slotTransactionalId(base, n);
        log.info({ transactionalId: id, leaseMs }, 'kafka transactional slot leased');
        return id;
      }
      throw new Error(`all ${maxSlots} kafka transactional slots of "${base}" are leased`);
    },
    async release(clean) {
      if (released) return;
      released = true;
      clearTimeout(timer);
      timer = undefined;
      await ticking?.catch(() => undefined);
      const r = redis;
      redis = undefined;
      if (!r) return;
      const current = held;
      held = undefined;
      try {
        if (current)
          await r.eval(
            RELEASE,
            2,
            keys.slot(current.n),
            keys.inUse,
            owner,
            String(current.n),
            clean ? '1' : '0',
          );
      } catch (err) {
        log.warn({ err }, 'releasing the kafka transactional slot failed; its lease expires by itself');
      } finally {
        await r.quit().catch(() => r.disconnect());
      }
    },
  };
}
