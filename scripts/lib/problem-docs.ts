/**
 * What each error code means, for docs/problems.md. The codes themselves live in the source (error
 * classes' `readonly code`, `problem(status, code)` calls, rejection codes); test/unit/references.test.ts
 * checks that every code found there is documented here and every code here still occurs there.
 */
export interface ProblemDoc {
  /** `problem`: an HTTP problem document; `rejection`: why a command was decided `rejected` (never retried); `internal`: an error in logs and dead letters. */
  kind: 'problem' | 'rejection' | 'internal';
  /** HTTP status, for problems. */
  status?: number;
  meaning: string;
}

export const PROBLEM_DOCS: Readonly<Record<string, ProblemDoc>> = {
  'request.invalid': {
    kind: 'problem',
    status: 400,
    meaning:
      'The body, a query parameter or an id fails its schema; `errors: [{ path, message }]` lists one error per invalid field',
  },
  'request.malformed': { kind: 'problem', status: 400, meaning: 'The body is not valid JSON' },
  'tenant.invalid': {
    kind: 'problem',
    status: 400,
    meaning: 'A malformed `Conveyor-Tenant` header (1–64 letters, digits, `.`, `_` or `-`)',
  },
  'auth.unauthenticated': {
    kind: 'problem',
    status: 401,
    meaning: 'Missing or invalid API key or session (with `WWW-Authenticate: Bearer`)',
  },
  'auth.forbidden': { kind: 'problem', status: 403, meaning: "The key lacks the route's scope" },
  'tenant.forbidden': {
    kind: 'problem',
    status: 403,
    meaning: '`Conveyor-Tenant` sent by a key that may not name sub-tenants (`TENANTS=<key>:sub_tenants=on`)',
  },
  'route.not_found': { kind: 'problem', status: 404, meaning: 'No such route' },
  'resource.not_found': {
    kind: 'problem',
    status: 404,
    meaning: 'No such resource (a dead letter, a batch, …)',
  },
  'order.not_found': {
    kind: 'problem',
    status: 404,
    meaning: 'No order with this id was ever accepted',
  },
  'refund.not_found': {
    kind: 'problem',
    status: 404,
    meaning: 'No refund with this id was ever accepted',
  },
  'webhook.not_found': {
    kind: 'problem',
    status: 404,
    meaning:
      'No webhook endpoint with this id for the request’s tenant (another tenant’s endpoint is not found either)',
  },
  'idempotency.in_flight': {
    kind: 'problem',
    status: 409,
    meaning: 'A request with the same `Idempotency-Key` is still being processed: retry later',
  },
  'order.not_refundable': {
    kind: 'problem',
    status: 409,
    meaning: 'Refund of an order that is not completed yet, or was rejected',
  },
  'dead_letter.not_pending': {
    kind: 'problem',
    status: 409,
    meaning: 'The dead letter was already redriven or discarded (the detail says which)',
  },
  'command.not_cancellable': {
    kind: 'problem',
    status: 409,
    meaning:
      'Cancel of a command already decided or being executed now: `state` says which (`completed`, `rejected`, `dead_lettered`, `processing`)',
  },
  'command.invalid': {
    kind: 'problem',
    status: 409,
    meaning: 'Cancel of a job that is not a valid command of its module: it is dead-lettered, not cancelled',
  },
  'bulk.confirmation_mismatch': {
    kind: 'problem',
    status: 409,
    meaning:
      "A bulk action's start whose token is wrong or expired, or whose `confirmCount` is no longer the selection's: `count` is the fresh one; run the dry run again",
  },
  'bulk.finished': {
    kind: 'problem',
    status: 409,
    meaning: 'Cancel of a bulk action that has already ended (completed, cancelled or failed)',
  },
  'request.too_large': {
    kind: 'problem',
    status: 413,
    meaning:
      'Body over `API_BODY_LIMIT_BYTES` (batch: `API_BATCH_BODY_LIMIT_BYTES`), chunked bodies included; `limitBytes` states the limit',
  },
  'request.unsupported_media_type': {
    kind: 'problem',
    status: 415,
    meaning: 'A body that is not `application/json`',
  },
  'idempotency.key_reused': {
    kind: 'problem',
    status: 422,
    meaning: 'The `Idempotency-Key` was used before with a different body',
  },
  'webhook.destination_refused': {
    kind: 'problem',
    status: 422,
    meaning:
      'The webhook URL resolves to a loopback, private, link-local, multicast or reserved address not opened by `WEBHOOKS_ALLOWED_CIDRS`',
  },
  'webhook.event_type_unknown': {
    kind: 'problem',
    status: 422,
    meaning: 'A subscribed event type (or `<prefix>.*`) that matches no event type',
  },
  'rate_limit.exceeded': {
    kind: 'problem',
    status: 429,
    meaning:
      "The key's read or write budget is used up: `budget` (`reads`/`writes`), `limit`, `windowSeconds`, `Retry-After` and `RateLimit-*` headers",
  },
  'tenant.quota_exceeded': {
    kind: 'problem',
    status: 429,
    meaning:
      "The tenant's backlog quota is full: `tenant`, `quota`, `limit`, `Retry-After`; nothing was enqueued",
  },
  internal: {
    kind: 'problem',
    status: 500,
    meaning: 'An unexpected error (logged with its stack; never sent to the client)',
  },
  'dependency.unavailable': {
    kind: 'problem',
    status: 503,
    meaning: 'Redis or PostgreSQL unavailable (with `Retry-After`); never a `202` that was not enqueued',
  },
  'service.overloaded': {
    kind: 'problem',
    status: 503,
    meaning: 'Backlog over `API_MAX_BACKLOG`, or `RESULTS_MAX_STREAMS` streams open (with `Retry-After`)',
  },
  'webhook.not_configured': {
    kind: 'problem',
    status: 503,
    meaning: 'Production without `WEBHOOKS_SECRET_KEY`: endpoints cannot be registered',
  },
  'currency.unsupported': {
    kind: 'rejection',
    meaning: 'Order: the currency is not in `SUPPORTED_CURRENCIES`',
  },
  'total.too_large': {
    kind: 'rejection',
    meaning: 'Order: the computed total exceeds what the write model can hold',
  },
  'payment.declined': { kind: 'rejection', meaning: 'Order: the payment service declined the payment' },
  'refund.order_not_completed': { kind: 'rejection', meaning: 'Refund: the order is not completed' },
  'refund.currency_mismatch': {
    kind: 'rejection',
    meaning: "Refund: the body's optional `currency` is not the order's",
  },
  'refund.exceeds_order_total': {
    kind: 'rejection',
    meaning: "Refund: with the order's other refunds it would exceed the order's total",
  },
  'circuit.open': {
    kind: 'internal',
    meaning: 'The payment circuit breaker is open: the job waits (snoozed), no attempt spent',
  },
  'circuit.timeout': {
    kind: 'internal',
    meaning: 'A payment call took longer than `CIRCUIT_BREAKER_TIMEOUT_MS`',
  },
  'kafka.unacknowledged': {
    kind: 'internal',
    meaning: 'A Kafka send reported done although a partition never acknowledged it: sent again',
  },
  'kafka.topology_mismatch': {
    kind: 'internal',
    meaning:
      'Existing Kafka topics replicated less than configured: the bus refuses to start, naming each topic',
  },
};
