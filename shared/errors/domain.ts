/**
 * Domain errors carry a stable `code`; only the API maps them to RFC 9457 problems, and workers
 * decide from the class whether a failure is retried.
 */
export abstract class DomainError extends Error {
  abstract readonly code: string;
  /** HTTP status the API answers with. */
  abstract readonly status: number;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export interface FieldError {
  path: string;
  message: string;
}

export class ValidationError extends DomainError {
  readonly code = 'request.invalid';
  readonly status = 400;
  constructor(
    message: string,
    readonly errors: readonly FieldError[],
  ) {
    super(message);
  }
}

export class NotFoundError extends DomainError {
  readonly code = 'resource.not_found';
  readonly status = 404;
}

/** The request is well-formed but the resource's state does not allow it now (e.g. refunding an order not completed). */
export class StateConflictError extends DomainError {
  readonly status = 409;
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class IdempotencyKeyReusedError extends DomainError {
  readonly code = 'idempotency.key_reused';
  readonly status = 422;
  constructor() {
    super('this Idempotency-Key was already used with a different request body');
  }
}

export class IdempotencyKeyInFlightError extends DomainError {
  readonly code = 'idempotency.in_flight';
  readonly status = 409;
  constructor() {
    super('a request with this Idempotency-Key is being processed; retry later');
  }
}

export class DependencyUnavailableError extends DomainError {
  readonly code = 'dependency.unavailable';
  readonly status = 503;
  constructor(
    readonly dependency: string,
    readonly retryAfterSeconds = 5,
  ) {
    super(`${dependency} is unavailable; nothing was accepted, retry later`);
  }
}

/** A command queue's backlog is over its ceiling (`API_MAX_BACKLOG`): shed with 503 + Retry-After. */
export class OverloadedError extends DomainError {
  readonly code = 'service.overloaded';
  readonly status = 503;
  /** The queue (a module's command queue) whose backlog is over its ceiling; absent: not named. */
  readonly queue: string | undefined;
  readonly retryAfterSeconds: number;
  constructor(options: { queue?: string | undefined; retryAfterSeconds?: number } = {}) {
    super(`the ${options.queue ?? 'command'} backlog is over its ceiling; retry later`);
    this.queue = options.queue;
    this.retryAfterSeconds = options.retryAfterSeconds ?? 5;
  }
}

/** Which of a tenant's quotas a command ran into; only the backlog has one today. */
export type TenantQuota = 'backlog';

/**
 * A tenant's backlog quota is full (`TENANT_BACKLOG_QUOTA`, or `backlog_quota` of its `TENANTS` entry):
 * that many of its commands already wait for their turn in the queue. Answered 429 with Retry-After;
 * the command was not enqueued. Other tenants are not affected.
 */
export class TenantQuotaExceededError extends DomainError {
  readonly code = 'tenant.quota_exceeded';
  readonly status = 429;
  /** The tenant whose quota is full (`<key id>` or `<key id>/<sub-tenant>`). */
  readonly tenant: string;
  readonly quota: TenantQuota;
  /** The quota: the most of its commands that may wait for their turn. */
  readonly limit: number;
  /** The queue (a module's command queue) the command was for; absent: not named. */
  readonly queue: string | undefined;
  readonly retryAfterSeconds: number;
  constructor(options: {
    tenant: string;
    limit: number;
    quota?: TenantQuota;
    queue?: string | undefined;
    retryAfterSeconds?: number;
  }) {
    const queue = options.queue === undefined ? '' : ` ${options.queue}`;
    super(
      `tenant ${options.tenant} is at its backlog quota: ${options.limit} of its commands already wait for their turn in the${queue} queue; this one was not accepted, retry later`,
    );
    this.tenant = options.tenant;
    this.quota = options.quota ?? 'backlog';
    this.limit = options.limit;
    this.queue = options.queue;
    this.retryAfterSeconds = options.retryAfterSeconds ?? 5;
  }
}

/** A command or event that can never be processed: never retried, dead-lettered at once. */
export class PoisonMessageError extends Error {
  override readonly name = 'PoisonMessageError';
  constructor(
    message: string,
    readonly details: readonly FieldError[] = [],
  ) {
    super(message);
  }
}
