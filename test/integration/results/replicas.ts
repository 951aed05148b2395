import { startApi, type ApiServer } from '../../../api/server.ts';
import type { ResultsSettings } from '../../../api/results/index.ts';
import type { Config } from '../../../shared/config/config.ts';
import { bootstrap, type Runtime } from '../../../shared/runtime/bootstrap.ts';
import { startWorkers, WORKER_KINDS } from '../../../workers/start.ts';
import { cleanup } from '../../support/platform.ts';
import { MODULES } from '../../../modules/registry.ts';

/** One API process of the test: its own runtime (connections, hub), sharing only Redis and PostgreSQL. */
export interface Replica {
  rt: Runtime;
  api: ApiServer;
  url: string;
}

export interface Replicas {
  /** Runs the workers too (when asked), beside its API. */
  a: Replica;
  /** An API alone: no worker, no memory shared with `a` — its hub hears `a`'s workers through Redis only. */
  b: Replica;
  close(): Promise<void>;
}

/**
 * Two API replicas on one isolated schema and queue prefix (two runtimes in this process: nothing
 * shared but Redis and PostgreSQL), the real workers in the first unless `workers: false`.
 */
export async function startReplicas(
  config: Config,
  options: { workers?: boolean; results?: Partial<ResultsSettings> } = {},
): Promise<Replicas> {
  const start = async (withWorkers: boolean): Promise<Replica> => {
    const rt = await bootstrap(config, 'test', MODULES);
    if (withWorkers) await startWorkers(rt, WORKER_KINDS);
    const api = await startApi(rt, options.results ? { results: options.results } : {});
    return { rt, api, url: `http://127.0.0.1:${api.port}` };
  };
  const a = await start(options.workers ?? true);
  const b = await start(false);
  return {
    a,
    b,
    async close() {
      await b.rt.lifecycle.close();
      await a.rt.lifecycle.close();
      await cleanup(config);
    },
  };
}

/** Reads a `text/event-stream` body as events (comments skipped), until it ends or `stop` says so. */
export async function readEvents(
  res: Response,
  stop: (events: SseEvent[]) => boolean = () => false,
): Promise<{ events: SseEvent[]; ended: boolean }> {
  const events: SseEvent[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { events, ended: true };
    buffer += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event: SseEvent = { id: undefined, event: undefined, data: '' };
      let has = false;
      for (const line of block.split('\n')) {
        const colon = line.indexOf(':');
        if (colon === 0) continue;
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') event.id = value;
        else if (field === 'event') event.event = value;
        else if (field === 'data') event.data += value;
        else continue;
        has = true;
      }
      if (has && (event.id !== undefined || event.event !== undefined)) events.push(event);
      if (stop(events)) {
        await reader.cancel();
        return { events, ended: false };
      }
    }
  }
}

export interface SseEvent {
  id: string | undefined;
  event: string | undefined;
  data: string;
}
