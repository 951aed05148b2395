import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postOnce } from '../../../modules/webhooks/worker/deliver.ts';
import { webhookSettings } from '../../../modules/webhooks/settings.ts';
import { checkDestination, parseCidrs, refusal } from '../../../modules/webhooks/ssrf.ts';
import type { Config } from '../../../shared/config/config.ts';
import { testConfig } from '../../support/env.ts';
import { request } from '../../support/http.ts';
import { startPlatform, type Platform } from '../../support/platform.ts';
import { startReceiver, type Receiver } from './receiver.ts';

// Destinations are checked against SSRF at registration (a clear 422 problem) and again at each
// delivery (the address resolved then is the one connected to). Production allows no private
// address; development and test allow loopback so local receivers work.
describe('webhooks: SSRF', () => {
  let strict: Platform;
  let receiver: Receiver;

  beforeAll(async () => {
    // The production allow-list (none) on a test platform: only the API is needed.
    const base = testConfig({ WEBHOOKS_SECRET_KEY: Buffer.alloc(32, 1).toString('base64') });
    // What production runs with by default (webhookSettings below checks that it is so): no allow-list.
    const config: Config = { ...base, webhooks: { ...base.webhooks, allowedCidrs: [] } };
    strict = await startPlatform(config, { workers: [] });
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await receiver?.close();
    await strict?.close();
  });

  const register = (target: string) =>
    request(`${strict.url}/v1/webhooks`, {
      method: 'POST',
      json: { url: target, eventTypes: ['order.placed'] },
    });

  it.each([
    ['loopback', 'http://127.0.0.1:8080/hook'],
    ['localhost by name', 'http://localhost:8080/hook'],
    ['IPv6 loopback', 'http://[::1]:8080/hook'],
    ['cloud metadata (link-local)', 'http://169.254.169.254/latest/meta-data/'],
    ['RFC 1918', 'http://10.1.2.3/hook'],
    ['RFC 1918 (192.168)', 'https://192.168.1.10/hook'],
    ['carrier-grade NAT', 'http://100.64.0.1/hook'],
    ['this network', 'http://0.0.0.0/hook'],
    ['unique local IPv6', 'http://[fd00::1]/hook'],
    ['IPv4-mapped IPv6 loopback', 'http://[::ffff:127.0.0.1]/hook'],
    ['not http', 'ftp://example.com/hook'],
    ['credentials in the URL', 'https://user:pass@example.com/hook'],
  ])('refuses %s with a 422 problem', async (_what, target) => {
    const res = await register(target);
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.body).toMatchObject({ code: 'webhook.destination_refused', status: 422 });
    expect(String(res.body.detail)).not.toBe('');
  });

  it('production refuses private addresses by default; an allow-list opens exactly what it names', () => {
    const production = webhookSettings({
      env: 'production',
      webhooks: { secretKey: Buffer.alloc(32).toString('base64') },
    });
    expect(production.allowedCidrs).toEqual([]);
    expect(() => webhookSettings({ env: 'production' })).toThrow(/WEBHOOKS_SECRET_KEY/);
    expect(webhookSettings({ env: 'development' }).allowedCidrs).toEqual(['127.0.0.0/8', '::1/128']);
    const none = parseCidrs([]);
    expect(refusal('127.0.0.1', none)).toMatch(/loopback/);
    expect(refusal('93.184.215.14', none)).toBeUndefined();
    expect(refusal('2606:4700::1', none)).toBeUndefined();
    const some = parseCidrs(['10.1.0.0/16']);
    expect(refusal('10.1.2.3', some)).toBeUndefined();
    expect(refusal('10.2.0.1', some)).toMatch(/private/);
  });

  it('checks again at delivery: a name that now resolves to a private address is not connected to', async () => {
    const allowed = parseCidrs([]);
    // A resolver that answers a loopback address (a DNS change after registration, or rebinding).
    const policy = { allowedCidrs: [], resolve: async () => [{ address: '127.0.0.1', family: 4 as const }] };
    await expect(checkDestination(new URL('http://hooks.example.com/'), policy, allowed)).rejects.toThrow(
      /loopback/,
    );
    const port = new URL(receiver.url).port;
    const result = await postOnce(`http://hooks.example.com:${port}/hooks`, {}, '{}', {
      policy,
      allowed,
      timeoutMs: 2_000,
      maxResponseBytes: 1_024,
    });
    expect(result).toMatchObject({ ok: false, error: expect.stringMatching(/^destination refused/) });
    expect(receiver.received).toHaveLength(0);
    // Allowed, the connection goes to the pinned address (the name itself resolves nowhere).
    const pinned = await postOnce(`http://hooks.example.com:${port}/hooks`, {}, '{}', {
      policy: { ...policy, allowedCidrs: ['127.0.0.0/8'] },
      allowed: parseCidrs(['127.0.0.0/8']),
      timeoutMs: 2_000,
      maxResponseBytes: 1_024,
    });
    expect(pinned).toEqual({ ok: true, status: 200 });
    expect(receiver.received[0]!.headers.host).toBe(`hooks.example.com:${port}`);
  });

  it('does not follow redirects and bounds the wait for an answer', async () => {
    const redirecting = await startReceiver(() => 302);
    const silent = await startReceiver(() => 'hang');
    try {
      const options = {
        policy: { allowedCidrs: ['127.0.0.0/8'] },
        allowed: parseCidrs(['127.0.0.0/8']),
        timeoutMs: 500,
        maxResponseBytes: 1_024,
      };
      expect(await postOnce(redirecting.url, {}, '{}', options)).toMatchObject({
        ok: false,
        status: 302,
        error: expect.stringMatching(/redirects are not followed/),
      });
      const started = Date.now();
      expect(await postOnce(silent.url, {}, '{}', options)).toMatchObject({
        ok: false,
        error: expect.stringMatching(/no answer within 500 ms/),
      });
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      await Promise.all([redirecting.close(), silent.close()]);
    }
  });
});
