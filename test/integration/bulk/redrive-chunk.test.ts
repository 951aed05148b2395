import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config/config.ts';
import { createDeadLetterActions } from '../../../shared/dead-letters/actions.ts';
import {
  createRuntimeRedriver,
  type RuntimeRedriver,
} from '../../../shared/dead-letters/runtime-redriver.ts';
import { createLogger } from '../../../shared/observability/logger.ts';
import { isolatedEnv } from '../../support/env.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { ordersJobCount, seedOrderDeadLetters } from './harness.ts';
import { MODULES } from '../../../modules/registry.ts';

// A bulk redrive's chunk (one transaction for many dead letters) on real PostgreSQL and Redis: each sent
// dead letter is claimed and audited once, one whose send fails stays pending with its failure audited,
// and the chunk's others are redriven all the same.
const env = isolatedEnv();
let platform: Platform;
let redriver: RuntimeRedriver;

beforeAll(async () => {
  platform = await startPlatform(loadConfig(env, { modules: MODULES }), { workers: [], api: false });
  redriver = createRuntimeRedriver({
    config: platform.config,
    logger: createLogger({ level: 'warn', service: 'test' }),
    pool: platform.rt.pool,
    redis: platform.rt.redis,
    modules: MODULES,
  });
});
afterAll(async () => {
  await redriver?.close();
  await platform?.close();
});

const who = { actor: 'ops', role: null, source: 'api' as const, ip: null, userAgent: 'test' };

describe('bulk redrive chunk', () => {
  it('redrives the sent, leaves the unsent pending with its failure audited, and reports each id', async () => {
    const pool = platform.rt.pool;
    const dls = await seedOrderDeadLetters(pool, 6, { tag: 'ch1' });
    const refused = dls[2]!.id;
    const actions = createDeadLetterActions({
      pool,
      redis: platform.rt.redis,
      queuePrefix: platform.config.redis.queuePrefix,
      // The real redriver, except for one dead letter whose broker refuses it.
      redrive: (dl) =>
        dl.id === refused ? Promise.reject(new Error('broker refused')) : redriver.redrive(dl),
      modules: MODULES,
    });
    // An already handled one and a missing one in the same chunk.
    await pool.query(`UPDATE dead_letters SET status = 'discarded' WHERE id = $1`, [dls[5]!.id]);
    const ids = [...dls.map((d) => d.id), 'no-such-dead-letter'];

    const results = await actions.redriveChunk(ids, who);
    expect(results.map((r) => [r.id, r.status])).toEqual([
      [dls[0]!.id, 'redriven'],
      [dls[1]!.id, 'redriven'],
      [refused, 'failed'],
      [dls[3]!.id, 'redriven'],
      [dls[4]!.id, 'redriven'],
      [dls[5]!.id, 'not_pending'],
      ['no-such-dead-letter', 'not_found'],
    ]);
    expect(results[2]!.error).toBe('broker refused');
    expect(results[5]!.handled).toBe('discarded');

    const { rows } = await pool.query<{
      id: string;
      status: string;
      redrive_count: number;
      resolved_by: string;
    }>(
      'SELECT id, status, redrive_count, resolved_by FROM dead_letters WHERE id = ANY($1::text[]) ORDER BY id',
      [dls.map((d) => d.id)],
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const i of [0, 1, 3, 4]) {
      expect(byId.get(dls[i]!.id)).toMatchObject({
        status: 'redriven',
        redrive_count: 1,
        resolved_by: 'ops',
      });
    }
    expect(byId.get(refused)).toMatchObject({ status: 'pending', redrive_count: 0 });
    expect(await ordersJobCount(platform.rt.redis, platform.config.redis.queuePrefix)).toBe(4);

    const audit = await pool.query<{
      action: string;
      target: string;
      actor: string;
      detail: { error?: string };
    }>(
      `SELECT action, target, actor, detail FROM audit_log WHERE target = ANY($1::text[]) ORDER BY target, action`,
      [dls.map((d) => d.id)],
    );
    expect(
      audit.rows
        .filter((a) => a.action === 'dead_letter.redrive')
        .map((a) => a.target)
        .sort(),
    ).toEqual([0, 1, 3, 4].map((i) => dls[i]!.id).sort());
    const failed = audit.rows.filter((a) => a.action !== 'dead_letter.redrive');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ target: refused, actor: 'ops', detail: { error: 'broker refused' } });

    // The refused one redrives once its broker takes it; the redriven ones are not sent again.
    const again = await createDeadLetterActions({
      pool,
      redis: platform.rt.redis,
      queuePrefix: platform.config.redis.queuePrefix,
      redrive: redriver.redrive,
      modules: MODULES,
    }).redriveChunk([refused, dls[0]!.id], who);
    expect(again.map((r) => r.status)).toEqual(['redriven', 'not_pending']);
    expect(await ordersJobCount(platform.rt.redis, platform.config.redis.queuePrefix)).toBe(5);
  });
});
