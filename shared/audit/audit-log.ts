import type { Pool, PoolClient } from '../db/pool.ts';

/** Where an operator acted from. */
export type AuditSource = 'dashboard' | 'api';

/** Who acts and from where: the same for every action of one request. */
export interface AuditActor {
  /** Dashboard user name, or the API's principal (API key id, or `anonymous`). */
  actor: string;
  /** `admin` or `viewer` on the dashboard; null on the API, which has no roles yet. */
  role: string | null;
  source: AuditSource;
  ip: string | null;
  userAgent: string | null;
}

/** One operator action to record. */
export interface NewAuditEntry extends AuditActor {
  /** Stable, dotted verb such as `login.failed` or `dead_letter.redrive` (see {@link AuditActions}). */
  action: string;
  /** What was acted upon: a dead letter id, a queue name, a user name. */
  target: string | null;
  /** Anything else worth knowing later (outcome, filter, HTTP status); never secrets. */
  detail: Record<string, unknown>;
}

/** A recorded action. */
export interface AuditEntry extends NewAuditEntry {
  id: number;
  at: Date;
}

/** The actions recorded by Conveyor itself; Bull Board calls are recorded as `queue.<verb>`. */
export const AuditActions = {
  login: 'login',
  loginFailed: 'login.failed',
  logout: 'logout',
  deadLetterRedrive: 'dead_letter.redrive',
  deadLetterRedriveFailed: 'dead_letter.redrive_failed',
  deadLetterRedriveBulk: 'dead_letter.redrive_bulk',
  deadLetterDiscard: 'dead_letter.discard',
  /** One command cancelled by an operator (`POST /v1/<module>/{id}/cancel`). */
  commandCancel: 'command.cancel',
  /** A bulk action confirmed: its exact query, the confirmed count, who. */
  bulkStart: 'bulk.start',
  /** A bulk action stopped by an operator: the counts so far. */
  bulkCancel: 'bulk.cancel',
  /** A bulk action ended (completed, cancelled or failed): its final counts. */
  bulkFinish: 'bulk.finish',
} as const;

/** Either the pool or a client inside a transaction, so an action and its audit row commit together. */
export type Queryable = Pool | PoolClient;

export interface AuditFilter {
  actor?: string;
  action?: string;
  target?: string;
  /** Keyset cursor: entries with an id below this one. */
  beforeId?: number;
  limit: number;
}

interface Row {
  id: number;
  at: Date;
  actor: string;
  role: string | null;
  source: AuditSource;
  action: string;
  target: string | null;
  detail: Record<string, unknown>;
  ip: string | null;
  user_agent: string | null;
}

const fromRow = (r: Row): AuditEntry => ({
  id: Number(r.id),
  at: r.at,
  actor: r.actor,
  role: r.role,
  source: r.source,
  action: r.action,
  target: r.target,
  detail: r.detail,
  ip: r.ip,
  userAgent: r.user_agent,
});

/**
 * Appends one entry. Pass the transaction's client to make the audit row part of the action it
 * describes (a dead letter is never resolved without a record of who did it).
 */
/** An entry's column values, bounded (actor, action, target, ip and user agent are truncated). */
function auditValues(entry: NewAuditEntry): unknown[] {
  return [
    entry.actor.slice(0, 200),
    entry.role,
    entry.source,
    entry.action.slice(0, 100),
    entry.target?.slice(0, 500) ?? null,
    JSON.stringify(entry.detail),
    entry.ip?.slice(0, 100) ?? null,
    // User agents are attacker-controlled and unbounded: keep what identifies a browser.
    entry.userAgent?.slice(0, 512) ?? null,
  ];
}

export async function insertAudit(db: Queryable, entry: NewAuditEntry): Promise<void> {
  await db.query(
    `INSERT INTO audit_log (actor, role, source, action, target, detail, ip, user_agent)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    auditValues(entry),
  );
}

/** Several entries in one statement (one row each), bounded as {@link insertAudit}'s. */
export async function insertAudits(db: Queryable, entries: readonly NewAuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const columns = entries.map(auditValues);
  await db.query(
    `INSERT INTO audit_log (actor, role, source, action, target, detail, ip, user_agent)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
                          $7::text[], $8::text[])`,
    Array.from({ length: 8 }, (_, c) => columns.map((row) => row[c])),
  );
}

/** The audit log in Postgres table `audit_log`: append and list, newest first. */
export interface AuditLog {
  record(entry: NewAuditEntry): Promise<void>;
  list(filter: AuditFilter): Promise<AuditEntry[]>;
}

/**
 * @example
 * const audit = createAuditLog(pool);
 * await audit.record({ ...who, action: AuditActions.logout, target: who.actor, detail: {} });
 */
export function createAuditLog(pool: Pool): AuditLog {
  return {
    record: (entry) => insertAudit(pool, entry),
    async list(filter) {
      const { rows } = await pool.query<Row>(
        `SELECT * FROM audit_log
          WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2)
            AND ($3::text IS NULL OR target = $3) AND ($4::bigint IS NULL OR id < $4)
          ORDER BY id DESC LIMIT $5`,
        [
          filter.actor ?? null,
          filter.action ?? null,
          filter.target ?? null,
          filter.beforeId ?? null,
          filter.limit,
        ],
      );
      return rows.map(fromRow);
    },
  };
}
