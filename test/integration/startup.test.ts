import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { isolatedEnv } from '../support/env.ts';
import { ownRedis } from '../support/redis-server.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('process startup', () => {
  it('makes a process exit non-zero on bad config, listing the variables', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'api/main.ts'], {
      cwd: root,
      env: { ...process.env, PORT: '-1', ORDERS_ATTEMPTS: 'x' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('PORT');
    expect(run.stderr).toContain('ORDERS_ATTEMPTS');
  });

  it('refuses to start with a clear message when Postgres is unreachable', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'api/main.ts'], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', PORT: '0' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/PostgreSQL at 127\.0\.0\.1:1/);
  });

  it('refuses to start when Redis may evict keys (BullMQ would lose jobs)', async () => {
    const redis = await ownRedis();
    const admin = new Redis(redis.url);
    try {
      await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
      const env = {
        ...process.env,
        ...isolatedEnv({ REDIS_URL: redis.url }),
        REDIS_REQUIRE_NOEVICTION: 'true',
      };
      const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/migrate.ts'], {
        cwd: root,
        env,
        encoding: 'utf8',
      });
      expect(run.status).toBe(0); // migrations do not need Redis
      const api = spawnSync(process.execPath, ['--import', 'tsx', 'api/main.ts'], {
        cwd: root,
        env,
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(api.status).toBe(1);
      expect(api.stderr).toMatch(/maxmemory-policy is "allkeys-lru".*noeviction/);
    } finally {
      admin.disconnect();
      await redis.stop();
    }
  });
  // Production refuses a Redis that keeps acknowledged jobs only in memory. The API in production
  // without API_KEYS then stops at its next check: reaching that one proves the Redis checks passed.
  it.each([
    { appendonly: 'no', waiver: undefined, refused: true },
    { appendonly: 'no', waiver: 'false', refused: false },
    { appendonly: 'yes', waiver: undefined, refused: false },
  ])(
    'in production, appendonly $appendonly with REDIS_REQUIRE_AOF=$waiver is refused: $refused',
    async ({ appendonly, waiver, refused }) => {
      const redis = await ownRedis();
      const admin = new Redis(redis.url);
      try {
        await admin.config('SET', 'appendonly', appendonly);
        const env: Record<string, string | undefined> = {
          ...process.env,
          ...isolatedEnv({ REDIS_URL: redis.url, NODE_ENV: 'production', API_KEYS: '' }),
          REDIS_REQUIRE_AOF: waiver,
        };
        const api = spawnSync(process.execPath, ['--import', 'tsx', 'api/main.ts'], {
          cwd: root,
          env,
          encoding: 'utf8',
          timeout: 30_000,
        });
        expect(api.status).toBe(1);
        if (refused) {
          expect(api.stderr).toMatch(/appendonly no.*REDIS_REQUIRE_AOF=false/);
        } else {
          expect(api.stderr).not.toMatch(/append-only/);
          expect(api.stderr).toMatch(/API_KEYS is empty/);
        }
      } finally {
        admin.disconnect();
        await redis.stop();
      }
    },
  );
});
