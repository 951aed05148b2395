import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import type { Queue } from 'bullmq';
import { Hono, type MiddlewareHandler } from 'hono';
import type { AuditLog } from '../shared/audit/audit-log.ts';
import { MODULES } from '../modules/registry.ts';
import { isDeadLetterQueue } from '../shared/queue/names.ts';
import type { DashboardSession } from './auth/sessions.ts';
import { actorOf, BOARD_PATH, type DashboardEnv } from './context.ts';
import { FAVICON_PATH } from './views/favicon.ts';
import { BAR_HEIGHT_PX, BAR_STYLE, topBar } from './views/layout.ts';

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

/**
 * A dead-letter queue as Bull Board should present it. Bull Board flags a queue whose worker list is
 * empty with an orange "No workers" badge; for a dead-letter queue that is the normal state, so this
 * adapter answers "cannot tell" (Bull Board's `null`, no badge) and says what the queue is instead.
 */
class DeadLetterQueueAdapter extends BullMQAdapter {
  override async getWorkers(): Promise<never> {
    throw new Error('dead-letter queues have no workers by design');
  }
}

type ServerAdapter = Parameters<typeof createBullBoard>[0]['serverAdapter'];

// System fonts (Bull Board's page would fetch IBM Plex from a third-party font server, which the CSP
// forbids) and the console's teal.
const SYSTEM_SANS = 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif';
const SYSTEM_MONO = 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace';

function board(queues: readonly Queue[], readOnly: boolean): Hono {
  const adapter = new HonoAdapter(serveStatic).setBasePath(BOARD_PATH);
  createBullBoard({
    // `readOnlyMode` hides every action in the UI; the server-side checks are boardApiGuard and the hook.
    queues: queues.map((q) =>
      isDeadLetterQueue(q.name, MODULES)
        ? new DeadLetterQueueAdapter(q, {
            readOnlyMode: readOnly,
            allowRetries: false,
            description:
              'Dead-letter queue: copies for inspection, consumed by nothing. Redrive or discard them from Dead letters.',
          })
        : new BullMQAdapter(q, { readOnlyMode: readOnly, allowRetries: !readOnly }),
    ),
    // @bull-board/hono 9.10.1 nests its own @bull-board/api 9.10.1 whose private fields make its types
    // nominally different from our 9.10.2; at run time the adapter contract is the same.
    serverAdapter: adapter as unknown as ServerAdapter,
    options: {
      uiConfig: {
        boardTitle: readOnly ? 'Queues (read-only)' : 'Queues',
        boardLogo: { path: FAVICON_PATH, width: 24, height: 24 },
        favIcon: { default: FAVICON_PATH, alternative: FAVICON_PATH },
        // The console's top bar carries the navigation and Log out; Bull Board's user menu stays empty.
        miscLinks: [],
        hideDocsLink: true,
        theme: {
          light: { 'font-sans': SYSTEM_SANS, 'font-mono': SYSTEM_MONO, primary: '#0f6f64' },
          dark: { 'font-sans': SYSTEM_SANS, 'font-mono': SYSTEM_MONO },
        },
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
  return new Hono().route(BOARD_PATH, adapter.registerPlugin());
}

/** Bull Board apps mounted at {@link BOARD_PATH}; pick one per request by the operator's role. */
export function createBoards(queues: readonly Queue[]): Boards {
  return { admin: board(queues, false), viewer: board(queues, true) };
}

/**
 * Bull Board's page runs its own scripts from our origin and nothing else: no inline script, no
 * third-party font, image or API. (Its config travels in a `type="application/json"` script block,
 * which is data, not code.)
 */
export const BOARD_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "font-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'; " +
  "object-src 'none'";

// Bull Board offsets its menu, content and sticky rows by `--header-offset` and pins its header at top 0
// with that height: grow the offset by the console's bar, and move the header below the bar at its own
// height. Bull Board marks the header with a hashed class, hence the prefix match.
const BOARD_OFFSET_STYLE = `
  body, .dark-mode { --header-offset: calc(var(--header-height) + ${BAR_HEIGHT_PX}px) !important; }
  #root [class^="header-"], #root [class*=" header-"] { top: ${BAR_HEIGHT_PX}px !important; height: var(--header-height) !important; }
`;

/**
 * Bull Board's HTML page as part of the console: the shared top bar injected, links to other origins
 * (its web font) removed, and a Content-Security-Policy that keeps every request on our origin. Other
 * responses (its scripts, styles and JSON API) pass through untouched.
 */
export async function asConsolePage(res: Response, session: DashboardSession): Promise<Response> {
  if (!(res.headers.get('content-type') ?? '').includes('text/html')) return res;
  const original = await res.text();
  const bar = await Promise.resolve(topBar(session, 'queues', 'root'));
  const text = original
    // Any stylesheet, font or icon from another origin (Bull Board links Google Fonts).
    .replace(/<link\b[^>]*\bhref="(?:https?:)?\/\/[^"]*"[^>]*>/gi, '')
    .replace('</head>', `<style>${BAR_STYLE}${BOARD_OFFSET_STYLE}</style></head>`)
    .replace(/<body\b[^>]*>/i, (body) => `${body}${bar.toString()}`);
  const headers = new Headers(res.headers);
  headers.delete('content-length');
  headers.set('content-security-policy', BOARD_CSP);
  headers.set('cache-control', 'no-store');
  return new Response(text, { status: res.status, headers });
}

/** What a Bull Board API call does, named for the audit log (`queue.retry_all`, `job.retry`, …). */
export function describeBoardCall(
  method: string,
  path: string,
): { action: string; target: string | null; detail: Record<string, unknown> } {
  const rest = path.slice(`${BOARD_PATH}/api/`.length);
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
 * Guards Bull Board's JSON API (`/dashboard/queues/api/*`): a viewer's mutating call is refused with 403
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
