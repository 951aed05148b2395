import type { Pool } from '../db/pool.ts';
import type { ReadPools } from '../db/read-pools.ts';
import type { Logger } from '../observability/logger.ts';
import type { Redis } from '../queue/redis.ts';
import type { DeadLetterStore } from '../dead-letters/store.ts';
import type { Redriver } from '../dead-letters/redrive.ts';
import type { Config } from '../config/config.ts';
import type { IdempotencyStore } from './idempotency.ts';
import type { CommandTarget } from './modules.ts';
import type { ModuleApiFactory } from '../modules/module.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ApiKey } from '../security/api-keys.ts';
import type { ApiSessionStore } from './sessions.ts';
import type { Tenant } from '../fairness/tenants.ts';

/** Everything the API's routes need; built once in `main.ts`, nothing per request. */
export interface ApiDeps {
  config: Config;
  logger: Logger;
  /** The primary: commands (e.g. a refund's order check), dead-letter actions, probes. */
  pool: Pool;
  /**
   * Where queries read: the read replica (`DATABASE_READ_URL`) with the primary as fallback, or the
   * primary alone. Never used for a write.
   */
  reads: ReadPools;
  /** The runtime's connection: the command queues, probes, queue metrics, the redriver. */
  redis: Redis;
  /**
   * Auto-pipelined connection for the commands every request sends (rate limit, idempotency,
   * sessions): those issued in the same tick leave in one write.
   */
  requestRedis: Redis;
  /** Each registered module's command queue, by module name. */
  commandQueues: ReadonlyMap<string, CommandTarget>;
  /** Each registered module's HTTP side (loaded once at start), in registry order. */
  moduleApis: readonly { name: string; api: ModuleApiFactory }[];
  idempotency: IdempotencyStore;
  deadLetters: DeadLetterStore;
  redrive: Redriver;
  /** This process's metrics: `/metrics`, HTTP timings, the scaling endpoint's queue reads. */
  metrics: Metrics;
  /** API sessions, stored under the SHA-256 of their ids (`createApiSessionStore`). */
  sessions: ApiSessionStore;
  apiKeys: readonly ApiKey[];
}

/** Per-request variables set by middleware. */
export interface ApiEnv {
  Variables: {
    correlationId: string;
    /** The process logger; use `requestLog(c)` for the request's child. */
    rootLog: Logger;
    /** The request's child logger once made; read it through `requestLog(c)`. */
    log: Logger | undefined;
    /** Headers for every response of the request; see `responseHeaders()`. */
    responseHeaders: Record<string, string> | undefined;
    /** The response `respond()` built with those headers already in it. */
    respondedWith: Response | undefined;
    /** Who is calling: the API key's id once auth is configured, else `anonymous`. */
    principal: string;
    /** The scopes the caller's key holds now (a session's too: they are looked up on every request). */
    scopes: readonly string[];
    /**
     * Names the API key behind the request (`credentialOf` its hash), the same for a bearer and the
     * sessions it opened; undefined before auth. A session stores it, not the key's scopes.
     */
    credential: string | undefined;
    /**
     * Who the request's commands are for, for fairness (shared/fairness): the key's tenant, or the
     * sub-tenant its `Conveyor-Tenant` header names when the key may. Set by auth with the principal.
     */
    tenant: Tenant;
  };
}
