import { context, type Context } from '@opentelemetry/api';
import type { JobsOptions } from 'bullmq';
import { inBatchSpan, startMessageSpan } from '../observability/tracing/spans.ts';
import { endSpan, injectCarrier, tracingActive } from '../observability/tracing/trace-context.ts';
import type { CommandQueue } from '../queue/command-queue.ts';
import { connectionForKey, waitForReplicas, type Redis } from '../queue/redis.ts';
import { withDeadline } from '../runtime/deadline.ts';
import { TenantQuotaExceededError } from '../errors/domain.ts';
import type { Admission, FairJob, FairQueue } from '../fairness/fair-queue.ts';
import type { Tenant } from '../fairness/tenants.ts';

/** A command to enqueue: its job id (the command's idempotency key) and data. */
export interface NewJob<Job = unknown> {
  id: string;
  data: Job;
  /** The trace context the job was asked for in (the coalescer keeps each request's); default: the active one. */
  context?: Context | undefined;
  /** Who it is for: its turn in the queue, in-flight limit and backlog quota (with `JobTarget.fair`). */
  tenant?: Tenant | undefined;
}

/**
 * How many replicas must hold a job before it counts as accepted (`REDIS_WAIT_REPLICAS`,
 * `REDIS_WAIT_TIMEOUT_MS`): Redis replicates asynchronously, so without this a failover can lose a
 * job whose 202 was already answered.
 */
export interface ReplicaWait {
  replicas: number;
  timeoutMs: number;
  /**
   * Connections of their own for these writes and their `WAIT` ({@link replicaWriters}). WAIT blocks
   * the connection it runs on: without them it runs on the queue's connection, and every other
   * command sent there (probes, queue metrics, reads) waits behind it.
   */
  writers?: ReplicaWriters | undefined;
}

/** One writer connection, leased for one bulk: its queue of the leased name. */
export interface WriterLease {
  queue: CommandQueue;
  /** Gives the connection back; call only once nothing sent on it is still pending. */
  release(): void;
}

/**
 * A small pool of connections for writes that wait for replicas: a bulk leases one, adds its jobs and
 * runs `WAIT` there, and gives it back once both have returned. One bulk per connection at a time, so
 * a WAIT covers exactly its own bulk and nothing else ever queues behind it; when every connection is
 * busy (replicas missing: each holds for up to `REDIS_WAIT_TIMEOUT_MS`) further bulks wait for one,
 * at most their deadline, and are refused without writing.
 */
export interface ReplicaWriters {
  /** A free connection's queue named `name`; `undefined` if none frees up within `timeoutMs` (or closed). */
  lease(name: string, timeoutMs: number): Promise<WriterLease | undefined>;
  /** Closes the queues made on the connections (the connections stay their owner's). */
  close(): Promise<void>;
}

/** Every writer connection was busy for the whole wait: nothing was written. */
export class WritersBusyError extends Error {
  override readonly name = 'WritersBusyError';
  constructor(readonly waitedMs: number) {
    super(`no Redis connection for replica-waited writes freed up within ${waitedMs} ms`);
  }
}

/**
 * The {@link ReplicaWriters} over `connections` (each used by one bulk at a time); `queueFor` makes a
 * connection's queue of a name, once, on its first lease.
 * @example const writers = replicaWriters(conns, (c, name) => createCommandQueue(c, prefix, name));
 */
export function replicaWriters(
  connections: readonly Redis[],
  queueFor: (connection: Redis, name: string) => CommandQueue,
): ReplicaWriters {
  interface Writer {
    connection: Redis;
    queues: Map<string, CommandQueue>;
  }
  const all: Writer[] = connections.map((connection) => ({ connection, queues: new Map() }));
  const free = [...all];
  const waiting: ((writer: Writer) => void)[] = [];
  let closed = false;

  const give = (writer: Writer) => {
    const next = waiting.shift();
    if (next) next(writer);
    else free.push(writer);
  };
  const leaseOf = (writer: Writer, name: string): WriterLease => {
    let queue = writer.queues.get(name);
    if (!queue) writer.queues.set(name, (queue = queueFor(writer.connection, name)));
    let released = false;
    return {
      queue,
      release() {
        if (released) return;
        released = true;
        give(writer);
      },
    };
  };

  return {
    lease(name, timeoutMs) {
      if (closed) return Promise.resolve(undefined);
      const writer = free.shift();
      if (writer) return Promise.resolve(leaseOf(writer, name));
      return new Promise((resolve) => {
        const take = (w: Writer) => {
          clearTimeout(timer);
          resolve(leaseOf(w, name));
        };
        const timer = setTimeout(() => {
          const at = waiting.indexOf(take);
          if (at !== -1) waiting.splice(at, 1);
          resolve(undefined);
        }, timeoutMs);
        waiting.push(take);
      });
    },
    async close() {
      closed = true;
      for (const writer of all) for (const queue of writer.queues.values()) await queue.close();
    },
  };
}

/** Where and how jobs are added: a module's queue, its command's job name and options. */
export interface JobTarget {
  queue: CommandQueue;
  jobName: string;
  jobOptions: JobsOptions;
  /** Absent or 0 replicas: a job is accepted once its master has it. */
  replicaWait?: ReplicaWait | undefined;
  /**
   * Fair execution between tenants (shared/fairness): jobs with a `tenant` are admitted first, and
   * added held (delayed by `fair.holdMs`) when their turn has not come. Absent: FIFO, as BullMQ.
   */
  fair?: { queue: FairQueue; holdMs: number } | undefined;
}

/** `WAIT` returned fewer replicas than `REDIS_WAIT_REPLICAS` within `REDIS_WAIT_TIMEOUT_MS`. */
export class ReplicasNotReachedError extends Error {
  override readonly name = 'ReplicasNotReachedError';
  constructor(
    readonly wanted: number,
    readonly reached: number,
  ) {
    super(`the job reached ${reached} of ${wanted} Redis replicas in time`);
  }
}

/**
 * Waits until the writes that added `ids` are on `wait.replicas` replicas: Redis `WAIT` on the
 * connection that wrote them — on a Redis Cluster the one to the master owning the queue's hash slot
 * (every job of a queue lives in that slot). WAIT covers every earlier write of that connection, so
 * one call answers for a whole bulk.
 * @throws {ReplicasNotReachedError} fewer replicas acknowledged within `wait.timeoutMs`.
 */
export async function waitForJobReplicas(
  queue: CommandQueue,
  ids: readonly string[],
  wait: ReplicaWait,
): Promise<void> {
  if (wait.replicas <= 0 || ids.length === 0) return;
  const node = connectionForKey(await queue.client, queue.toKey(ids[0]!));
  const reached = await waitForReplicas(node, wait.replicas, wait.timeoutMs);
  if (reached < wait.replicas) throw new ReplicasNotReachedError(wait.replicas, reached);
}

/**
 * Puts one job into Redis; resolves only once Redis has it (or already had that job id). Rejects with
 * a {@link TenantQuotaExceededError} (429) when its tenant's backlog quota is full, else with why it
 * may not be stored (503).
 */
export type Enqueue = (job: NewJob) => Promise<void>;

/** What {@link addBulkExactly} did with each job. */
export interface BulkResult {
  /** The ids Redis has (or already had): answer these accepted. */
  accepted: Set<string>;
  /** Why the others (not in `accepted` nor in `refused`) may not be stored (answer 503). */
  error?: unknown;
  /**
   * Jobs not added on purpose, each with its own answer: a {@link TenantQuotaExceededError} (429) for
   * a job whose tenant's backlog quota is full. Absent when none was refused.
   */
  refused?: Map<string, Error>;
}

/** Retry-After of a backlog quota's 429: the tenant's backlog drains at its share of the workers. */
export const QUOTA_RETRY_AFTER_SECONDS = 5;

/**
 * Which of `ids` have a job in the queue, in one round trip (a pipeline of EXISTS on the job hashes).
 * After a failed `addBulk` — a pipeline, not a transaction, so Redis may have stored some of its jobs
 * before it failed (e.g. `maxmemory` reached under `noeviction`) — this tells which requests were in
 * fact accepted. EXISTS is a read: Redis still answers it when it refuses writes for memory.
 * @throws when any id got no answer (see {@link settleJobsThatExist}, which asks again).
 */
export async function jobsThatExist(queue: CommandQueue, ids: readonly string[]): Promise<Set<string>> {
  const { present, answered } = await askWhichExist(queue, ids);
  const silent = ids.find((id) => !answered.has(id));
  if (silent !== undefined) throw new Error(`no answer whether job ${silent} exists`);
  return present;
}

/** One EXISTS round: the ids Redis answered for (`answered`) and those of them it holds (`present`). */
async function askWhichExist(
  queue: CommandQueue,
  ids: readonly string[],
): Promise<{ present: Set<string>; answered: Set<string> }> {
  const present = new Set<string>();
  const answered = new Set<string>();
  if (ids.length === 0) return { present, answered };
  const client = await queue.client;
  const replies = await client.pipeline(ids.map((id) => ['exists', queue.toKey(id)])).exec();
  if (!replies) throw new Error('pipeline aborted');
  replies.forEach(([err, n], i) => {
    if (err) return;
    answered.add(ids[i]!);
    if (n === 1) present.add(ids[i]!);
  });
  return { present, answered };
}

/**
 * {@link jobsThatExist}, asking again — while the connection is up, for up to `patienceMs` — about
 * the ids that got no answer. A reply can be lost without Redis being down: on a starved process (a
 * loaded machine) the event loop runs the per-command timers (`REDIS_COMMAND_TIMEOUT_MS`) before it
 * reads the replies that arrived meanwhile, so a command Redis answered at once fails as "Command
 * timed out". The add's replies are lost the same way, so this check must hold out: a job it cannot
 * see is answered 503 although stored, and a client retrying without an Idempotency-Key then places
 * the order twice.
 * @returns the ids Redis holds, and those it never answered for (`unknown`).
 */
export async function settleJobsThatExist(
  queue: CommandQueue,
  ids: readonly string[],
  patienceMs: number,
): Promise<{ present: Set<string>; unknown: string[] }> {
  const present = new Set<string>();
  let unknown = [...new Set(ids)];
  const until = Date.now() + patienceMs;
  for (let round = 0; unknown.length > 0; round++) {
    try {
      const answer = await withDeadline(askWhichExist(queue, unknown), Math.max(1, patienceMs));
      for (const id of answer.present) present.add(id);
      unknown = unknown.filter((id) => !answer.answered.has(id));
    } catch {
      // Nothing answered this round (no connection, the pipeline aborted): ask again while patient.
    }
    // The clock is read after the round's I/O: a stall of the loop alone does not end the patience
    // early. A connection that is down answers nothing more (the 503 of a Redis outage stays prompt).
    if (unknown.length === 0 || Date.now() >= until || (await queue.client).status !== 'ready') break;
    await new Promise((r) => setTimeout(r, Math.min(25 * 2 ** round, 500)));
  }
  return { present, unknown };
}

/**
 * Adds `jobs` with one `addBulk` and answers, per job, whether Redis has it. A failed bulk is
 * followed by {@link settleJobsThatExist} (asking again for up to `timeoutMs` about jobs it got no
 * answer for), so the jobs it did store count as accepted; the others (and those Redis never answered
 * for) are rejected with the bulk's error. With
 * `target.replicaWait`, a job counts as accepted only once that many replicas have it too
 * ({@link waitForJobReplicas}); when they do not in time, none is (the jobs may still be kept: a
 * retry with the same job ids is a no-op for those).
 *
 * With `target.fair`, jobs that carry a `tenant` are first admitted ({@link FairQueue.admit}) on the
 * connection that then adds them: those whose turn has not come are added held (delayed by
 * `fair.holdMs`, promoted on their turn), and those whose tenant's backlog quota is full are not
 * added at all but `refused` with a {@link TenantQuotaExceededError}. When admission itself fails,
 * nothing is added (never a job that skipped it) and every job gets that error.
 */
export async function addBulkExactly(
  target: JobTarget,
  jobs: readonly NewJob[],
  timeoutMs: number,
): Promise<BulkResult> {
  const { queue, jobOptions } = target;
  const ids = jobs.map((j) => j.id);
  // Tracing on: one producer span per job, a child of its request's span; its context travels in the
  // job's options (BullMQ's `telemetry.metadata`, JSON of the W3C headers) to the job's consumer span.
  const spans = tracingActive()
    ? jobs.map((job) =>
        startMessageSpan({
          operation: 'send',
          kind: 'producer',
          system: 'bullmq',
          destination: queue.name,
          messageId: job.id,
          parent: job.context ?? context.active(),
        }),
      )
    : undefined;
  const optionsOf = (job: NewJob, i: number): JobsOptions => {
    const carrier = spans?.[i] && injectCarrier(spans[i].context);
    return carrier
      ? { ...jobOptions, jobId: job.id, telemetry: { metadata: JSON.stringify(carrier) } }
      : { ...jobOptions, jobId: job.id };
  };
  const lone = spans?.length === 1 ? spans[0] : undefined;
  const result = lone
    ? // One job: its Redis command is a child of its own producer span.
      await context.with(lone.context, () => addBulkOnce(target, jobs, optionsOf, timeoutMs))
    : spans
      ? await inBatchSpan(
          `send ${queue.name} batch`,
          jobs.length > 1 ? spans : [],
          (s) => s?.context,
          { 'messaging.system': 'bullmq', 'messaging.destination.name': queue.name },
          () => addBulkOnce(target, jobs, optionsOf, timeoutMs),
        )
      : await addBulkOnce(target, jobs, optionsOf, timeoutMs);
  spans?.forEach((s, i) => {
    if (s)
      endSpan(
        s.span,
        result.accepted.has(ids[i]!)
          ? undefined
          : (result.refused?.get(ids[i]!) ?? result.error ?? 'not accepted'),
      );
  });
  return result;
}

/** A job as it is added: its options (held ones delayed by the hold). */
interface Outgoing {
  job: NewJob;
  opts: JobsOptions;
}

/** What admission decided: the jobs to add, in order, and those refused. */
interface Admitted {
  add: Outgoing[];
  refused?: Map<string, Error>;
}

/** Every job as it goes today, no Redis call: no `target.fair`, or no job with a tenant. */
const asToday = (jobs: readonly NewJob[], optionsOf: (job: NewJob, i: number) => JobsOptions): Admitted => ({
  add: jobs.map((job, i) => ({ job, opts: optionsOf(job, i) })),
});

/** The fair queue `jobs` must be admitted to: `target.fair` when any of them carries a tenant. */
const fairnessOf = (target: JobTarget, jobs: readonly NewJob[]): JobTarget['fair'] =>
  target.fair && jobs.some((job) => job.tenant) ? target.fair : undefined;

/**
 * Admits `jobs` on `client` (the connection that then adds them: the script runs before their add,
 * and a replica `WAIT` there covers its writes too). Jobs without a tenant go as today. A job id met
 * twice in one bulk is admitted once and takes that answer both times.
 * @throws whatever the admission call throws (then nothing may be added).
 */
async function admit(
  fair: NonNullable<JobTarget['fair']>,
  queueName: string,
  client: Promise<Redis>,
  jobs: readonly NewJob[],
  optionsOf: (job: NewJob, i: number) => JobsOptions,
): Promise<Admitted> {
  const asked = new Map<string, FairJob>();
  for (const job of jobs)
    if (job.tenant && !asked.has(job.id)) asked.set(job.id, { id: job.id, tenant: job.tenant });
  const fairJobs = [...asked.values()];
  const answers = await fair.queue.admit(await client, fairJobs);
  const how = new Map<string, Admission>(fairJobs.map((j, k) => [j.id, answers[k] ?? 'direct']));
  const add: Outgoing[] = [];
  let refused: Map<string, Error> | undefined;
  jobs.forEach((job, i) => {
    const admission = job.tenant ? how.get(job.id) : 'direct';
    if (admission === 'over-quota' && job.tenant) {
      (refused ??= new Map()).set(
        job.id,
        new TenantQuotaExceededError({
          tenant: job.tenant.id,
          limit: job.tenant.policy.backlogQuota,
          queue: queueName,
          retryAfterSeconds: QUOTA_RETRY_AFTER_SECONDS,
        }),
      );
      return;
    }
    const opts = optionsOf(job, i);
    add.push({ job, opts: admission === 'held' ? { ...opts, delay: fair.holdMs } : opts });
  });
  return refused ? { add, refused } : { add };
}

/** `result` with `refused` added when there is any. */
const withRefused = (result: BulkResult, refused: Map<string, Error> | undefined): BulkResult =>
  refused ? { ...result, refused } : result;

async function addBulkOnce(
  target: JobTarget,
  jobs: readonly NewJob[],
  optionsOf: (job: NewJob, i: number) => JobsOptions,
  timeoutMs: number,
): Promise<BulkResult> {
  const { queue, jobName } = target;
  const wait = target.replicaWait;
  if (wait?.writers && wait.replicas > 0)
    return addOnWriter(target, wait, wait.writers, jobs, optionsOf, timeoutMs);
  const started = Date.now();
  const fair = fairnessOf(target, jobs);
  let admitted: Admitted;
  try {
    admitted = fair
      ? await withDeadline(admit(fair, queue.name, queue.client, jobs, optionsOf), timeoutMs)
      : asToday(jobs, optionsOf);
  } catch (error) {
    return { accepted: new Set(), error };
  }
  const { add, refused } = admitted;
  if (add.length === 0) return withRefused({ accepted: new Set() }, refused);
  const added = add.map((o) => o.job.id);
  // Admission and add share the bulk's deadline.
  const left = Math.max(1, timeoutMs - (Date.now() - started));
  try {
    await withDeadline(addJobs(queue, jobName, add), left);
  } catch (error) {
    const { present: accepted } = await settleJobsThatExist(queue, added, timeoutMs);
    return withRefused(await replicated(target, accepted, error, timeoutMs), refused);
  }
  return withRefused(await replicated(target, new Set(added), undefined, timeoutMs), refused);
}

/** Adds `jobs` to `queue`: one `add` for a lone job, else one `addBulk`. */
function addJobs(queue: CommandQueue, jobName: string, jobs: readonly Outgoing[]): Promise<unknown> {
  // One job: a single EVALSHA on the connection. addBulk builds an ioredis pipeline, and every
  // pipeline copies the connection's ~50 BullMQ script commands onto itself (~0.1 ms of CPU each):
  // at low rates, where most bulks hold one job, that was ~10% of the API's CPU.
  const only = jobs.length === 1 ? jobs[0]! : undefined;
  return only
    ? queue.add(jobName, only.job.data, only.opts)
    : queue.addBulk(jobs.map(({ job, opts }) => ({ name: jobName, data: job.data, opts })));
}

/**
 * {@link addBulkOnce} with replicas to wait for and writer connections: the add and its `WAIT` on a
 * leased connection of their own (so the WAIT covers that add and blocks nothing else), given back
 * once every command sent on it has returned, even after a deadline here answered the caller.
 */
async function addOnWriter(
  target: JobTarget,
  wait: ReplicaWait,
  writers: ReplicaWriters,
  jobs: readonly NewJob[],
  optionsOf: (job: NewJob, i: number) => JobsOptions,
  timeoutMs: number,
): Promise<BulkResult> {
  const lease = await writers.lease(target.queue.name, timeoutMs);
  if (!lease) return { accepted: new Set(), error: new WritersBusyError(timeoutMs) };
  const sent: Promise<unknown>[] = [];
  const send = <T>(command: Promise<T>): Promise<T> => {
    sent.push(command);
    return command;
  };
  try {
    const started = Date.now();
    const fair = fairnessOf(target, jobs);
    let admitted: Admitted;
    try {
      // On the leased connection: its WAIT then covers the admission's writes as well as the add.
      admitted = fair
        ? await withDeadline(
            send(admit(fair, target.queue.name, lease.queue.client, jobs, optionsOf)),
            timeoutMs,
          )
        : asToday(jobs, optionsOf);
    } catch (admitError) {
      return { accepted: new Set(), error: admitError };
    }
    const { add, refused } = admitted;
    if (add.length === 0) return withRefused({ accepted: new Set() }, refused);
    const added = add.map((o) => o.job.id);
    let accepted = new Set(added);
    let error: unknown;
    try {
      const left = Math.max(1, timeoutMs - (Date.now() - started));
      await withDeadline(send(addJobs(lease.queue, target.jobName, add)), left);
    } catch (addError) {
      error = addError;
      // On the writer's connection, behind the add: an add that missed its deadline may still be on
      // its way, and a read on another connection could overtake it (a stored job answered 503).
      ({ present: accepted } = await settleJobsThatExist(lease.queue, added, timeoutMs));
    }
    if (accepted.size === 0) return withRefused({ accepted, error }, refused);
    try {
      await withDeadline(
        send(waitForJobReplicas(lease.queue, [...accepted], wait)),
        timeoutMs + wait.timeoutMs,
      );
    } catch (waitError) {
      return withRefused({ accepted: new Set(), error: waitError }, refused);
    }
    return withRefused(error === undefined ? { accepted } : { accepted, error }, refused);
  } finally {
    void Promise.allSettled(sent).then(() => lease.release());
  }
}

/** `accepted` once `target.replicaWait` is met for them; none (with the reason) when it is not. */
async function replicated(
  target: JobTarget,
  accepted: Set<string>,
  error: unknown,
  timeoutMs: number,
): Promise<BulkResult> {
  const wait = target.replicaWait;
  if (!wait || wait.replicas <= 0 || accepted.size === 0)
    return error === undefined ? { accepted } : { accepted, error };
  try {
    await withDeadline(waitForJobReplicas(target.queue, [...accepted], wait), timeoutMs + wait.timeoutMs);
    return error === undefined ? { accepted } : { accepted, error };
  } catch (waitError) {
    return { accepted: new Set(), error: waitError };
  }
}

export interface CoalescingOptions {
  /** Most jobs per `addBulk`; a full batch is flushed at once. */
  maxBatch: number;
  /**
   * How long a partial batch may wait for company, in ms. 0 = until the current event-loop turn
   * has run (every request whose Redis reply arrived in the same socket read joins the batch).
   */
  maxWaitMs: number;
  /** A bulk not acknowledged by Redis within this many ms fails (its callers answer 503). */
  timeoutMs: number;
  /**
   * Bulks awaiting Redis at once. While that many are out, new jobs wait for one to return and
   * then leave together (unless `maxBatch` fills first): under load batches grow on their own,
   * at low load a job leaves on the next turn by itself.
   */
  maxInFlight: number;
}

interface Pending {
  job: NewJob;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Coalesces concurrent single-job enqueues into one `queue.addBulk` (one Redis pipeline) per
 * event-loop turn (or `maxWaitMs`), at most `maxBatch` jobs each. Every caller still awaits its own
 * job: the promise resolves only after Redis has it, and a bulk that failed part-way rejects exactly
 * the callers whose jobs Redis does not have (never a false 202, never a false 503); a job refused on
 * purpose (its tenant's backlog quota full, see {@link addBulkExactly}) rejects its caller alone with
 * its {@link TenantQuotaExceededError}, the rest of the bulk unaffected. Job ids are kept, so
 * BullMQ's dedupe by job id (idempotency-derived order ids) works as with `queue.add`.
 * @example const enqueue = coalescingEnqueue({ queue, jobName, jobOptions }, { maxBatch: 256, maxWaitMs: 0, timeoutMs: 2_000, maxInFlight: 1 }); await enqueue({ id, data });
 */
export function coalescingEnqueue(target: JobTarget, options: CoalescingOptions): Enqueue {
  let batch: Pending[] = [];
  let scheduled: NodeJS.Immediate | NodeJS.Timeout | undefined;
  let inFlight = 0;

  const schedule = () => {
    scheduled = options.maxWaitMs > 0 ? setTimeout(flush, options.maxWaitMs) : setImmediate(flush);
  };

  const settled = () => {
    inFlight--;
    if (batch.length > 0 && scheduled === undefined) schedule();
  };

  function flush(): void {
    if (scheduled !== undefined) {
      if (options.maxWaitMs > 0) clearTimeout(scheduled as NodeJS.Timeout);
      else clearImmediate(scheduled as NodeJS.Immediate);
      scheduled = undefined;
    }
    // A full batch always leaves; a partial one waits while enough bulks are out (see `settled`).
    if (batch.length === 0 || (inFlight >= options.maxInFlight && batch.length < options.maxBatch)) return;
    const items = batch;
    batch = [];
    inFlight++;
    void addBulkExactly(
      target,
      items.map((p) => p.job),
      options.timeoutMs,
    ).then(({ accepted, error, refused }) => {
      settled();
      for (const p of items) {
        if (accepted.has(p.job.id)) p.resolve();
        else p.reject(refused?.get(p.job.id) ?? error);
      }
    });
  }

  return (job) =>
    new Promise<void>((resolve, reject) => {
      // The bulk leaves later, from another request's turn: keep this request's trace context.
      const traced = tracingActive() && !job.context ? { ...job, context: context.active() } : job;
      batch.push({ job: traced, resolve, reject });
      if (batch.length >= options.maxBatch) flush();
      else if (scheduled === undefined && inFlight < options.maxInFlight) schedule();
    });
}
