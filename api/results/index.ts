import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import type { CommandResource, CommandView } from '../../shared/modules/module.ts';
import { DependencyUnavailableError, NotFoundError } from '../../shared/errors/domain.ts';
import type { Logger } from '../../shared/observability/logger.ts';
import type { ApiEnv } from '../../shared/http/context.ts';
import { problemResponses } from '../../shared/http/schemas.ts';
import type { OutcomeHub } from './hub.ts';
import { commandResources, pathMatcher } from '../../shared/http/command-resources.ts';
import { rankOfStepId, stepsOf } from './steps.ts';

/** Settings of `Prefer: wait` and the lifecycle streams (environment `RESULTS_*`). */
export interface ResultsSettings {
  /** The longest `Prefer: wait` honoured, in seconds; a longer one waits this long. */
  waitMaxSeconds: number;
  /** How often an open stream sends a comment line, so proxies do not close it as idle. */
  heartbeatMs: number;
  /** Open lifecycle streams per API process; past it a new one is answered 503 with Retry-After. */
  maxStreams: number;
  /**
   * How long a stream stays open after the final step for its `projected` step; it looks at the
   * read model on each heartbeat meanwhile (a projector message may be missed).
   */
  projectedWaitMs: number;
}

export const RESULTS_DEFAULTS: ResultsSettings = {
  waitMaxSeconds: 30,
  heartbeatMs: 15_000,
  maxStreams: 10_000,
  projectedWaitMs: 30_000,
};

/** What the API process's results hold: the hub and its open streams (metrics, tests). */
export interface Results {
  readonly hub: OutcomeHub;
  /** Lifecycle streams open now. */
  readonly streams: number;
}

/**
 * The seconds of a `Prefer: wait=<seconds>` (RFC 7240 §4.3), capped at `max`; undefined when the
 * request prefers no wait (absent, 0, malformed). Several preferences and several headers are
 * comma-separated; a value may be quoted; the first `wait` counts (§2).
 */
export function preferredWait(header: string | undefined, max: number): number | undefined {
  if (!header) return undefined;
  for (const preference of header.split(',')) {
    const [token = '', ...rest] = preference.split(';')[0]!.split('=');
    if (token.trim().toLowerCase() !== 'wait') continue;
    const value = rest
      .join('=')
      .trim()
      .replace(/^"(.*)"$/, '$1');
    if (!/^[0-9]{1,9}$/.test(value)) return undefined;
    const seconds = Math.min(Number(value), max);
    return seconds > 0 ? seconds : undefined;
  }
  return undefined;
}

interface Matched {
  resource: CommandResource;
  id: string;
}

/**
 * `Prefer: wait` and the lifecycle streams on `app`, generic over every module that registered its
 * command resource (`registerCommandResource`). Call before the modules' routes are registered: the
 * middleware must run before their handlers; the stream routes are added by {@link mountResultStreams}
 * once the modules registered their resources.
 */
export function createResults(
  app: OpenAPIHono<ApiEnv>,
  deps: { hub: OutcomeHub; logger: Logger; settings: Partial<ResultsSettings> },
): { results: Results; middleware: MiddlewareHandler<ApiEnv>; mountStreams(): void } {
  const settings = { ...RESULTS_DEFAULTS, ...deps.settings };
  const { hub } = deps;
  const log = deps.logger.child({ component: 'results' });
  const matchers = new Map<CommandResource, (candidate: string) => string | undefined>();
  let streams = 0;

  function match(path: string | null | undefined): Matched | undefined {
    if (!path) return undefined;
    for (const resource of commandResources(app)) {
      let m = matchers.get(resource);
      if (!m) matchers.set(resource, (m = pathMatcher(resource.path)));
      const id = m(path);
      if (id !== undefined) return { resource, id };
    }
    return undefined;
  }

  /**
   * Resolves with the command's view once it is final, or undefined after `ms` (or when the client
   * went away). Listens before its first read, so a decision between the two is not missed; reads
   * again on its `decided` step and on the hub's resubscribe, one read at a time.
   */
  function waitFinal(
    { resource, id }: Matched,
    ms: number,
    signal: AbortSignal,
  ): Promise<CommandView | undefined> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (view: CommandView | undefined) => {
        if (done) return;
        done = true;
        unwatch();
        clearTimeout(timer);
        for (const s of signals) s.removeEventListener('abort', onAbort);
        resolve(view);
      };
      const onAbort = () => finish(undefined);
      const signals = [signal, hub.closing];
      const reread = oneReadAtATime(() =>
        resource
          .read(id)
          .then((view) => {
            if (view?.final) finish(view);
            // Unknown: nothing to wait for (the route answers 404, or its own status).
            else if (!view) finish(undefined);
          })
          .catch((err: unknown) => log.debug({ err, id }, 'results: reading a waited command failed')),
      );
      const check = () => {
        if (!done) reread();
      };
      const unwatch = hub.watch(resource.module, id, (step) => {
        if (!step || step.step === 'decided') check();
      });
      const timer = setTimeout(() => finish(undefined), ms);
      if (signals.some((s) => s.aborted)) return finish(undefined);
      for (const s of signals) s.addEventListener('abort', onAbort);
      check();
    });
  }

  const middleware: MiddlewareHandler<ApiEnv> = async (c, next) => {
    const method = c.req.method;
    if (method !== 'GET' && method !== 'POST') return next();
    const wait = preferredWait(c.req.header('prefer'), settings.waitMaxSeconds);
    if (wait === undefined) return next();
    const applied = `wait=${wait}`;
    if (method === 'GET') {
      const matched = match(c.req.path);
      if (!matched) return next();
      const view = await waitFinal(matched, wait * 1_000, c.req.raw.signal);
      await next();
      setHeader(c, 'vary', 'Prefer');
      if (view && c.res.status === 200) setHeader(c, 'preference-applied', applied);
      return;
    }
    await next();
    if (c.res.status !== 202) return;
    const matched = match(c.res.headers.get('location'));
    if (!matched) return;
    const view = await waitFinal(matched, wait * 1_000, c.req.raw.signal);
    if (!view) return;
    // Decided in time: 201 with the command as its GET answers it (the 202's headers kept).
    const headers = new Headers();
    for (const [k, v] of c.res.headers) {
      if (k !== 'content-length' && k !== 'content-type') headers.set(k, v);
    }
    headers.set('content-type', 'application/json');
    headers.set('preference-applied', applied);
    headers.set('content-location', c.res.headers.get('location')!);
    c.res = undefined;
    c.res = new Response(JSON.stringify(view.body), { status: 201, headers });
  };

  /** `GET <path>/events` of one resource: its lifecycle as Server-Sent Events. */
  async function serveStream(c: Context<ApiEnv>, resource: CommandResource, id: string): Promise<Response> {
    if (streams >= settings.maxStreams || hub.closing.aborted) {
      throw new DependencyUnavailableError('the event streams of this API replica', 5);
    }
    const first = await resource.read(id);
    if (!first) throw new NotFoundError(`no command ${id} in ${resource.module}`);
    const lastEventId = c.req.header('last-event-id') ?? c.req.query('lastEventId');
    let last = rankOfStepId(lastEventId);
    const errors = new Map<number, string>();
    const encoder = new TextEncoder();
    let finalSince: number | undefined;
    let closed = false;
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    streams++;

    const write = (text: string) => {
      if (closed) return;
      try {
        controller.enqueue(encoder.encode(text));
      } catch {
        end();
      }
    };
    const emit = (view: CommandView) => {
      for (const step of stepsOf(id, view, errors)) {
        if (step.rank <= last) continue;
        write(`id: ${step.id}\nevent: ${step.event}\ndata: ${JSON.stringify(step.data)}\n\n`);
        last = step.rank;
      }
      if (view.final && view.projected) return end(true);
      if (view.final) finalSince ??= Date.now();
    };
    const reread = oneReadAtATime(() =>
      resource
        .read(id)
        .then((view) => view && emit(view))
        .catch((err: unknown) => log.debug({ err, id }, 'results: reading a streamed command failed')),
    );
    const check = () => {
      if (!closed) reread();
    };
    const unwatch = hub.watch(resource.module, id, (step) => {
      if (step?.step === 'retried') errors.set(step.attempt, step.error);
      check();
    });
    const heartbeat = setInterval(() => {
      write(': keep-alive\n\n');
      if (finalSince === undefined) return;
      if (Date.now() - finalSince >= settings.projectedWaitMs) end(true);
      else check();
    }, settings.heartbeatMs);
    const onAbort = () => end();
    // The API shutting down: the stream ends cleanly; its client resumes on another replica.
    const onClosing = () => end(true);
    function end(closeStream = false) {
      if (closed) return;
      closed = true;
      streams--;
      unwatch();
      clearInterval(heartbeat);
      c.req.raw.signal.removeEventListener('abort', onAbort);
      hub.closing.removeEventListener('abort', onClosing);
      if (closeStream) {
        try {
          controller.close();
        } catch {
          /* already cancelled by the client */
        }
      }
    }
    c.req.raw.signal.addEventListener('abort', onAbort);
    hub.closing.addEventListener('abort', onClosing);
    const body = new ReadableStream<Uint8Array>({
      start(ctrl) {
        controller = ctrl;
        write('retry: 1000\n\n');
        emit(first);
      },
      cancel() {
        end();
      },
    });
    return new Response(body, {
      status: 200,
      headers: {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        // nginx: do not buffer the stream.
        'x-accel-buffering': 'no',
      },
    });
  }

  function mountStreams(): void {
    for (const resource of commandResources(app)) {
      const param = resource.path
        .split('/')
        .find((p) => p.startsWith(':'))!
        .slice(1);
      const route = createRoute({
        method: 'get',
        path: `${resource.path.replace(`:${param}`, `{${param}}`)}/events`,
        tags: [resource.module],
        summary: "The command's lifecycle as Server-Sent Events, resumable with Last-Event-ID",
        description:
          'Steps, each with an `id:` — accepted, started.N, retried.N (its error), the final status ' +
          '(completed, rejected, dead_lettered), projected — then the stream ends. A reconnect with ' +
          '`Last-Event-ID` (to any API replica) gets the steps after it, none twice.',
        request: {
          params: z.object({ [param]: z.string().min(1).max(200) }),
          headers: z.object({ 'last-event-id': z.string().max(100).optional() }),
        },
        responses: {
          200: {
            description: 'The lifecycle stream',
            content: { 'text/event-stream': { schema: z.string() } },
          },
          ...problemResponses,
        },
      });
      app.openapi(
        route,
        (c) => serveStream(c as unknown as Context<ApiEnv>, resource, c.req.param(param)!) as never,
      );
    }
  }

  return {
    results: {
      hub,
      get streams() {
        return streams;
      },
    },
    middleware,
    mountStreams,
  };
}

/** Sets a header on the response already made (a route's own, or a rebuilt one when it is immutable). */
function setHeader(c: Context<ApiEnv>, name: string, value: string): void {
  try {
    c.res.headers.set(name, value);
  } catch {
    const res = new Response(c.res.body, c.res);
    res.headers.set(name, value);
    c.res = undefined;
    c.res = res;
  }
}

/**
 * `read` one at a time: a call while one runs asks for exactly one more after it (the state may have
 * changed since that read began), however many calls came meanwhile.
 */
function oneReadAtATime(read: () => Promise<unknown>): () => void {
  let reading = false;
  let again = false;
  const run = (): void => {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    void read().finally(() => {
      reading = false;
      if (again) {
        again = false;
        run();
      }
    });
  };
  return run;
}
