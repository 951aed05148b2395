import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config/config.ts';
import { generateApiKey } from '../../shared/security/api-keys.ts';
import { isolatedEnv, TEST_REDIS_URL } from '../support/env.ts';
import { request } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';
import { MODULES } from '../../modules/registry.ts';

// Issue #20, credentials: a session is only as good as the key that opened it, as configured now; and
// Redis never holds a session id that works as a bearer token.

const bearer = (k: { key: string }) => ({ authorization: `Bearer ${k.key}` });
const session = (id: string) => ({ 'x-session-id': id });
/** The same key (same secret, same hash) with other scopes: `<id>:<scopes>:<hash>`. */
const withScopes = (k: { entry: string }, scopes: string) => {
  const [id, ...rest] = k.entry.split(':');
  return `${id!}:${scopes}:${rest.at(-1)!}`;
};

async function openSession(url: string, headers: Record<string, string>): Promise<string> {
  const opened = await request<{ sessionId: string }>(`${url}/v1/sessions`, { method: 'POST', headers });
  expect(opened.status).toBe(201);
  return opened.body.sessionId;
}

describe('API sessions', () => {
  // Connects on its first command (lazyConnect), so collecting this file opens nothing.
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
  const running: Platform[] = [];
  const start = async (env: Record<string, string>) => {
    const platform = await startPlatform(loadConfig(env, { modules: MODULES }), { workers: [] });
    running.push(platform);
    return platform;
  };
  /** Stops an API replica set for good, keeping Redis and the schema for the next one. */
  const restart = async (env: Record<string, string>) => {
    for (const p of running.splice(0)) await p.close({ keep: true });
    return start(env);
  };
  const prefixes: string[] = [];

  afterEach(async () => {
    const last = running.pop();
    for (const p of running.splice(0)) await p.close({ keep: true });
    await last?.close();
  });
  afterAll(async () => {
    for (const prefix of prefixes) {
      const keys = await redis.keys(`${prefix}:*session*`);
      if (keys.length > 0) await redis.del(...keys);
    }
    redis.disconnect();
  });

  it("dies with its key: a removed or rotated key's sessions answer 401, shrunk scopes 403, after a restart", async () => {
    const revoked = generateApiKey('partner', ['admin']);
    const shrinking = generateApiKey('ops', ['admin']);
    const rotatedOld = generateApiKey('shop', ['admin']);
    const rotatedNew = generateApiKey('shop', ['admin']);
    const unchanged = generateApiKey('reports', ['orders:read']);
    const before = isolatedEnv({
      API_KEYS: [revoked.entry, shrinking.entry, rotatedOld.entry, unchanged.entry].join(','),
    });
    prefixes.push(before.QUEUE_PREFIX!);
    const first = await start(before);

    const ofRevoked = await openSession(first.url, bearer(revoked));
    const ofRevokedSession = await openSession(first.url, session(ofRevoked)); // opened by a session
    const ofShrinking = await openSession(first.url, bearer(shrinking));
    const ofRotated = await openSession(first.url, bearer(rotatedOld));
    const ofUnchanged = await openSession(first.url, bearer(unchanged));
    for (const id of [ofRevoked, ofRevokedSession, ofShrinking, ofRotated]) {
      expect((await request(`${first.url}/v1/dead-letters`, { headers: session(id) })).status).toBe(200);
      expect((await request(`${first.url}/v1/audit`, { headers: session(id) })).status).toBe(200);
    }

    // The operator removes `partner`, cuts `ops` down to orders:read, rotates `shop`, and restarts.
    const after = {
      ...before,
      API_KEYS: [withScopes(shrinking, 'orders:read'), rotatedNew.entry, unchanged.entry].join(','),
    };
    const second = await restart(after);
    const status = async (path: string, headers: Record<string, string>) =>
      (await request(`${second.url}${path}`, { headers })).status;

    expect(await status('/v1/dead-letters', bearer(revoked))).toBe(401);
    for (const id of [ofRevoked, ofRevokedSession, ofRotated]) {
      expect(await status('/v1/dead-letters', session(id))).toBe(401);
      expect(await status('/v1/audit', session(id))).toBe(401);
      expect(await status('/v1/stats', session(id))).toBe(401);
    }
    const refused = await request(`${second.url}/v1/dead-letters`, { headers: session(ofShrinking) });
    expect({ status: refused.status, code: refused.body.code }).toEqual({
      status: 403,
      code: 'auth.forbidden',
    });
    expect(await status('/v1/audit', session(ofShrinking))).toBe(403);
    expect(await status('/v1/stats', session(ofShrinking))).toBe(200); // what it still holds
    // A session of a key that did not change survives the restart; the rotated id's new key works.
    expect(await status('/v1/stats', session(ofUnchanged))).toBe(200);
    expect(await status('/v1/dead-letters', bearer(rotatedNew))).toBe(200);
  });

  it('is stored under a hash of its id: no Redis key or value holds the id, and the session works', async () => {
    const ops = generateApiKey('ops', ['admin']);
    const env = isolatedEnv({ API_KEYS: ops.entry });
    const prefix = env.QUEUE_PREFIX!;
    prefixes.push(prefix);
    const platform = await start(env);

    const id = await openSession(platform.url, bearer(ops));
    const keys = await redis.keys(`${prefix}:*`);
    expect(keys.length).toBeGreaterThan(0); // the session is there, under some key
    expect(keys.filter((k) => k.includes(id))).toEqual([]);
    for (const key of keys) {
      if ((await redis.type(key)) === 'string') expect(await redis.get(key)).not.toContain(id);
    }

    expect((await request(`${platform.url}/v1/dead-letters`, { headers: session(id) })).status).toBe(200);
    const logout = await request(`${platform.url}/v1/sessions/current`, {
      method: 'DELETE',
      headers: session(id),
    });
    expect(logout.status).toBe(204);
    expect((await request(`${platform.url}/v1/dead-letters`, { headers: session(id) })).status).toBe(401);
    expect(await redis.keys(`${prefix}:*session*`)).toEqual([]);
  });
});
