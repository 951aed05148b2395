import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { Queue } from 'bullmq';
import { Hono, type MiddlewareHandler } from 'hono';
import type { AuditLog } from '../shared/audit/audit-log.ts';
import { actorOf, BASE_PATH, type DashboardEnv } from './context.ts';

/** Bull Board twice over the same queues: a full board for admins, a read-only one for viewers. */
export interface Boards {
  admin: Hono;
  viewer: Hono;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const JOB_VERBS = new Set([
  'retry',
  'clean',
  'promote',
  'update-data',
  'delay',
  'priority',
  'remove-unprocessed-children',
]);

type ServerAdapter = Parameters<typeof createBullBoard>[0]['serverAdapter'];

function board(queues: readonly Queue[], readOnly: boolean): Hono {
  const adapter = new HonoAdapter(serveStatic).setBasePath(BASE_PATH);
  createBullBoard({
    // `readOnlyMode` hides every action in the UI; the server-side checks are boardApiGuard and the hook.
    queues: queues.map((q) => new BullMQAdapter(q, { readOnlyMode: readOnly, allowRetries: !readOnly })),
    // @bull-board/hono 9.10.1 nests its own @bull-board/api 9.10.1 whose private fields make its types
    // nominally different from our 9.10.2; at run time the adapter contract is the same.
    serverAdapter: adapter as unknown as ServerAdapter,
    options: {
      uiConfig: {
        boardTitle: readOnly ? 'Conveyor (read-only)' : 'Conveyor',
        miscLinks: [
          { text: 'Dead letters', url: `${BASE_PATH}/dead-letters` },
          { text: 'Audit log', url: `${BASE_PATH}/audit` },
          { text: 'Log out', url: `${BASE_PATH}/logout` },
        ],
        hideDocsLink: true,
      },
      // Second line of defence for viewers: Bull Board itself refuses any mutating call.
      ...(readOnly
        ? {
            handlerHooks: {
              before: ({ method }) =>
                method === 'get' ? undefined : { allow: false, status: 403, message: 'read-only role' },
            },
          }
        : {}),
    },
  });
  return new Hono().route(BASE_PATH, adapter.registerPlugin());
}

/** Bull Board apps mounted at {@link BASE_PATH}; pick one per request by the operator's role. */
export function createBoards(queues: readonly Queue[]): Boards {
  return { admin: board(queues, false), viewer: board(queues, true) };
}

/** What a Bull Board API call does, named for the audit log (`queue.retry_all`, `job.retry`, …). */
export function describeBoardCall(
  method: string,
  path: string,
): { action: string; target: string | null; detail: Record<string, unknown> } {
  const rest = path.slice(`${BASE_PATH}/api/`.length);
  const seg = rest.split('/').map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  const name = (s: string) => s.replaceAll('-', '_');
  if (seg[0] === 'queues' && seg.length === 2)
    return { action: `queues.${name(seg[1]!)}_all`, target: null, detail: {} };
  if (seg[0] === 'queues' && seg.length >= 3) {
    const queue = seg[1]!;
    if (seg.length === 4 && JOB_VERBS.has(seg[3]!)) {
      return {
        action: `job.${name(seg[3]!)}`,
        target: `${queue}/${seg[2]}`,
        detail: { queue, jobId: seg[2] },
      };
    }
    if (seg.length === 4 && (seg[2] === 'retry' || seg[2] === 'clean')) {
      return { action: `queue.${seg[2]}_all`, target: queue, detail: { jobStatus: seg[3] } };
    }
    if (seg[2] === 'job-schedulers') {
      return {
        action: `queue.job_scheduler_${name(seg[4] ?? 'update')}`,
        target: queue,
        detail: { schedulerId: seg[3] },
      };
    }
    return { action: `queue.${seg.slice(2).map(name).join('_')}`, target: queue, detail: {} };
  }
  return { action: `bullboard.${method.toLowerCase()}`, target: rest, detail: {} };
}

/**
 * Guards Bull Board's JSON API (`/dashboard/api/*`): a viewer's mutating call is refused with 403
 * whatever its UI showed, and every mutating call — done or refused — is written to the audit log.
 */
export function boardApiGuard(audit: AuditLog): MiddlewareHandler<DashboardEnv> {
  return async (c, next) => {
    if (SAFE_METHODS.has(c.req.method)) return next();
    const call = describeBoardCall(c.req.method, c.req.path);
    const session = c.get('session');
    const who = actorOf(c);
    const detail = { ...call.detail, method: c.req.method, path: c.req.path };
    if (session.role !== 'admin') {
      await audit.record({
        ...who,
        action: call.action,
        target: call.target,
        detail: { ...detail, status: 403, denied: true },
      });
      c.get('log').warn({ action: call.action, path: c.req.path }, 'read-only operator tried a queue action');
      return c.json({ error: 'forbidden', message: 'your role is read-only' }, 403);
    }
    await next();
    await audit
      .record({
        ...who,
        action: call.action,
        target: call.target,
        detail: { ...detail, status: c.res.status },
      })
      .catch((err: unknown) =>
        c.get('log').error({ err, action: call.action }, 'audit write failed after a queue action'),
      );
    c.get('log').info({ action: call.action, target: call.target, status: c.res.status }, 'queue action');
  };
}
