import { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import type { AuditActor } from '../../shared/audit/audit-log.ts';
import { createDeadLetterActions, type ItemResult } from '../../shared/dead-letters/actions.ts';
import type { Redriver } from '../../shared/dead-letters/redrive.ts';
import { createRuntimeRedriver, type RuntimeRedriver } from '../../shared/dead-letters/runtime-redriver.ts';
import { queueOptions } from '../../shared/queue/names.ts';
import { eventually, isolatedEnv } from '../support/env.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { startProcess, type Proc } from '../support/processes.ts';
import { seedOrderDeadLetters } from './bulk/harness.ts';
import { MODULES } from '../../modules/registry.ts';

// A single redrive claims its dead letter, then sends it. A process killed (SIGKILL: no shutdown) between
// the two must not leave it `redriven` and unsent — the command would be lost — and one killed after the
// send must not get it sent twice; two operators redriving the same id at once send it once. Real
// PostgreSQL, Redis and order worker; the redrive that crashes runs in a child process.
const env = isolatedEnv();
let platform: Platform;
let runtime: RuntimeRedriver;
let orders: Queue;
let child: Proc | undefined;

const operator = (actor: string): AuditActor => ({
  actor,
  role: 'admin',
  source: 'api',
  ip: null,
  userAgent: null,
});

beforeAll(async () => {
  platform = await startPlatform(loadConfig(env, { modules: MODULES }), { workers: ['orders'], api: false });
  const { config, logger, pool, redis } = platform.rt;
  runtime = createRuntimeRedriver({ config, logger, pool, redis, modules: MODULES });
  orders = new Queue('orders', queueOptions(redis, config.redis.queuePrefix, 'orders'));
});
afterEach(async () => {
  await child?.kill('SIGKILL');
  child = undefined;
});
afterAll(async () => {
  await orders?.close();
  await runtime?.close();
  await platform?.close();
});

function actionsWith(redrive: Redriver) {
  const { pool, redis, config, logger } = platform.rt;
  return createDeadLetterActions({
    pool,
    redis,
    queuePrefix: config.redis.queuePrefix,
    redrive,
    modules: MODULES,
    logger,
  });
}

/** How often BullMQ's event stream saw the job added, taken by a worker, and completed. */
async function jobHistory(jobId: string): Promise<{ added: number; active: number; completed: number }> {
  const client = await orders.client;
  const entries = await client.xrange(orders.toKey('events'), '-', '+');
  const count = (event: string) =>
    entries.filter(([, f]) => {
      const fields = new Map<string, string>();
      for (let i = 0; i + 1 < f.length; i += 2) fields.set(f[i]!, f[i + 1]!);
      return fields.get('event') === event && fields.get('jobId') === jobId;
    }).length;
  return { added: count('added'), active: count('active'), completed: count('completed') };
}

async function row(id: string) {
  const { rows } = await platform.rt.pool.query<{
    status: string;
    redrive_count: number;
    resolved_by: string | null;
  }>('SELECT status, redrive_count, resolved_by FROM dead_letters WHERE id = $1', [id]);
  return rows[0]!;
}

async function redriveAudits(id: string): Promise<string[]> {
  const { rows } = await platform.rt.pool.query<{ actor: string }>(
    `SELECT actor FROM audit_log WHERE action = 'dead_letter.redrive' AND target = $1 ORDER BY at`,
    [id],
  );
  return rows.map((r) => r.actor);
}

/** Starts the child's redrive of `id` and waits until it stopped where `at` says; then kills it. */
async function crashRedrive(id: string, at: 'before-send' | 'after-send'): Promise<void> {
  child = startProcess('test/integration/dead-letter-redrive-child.ts', {
    ...env,
    DL_ID: id,
    DL_CRASH_AT: at,
  });
  await eventually(
    () => {
      if (child?.child.exitCode !== null)
        throw new Error(`child exited:\n${child?.lines.slice(-20).join('\n')}`);
      return child.lines.some((l) => l.includes(`redrive child stopped ${at}`));
    },
    { what: `the child's redrive to stop ${at}`, timeoutMs: 30_000 },
  );
  await child.kill('SIGKILL');
}

describe('a dead-letter redrive cut short by a crash', () => {
  it('is not left redriven when the process dies after the claim, before the send: redriven again, sent once', async () => {
    const [dl] = await seedOrderDeadLetters(platform.rt.pool, 1, { tag: 'c1' });
    const jobId = dl!.messageKey!;
    await crashRedrive(dl!.id, 'before-send');

    // The dead claim does not hold: the dead letter is pending, nothing was sent.
    await eventually(async () => (await row(dl!.id)).status === 'pending', {
      what: 'the claim of the killed redrive to be undone (pending, not redriven unsent)',
    });
    expect(await row(dl!.id)).toMatchObject({ redrive_count: 0, resolved_by: null });
    expect(await orders.getJob(jobId)).toBeUndefined();

    const result = await actionsWith(runtime.redrive).redrive(dl!.id, operator('alice'));
    expect(result).toEqual({ id: dl!.id, status: 'redriven' });
    await eventually(async () => (await orders.getJobState(jobId)) === 'completed', {
      what: 'the redriven command to be executed',
    });
    expect(await jobHistory(jobId)).toEqual({ added: 1, active: 1, completed: 1 });
    expect(await row(dl!.id)).toMatchObject({ status: 'redriven', redrive_count: 1, resolved_by: 'alice' });
    expect(await redriveAudits(dl!.id)).toEqual(['alice']);
  });

  it('does not send twice when the process dies after the send, before the claim committed', async () => {
    const [dl] = await seedOrderDeadLetters(platform.rt.pool, 1, { tag: 'c2' });
    const jobId = dl!.messageKey!;
    await crashRedrive(dl!.id, 'after-send');
    // Sent and executed, though its redrive never finished.
    await eventually(async () => (await orders.getJobState(jobId)) === 'completed', {
      what: 'the command sent by the killed redrive to be executed',
    });

    const again = await actionsWith(runtime.redrive).redrive(dl!.id, operator('bob'));
    // Redriven (by bob) where the claim rolled back; already handled where it had committed: never twice.
    expect(['redriven', 'not_pending']).toContain(again.status);
    expect(await jobHistory(jobId)).toEqual({ added: 1, active: 1, completed: 1 });
    expect(await row(dl!.id)).toMatchObject({ status: 'redriven', redrive_count: 1 });
    expect(await redriveAudits(dl!.id)).toHaveLength(1);
  });

  it('sends once when two operators redrive the same dead letter at once', async () => {
    const [dl] = await seedOrderDeadLetters(platform.rt.pool, 1, { tag: 'c3' });
    const jobId = dl!.messageKey!;
    let sends = 0;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    // The first send is held until the second redrive is either done or waiting on the first.
    const actions = actionsWith(async (d) => {
      sends += 1;
      await gate;
      await runtime.redrive(d);
    });
    const first = actions.redrive(dl!.id, operator('carol'));
    await eventually(() => sends === 1, { what: 'the first redrive to reach its send' });
    let second: ItemResult | undefined;
    const secondDone = actions.redrive(dl!.id, operator('dave')).then((r) => (second = r));
    await eventually(
      async () =>
        second !== undefined ||
        sends > 1 ||
        (
          await platform.rt.pool.query(
            `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE dead_letters SET status%'`,
          )
        ).rowCount! > 0,
      { what: 'the second redrive to finish or to wait for the first' },
    );
    open();
    const results = [await first, await secondDone];
    expect(sends).toBe(1);
    expect(results.map((r) => r.status).sort()).toEqual(['not_pending', 'redriven']);
    expect(results.find((r) => r.status === 'not_pending')).toMatchObject({ handled: 'redriven' });
    await eventually(async () => (await orders.getJobState(jobId)) === 'completed', {
      what: 'the redriven command to be executed',
    });
    expect(await jobHistory(jobId)).toEqual({ added: 1, active: 1, completed: 1 });
    expect(await row(dl!.id)).toMatchObject({ status: 'redriven', redrive_count: 1 });
    expect(await redriveAudits(dl!.id)).toHaveLength(1);
  });

  it('still sends a command whose dead-lettered job is still in its queue (not taken for one already sent)', async () => {
    // A command its worker dead-letters at once (invalid): its job completes as that dead letter.
    const jobId = `00000000-0000-4000-8000-${'c4'.padStart(12, '0')}`;
    const id = `bullmq-orders-${jobId}`;
    await orders.add('place-order', { invalid: true }, { jobId });
    await eventually(
      async () =>
        (await platform.rt.pool.query('SELECT 1 FROM dead_letters WHERE id = $1', [id])).rowCount === 1,
      {
        what: 'the invalid command to be dead-lettered',
      },
    );
    await eventually(async () => (await orders.getJobState(jobId)) === 'completed', {
      what: 'the dead-lettered job to complete',
    });
    expect((await orders.getJob(jobId))?.returnvalue).toEqual({ deadLetterId: id });

    expect(await actionsWith(runtime.redrive).redrive(id, operator('erin'))).toEqual({
      id,
      status: 'redriven',
    });
    // Sent again, executed again, dead-lettered again: pending once more.
    await eventually(async () => (await jobHistory(jobId)).completed === 2, {
      what: 'the redriven command to be executed',
    });
    expect(await jobHistory(jobId)).toEqual({ added: 2, active: 2, completed: 2 });
    await eventually(async () => (await row(id)).status === 'pending', {
      what: 'the dead letter recorded again',
    });
    expect((await row(id)).redrive_count).toBe(1);
  });
});
