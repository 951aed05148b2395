import type { CommandView } from '../../shared/modules/module.ts';

/*
 * A command's lifecycle as Server-Sent Events, derived from its durable state alone (what its GET
 * reads: queue, write model, read model), so that ANY API replica computes the same steps with the
 * same ids and can resume a stream another replica served (`Last-Event-ID`).
 *
 * Ids, in order: `accepted`, `started.1`, `retried.1`, `started.2`, …, the final status
 * (`completed`, `rejected`, `dead_lettered`…), `projected`.
 */

/** One step as the stream sends it. */
export interface LifecycleStep {
  /** The SSE `id:` (what `Last-Event-ID` names on a resume). */
  id: string;
  /** Its place in the lifecycle: a resume sends only the steps ranked after the one it names. */
  rank: number;
  /** The SSE `event:`: accepted, started, retried, completed, rejected, dead-lettered, projected. */
  event: string;
  data: Record<string, unknown>;
}

const FINAL_RANK = 1_000_000_000;
const PROJECTED_RANK = FINAL_RANK + 1;

/** The rank of a step id (a `Last-Event-ID`); -1 for none or one this API never sent (start over). */
export function rankOfStepId(id: string | undefined): number {
  if (id === undefined || id === '') return -1;
  if (id === 'accepted') return 0;
  if (id === 'projected') return PROJECTED_RANK;
  const m = /^(started|retried)\.([1-9][0-9]{0,5})$/.exec(id);
  if (m) return 2 * Number(m[2]) - (m[1] === 'started' ? 1 : 0);
  return /^[a-z][a-z_]{0,40}$/.test(id) ? FINAL_RANK : -1;
}

/**
 * Every step a command has reached, from its view. `errors` holds the errors of retries this stream
 * was told live (a message carries each); a retry it was not told of shows the view's `lastError`
 * when it is the latest one, else null (only the last failure is durable).
 */
export function stepsOf(id: string, view: CommandView, errors: ReadonlyMap<number, string>): LifecycleStep[] {
  const steps: LifecycleStep[] = [{ id: 'accepted', rank: 0, event: 'accepted', data: { id } }];
  const ended = Math.max(0, view.attempts);
  // Decided: `attempts` counts the deciding attempt. Not yet: those that ended, plus the running one.
  const started = view.final ? Math.max(1, ended) : view.status === 'processing' ? ended + 1 : ended;
  const retried = view.final ? started - 1 : ended;
  for (let n = 1; n <= started; n++) {
    steps.push({ id: `started.${n}`, rank: 2 * n - 1, event: 'started', data: { id, attempt: n } });
    if (n > retried) continue;
    const error = errors.get(n) ?? (!view.final && n === retried ? view.lastError : null);
    steps.push({ id: `retried.${n}`, rank: 2 * n, event: 'retried', data: { id, attempt: n, error } });
  }
  if (view.final) {
    steps.push({
      id: view.status,
      rank: FINAL_RANK,
      event: view.status.replaceAll('_', '-'),
      data: view.body,
    });
    if (view.projected)
      steps.push({ id: 'projected', rank: PROJECTED_RANK, event: 'projected', data: view.body });
  }
  return steps;
}
