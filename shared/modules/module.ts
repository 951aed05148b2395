import type { z } from 'zod';
import type { Settled } from '../batch.ts';
import type { EventEnvelope } from '../domain/events.ts';
import type { Pool, PoolClient } from '../db/pool.ts';
import type { Config } from '../config/config.ts';
import type { Logger } from '../observability/logger.ts';
import type { TraceCarrier } from '../observability/tracing/trace-context.ts';
import type { BreakerState } from '../resilience/circuit-breaker.ts';
import type { ModuleApiContext, ResourceExtensions } from '../http/modules.ts';
import type { CommandSummary } from '../search/query.ts';

/**
 * The contract between Conveyor's core and a command module. A module is one folder under `modules/`
 * declaring its command (schema, HTTP routes, handler), its versioned events, its projections, its
 * migrations and its queue; the core — API edge, queues and batching, outbox relay, buses, inbox, dead
 * letters and redrive, metrics, Bull Board, the KEDA scaling endpoint, rebuild — knows modules only
 * through `modules/registry.ts`. `npm run module:new -- <name>` scaffolds one: its folder and its
 * registry line (docs/modules.md).
 *
 * The declaration is light (schemas and names, no I/O): every process imports it. Its HTTP side and its
 * worker side are loaded on demand (`api()`, `worker()`), so a worker process never loads route code and
 * the API never loads handlers.
 */
export interface ModuleDefinition {
  /**
   * Lowercase letters and digits. Names the command queue (`<name>`) and its dead-letter queue
   * (`<name>-dead-letters`), the worker kind in `WORKER_KINDS`, the metrics' `queue` label, the Bull
   * Board entry, the KEDA ScaledObject, and the prefix of its settings (`<NAME>_CONCURRENCY`, …).
   */
  name: string;
  /** One line for operators and the README. */
  description: string;
  /** BullMQ job name of the module's command. */
  jobName: string;
  /** The command's job data (what producers enqueue): checked by the worker; a job that fails it is dead-lettered at once. */
  jobSchema: z.ZodType;
  /**
   * Its events, by type then version: the payload schema the projector checks (an event of a known
   * type whose payload fails it is poison: dead-lettered at once, never retried). Types are
   * `<aggregate>.<past tense>` and unique across modules.
   */
  events: Readonly<Record<string, Readonly<Record<number, z.ZodType>>>>;
  /** Folder of the module's SQL migrations: applied after the core's, in name order, recorded as `<name>/<file>`. */
  migrations?: URL;
  /** Queue and worker defaults; each is overridable with `<NAME>_<SETTING>` (see {@link CommandQueueSettings}). */
  queueDefaults?: Partial<CommandQueueSettings>;
  /**
   * The API-key scopes of its routes: `write` for its commands (POST, PUT, PATCH, DELETE), `read` for
   * its queries (GET, HEAD). `API_KEYS` accepts every scope a registered module declares, and the key
   * that sent a command can read what its `202` points to. Modules may share scopes (refunds use the
   * orders' — a producer that places orders also refunds them and reads those refunds).
   */
  scopes: ModuleScopes;
  /**
   * Where its routes live: path prefixes under `/v1`, a `:name` segment matching any one segment
   * (`/v1/orders/:orderId/refunds`). A request needs the `scopes` of the most specific prefix any
   * module declares (more segments win, then literal segments over `:name` ones); a `/v1` path no
   * module or core rule claims needs `admin`.
   */
  paths: readonly string[];
  /**
   * The command (job) id an event of this module is about, for the projector's `projected` step of
   * the results stream (api/results): e.g. a refund event is keyed by its order but is about its
   * refund. @defaultValue the event's `key`
   */
  commandIdOf?(event: EventEnvelope): string | undefined;
  /**
   * Its commands may be cancelled while not yet decided: the core serves `POST <path>/cancel`
   * (api/routes/cancel.ts) and bulk cancels through shared/commands/cancel.ts. Absent: not cancellable.
   */
  cancel?: CancellableCommands;
  /**
   * Its decided commands may be replayed (bulk action `replay`, shared/bulk): each rebuilt from its
   * write-model row as a new command linked by `replayOf`. Absent: a replay skips its commands.
   */
  replay?: ReplayableCommands;
  /** Its HTTP routes, loaded by the API process. */
  api(): Promise<ModuleApiFactory>;
  /** Its command handler and projection, loaded by worker processes. */
  worker(): Promise<ModuleWorkerFactory>;
}

/** A module's API-key scopes: `<resource>:<access>`, lowercase letters, digits and `-` on each side. */
export interface ModuleScopes {
  /** Its commands: POST, PUT, PATCH, DELETE on its {@link ModuleDefinition.paths}. */
  write: string;
  /** Its queries: GET and HEAD on its {@link ModuleDefinition.paths}. */
  read: string;
}

/** Settings of one module's command queue and its workers (environment `<NAME>_<SETTING>`). */
export interface CommandQueueSettings {
  /** Jobs in progress at once per worker process: BullMQ's prefetch. */
  concurrency: number;
  attempts: number;
  backoffMs: number;
  backoffMaxMs: number;
  /** Micro-batch bound: concurrent jobs whose writes may share one transaction. */
  batchSize: number;
  batchWaitMs: number;
  keepCompletedSeconds: number;
  /** BullMQ job lock: a crashed worker's jobs are recovered once it expires. */
  lockDurationMs: number;
  stalledIntervalMs: number;
}

/** What one command job is, once its data passed {@link ModuleDefinition.jobSchema}. */
export interface Command<Job = unknown, Prepared = unknown> {
  job: Job;
  /** 1 on the first attempt. */
  attempt: number;
  /** What {@link CommandHandler.prepare} returned, when the module has that step. */
  prepared?: Prepared;
  /**
   * The trace context of this command's job span (absent while tracing is off). Commands are decided
   * in batches: a module tags each command's events with it (`withCarrier`) so its outbox row, and the
   * event's publish and projection, join that command's trace.
   */
  trace?: TraceCarrier | undefined;
}

/** Where a dead-lettered command leaves its mark in the module's write model. */
export interface DeadLetteredCommand {
  /** The job data as it came: it may not match the module's schema (that may be why it is here). */
  data: unknown;
  error: Error;
  attempts: number;
  deadLetterId: string;
  correlationId: string;
  at: Date;
}

/**
 * A module's command processing, driven by the core's command worker (workers/commands/worker.ts): the
 * worker parses, retries, batches, dead-letters and acknowledges; the module decides and writes.
 */
export interface CommandHandler<Job = unknown, Prepared = unknown, Outcome = unknown> {
  /** The correlation id and subject (e.g. order id) of a job's data, even malformed: for logs and dead letters. */
  describe(data: unknown): { correlationId: string | null; subjectId: string | null };
  /**
   * Per job, before batching: a call to a downstream the module needs (e.g. payment). A failure
   * {@link CommandHandler.dependency} recognizes burns no attempt: the job waits for the dependency.
   */
  prepare?(job: Job): Promise<Prepared | undefined>;
  /** A downstream the module depends on, and whether an error means it is unavailable. */
  dependency?: { isUnavailable(error: Error): boolean; retryAfterMs(): number };
  /**
   * Decides a batch and commits its write-model rows and outbox events atomically, one outcome per
   * command, in order. Idempotent: a redelivered command changes nothing and emits nothing.
   */
  handleBatch(commands: readonly Command<Job, Prepared>[]): Promise<Settled<Outcome>[]>;
  /** A short status of an outcome for the log line (`completed`, `rejected`, `duplicate`…). */
  statusOf(outcome: Outcome): string;
  /**
   * Inside the dead-letter transaction: the module's write-model state of a dead-lettered command, and
   * the events that tell the read models (appended to the outbox by the core). `[]` for none.
   */
  deadLettered(client: PoolClient, command: DeadLetteredCommand): Promise<EventEnvelope[]>;
  /** Releases what the handler opened (e.g. a circuit breaker). */
  close?(): Promise<void>;
}

/** A module's read models, fed by the core's idempotent projector. */
export interface ModuleProjection {
  /** Read-model tables it owns, emptied (DELETE) before `projections:rebuild` replays the outbox. */
  tables: readonly string[];
  /**
   * Applies events of the module's types, first seen by this consumer (the inbox already claimed
   * them), inside the batch's transaction. Must converge whatever the order events arrive in.
   */
  apply(client: PoolClient, events: readonly EventEnvelope[]): Promise<void>;
}

/** The worker side of a module, built once per worker process. */
export interface ModuleWorkerFactory {
  commands(ctx: ModuleWorkerContext): CommandHandler;
  projection: ModuleProjection;
}

/** What the core hands a module's worker side. */
export interface ModuleWorkerContext {
  pool: Pool;
  logger: Logger;
  config: Config;
  settings: CommandQueueSettings;
  /** Called after a batch committed outbox rows: wakes the relays. */
  onOutboxAppended: () => void;
  /** Circuit-breaker state changes, for the process's metrics. */
  onBreakerState?: (name: string, state: BreakerState) => void;
}

/** The HTTP side of a module: registers its routes on the API's app (see shared/http/modules.ts for the context). */
export interface ModuleApiFactory {
  routes(ctx: ModuleApiContext): void;
  /** Fields this module adds to other modules' resources (e.g. refunds add `refundedCents` to an order). */
  extensions?: ResourceExtensions;
}

/**
 * One command as its GET answers it, with what the core's results need (`Prefer: wait`, the lifecycle
 * stream; api/results): a module's command GET gives this to {@link CommandResource.read}.
 */
export interface CommandView {
  /** The resource exactly as its GET answers it (200). */
  body: Record<string, unknown>;
  /** `queued`, `processing`, or a final status (`completed`, `rejected`, `dead_lettered`…). */
  status: string;
  /** Decided for good: nothing will change it but a redrive. */
  final: boolean;
  /** Attempts that ended (a running one is not counted; a decided command's include the deciding one). */
  attempts: number;
  /** The last failure, while it is not decided (what its next retry is for). */
  lastError: string | null;
  /** The read model has it (its projection ran). */
  projected: boolean;
}

/**
 * A module's command resource, registered by its HTTP side (`registerCommandResource` in
 * api/results): the core answers `Prefer: wait` on its command POSTs (whose `202 Location` matches
 * `path`) and on its GET, and serves `GET <path>/events` (Server-Sent Events of its lifecycle).
 */
export interface CommandResource {
  /** The module whose queue holds the command (its hub channel). */
  module: string;
  /** Its GET, Hono style with one parameter, the command (job) id: `/v1/orders/:orderId`. */
  path: string;
  /** The command by id as its GET answers it, or undefined when nobody knows it. */
  read(id: string): Promise<CommandView | undefined>;
}

/**
 * A module's cancellable commands (shared/commands/cancel.ts drives the cancel: the job's removal from
 * the queue and the module's write in one PostgreSQL transaction, so exactly one of the cancel and the
 * worker's decision wins).
 */
export interface CancellableCommands {
  /** Its command resource's GET, Hono style with one id parameter (`/v1/orders/:orderId`); cancel is `POST <path>/cancel`. */
  path: string;
  /** The write side of a cancel, loaded on demand by the processes that cancel (API, bulk runner). */
  load(): Promise<CommandCancellation>;
}

/** A command to cancel, as its job holds it (read before the job is removed). */
export interface CancelledCommand {
  /** The command (job) id. */
  id: string;
  /** The job data, unchecked: the module parses it. */
  data: unknown;
  /** Attempts that ended before the cancel (ours: BullMQ's `attemptsMade` does not count our retries). */
  attempts: number;
  at: Date;
  /** Who cancels (the audit actor: API key id or console user). */
  actor: string;
  reason: string | null;
}

/** What a cancel's write did: the cancelled row and its events, or nothing because a row was there. */
export type CancelWrite =
  | {
      written: true;
      summary: CommandSummary;
      /** The module's `<aggregate>.cancelled` event(s), appended to the outbox by the core in the same transaction. */
      events: EventEnvelope[];
      /** The batch the command was posted in (shared/batches counts it as decided). */
      batchId?: string | undefined;
    }
  | { written: false; existing: CommandSummary };

/** The module side of a cancel. */
export interface CommandCancellation {
  /** Whether `id` can name one of its commands (e.g. a UUID); anything else is unknown (404). */
  isId(id: string): boolean;
  /**
   * Inside the cancel's transaction: writes the command's `cancelled` row from its job data unless the
   * write model already has a row for it (decided, or cancelled before), whose state it then returns.
   * Throws a `StateConflictError` when the job data is not a command of the module (it will be dead-lettered).
   */
  cancel(client: PoolClient, command: CancelledCommand): Promise<CancelWrite>;
  /** The write model's row of a command (decided or cancelled); undefined when there is none. */
  find(db: Pool | PoolClient, id: string): Promise<CommandSummary | undefined>;
}

/** A module's replayable commands: the rebuild is loaded on demand by the process that replays (bulk runner). */
export interface ReplayableCommands {
  load(): Promise<CommandReplay>;
}

/** A decided command as its write model has it, ready to be posted again. */
export interface ReplayableCommand {
  /** Its status in the write model (`rejected`, `dead_lettered`, `completed`…). */
  status: string;
  /** Who it was for (fairness: its turn and quota), null when its command named none. */
  tenant: string | null;
  /**
   * The job data of its replay: the same payload, producer (API key), tenant and correlation id, under
   * the new command id `id`, accepted at `acceptedAt`, with `replayOf` naming the original.
   */
  job(id: string, acceptedAt: Date): unknown;
}

/** The module side of a replay. */
export interface CommandReplay {
  /** The write model's rows of `ids` (those it has), in one query. */
  load(db: Pool | PoolClient, ids: readonly string[]): Promise<Map<string, ReplayableCommand>>;
}
