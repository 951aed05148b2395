import { describe, expect, it } from 'vitest';
import { demoEnv, paymentDecision, parseDemoArgs } from '../../scripts/demo.ts';
import { loadConfig } from '../../shared/config/config.ts';
import { authenticate, knownScopes, parseApiKeys } from '../../shared/security/api-keys.ts';
import { MODULES } from '../../modules/registry.ts';

describe('npm run demo', () => {
  it('parses its options, with defaults', () => {
    expect(parseDemoArgs([])).toEqual({
      minutes: 3,
      rate: 6,
      url: 'http://localhost:3000',
      paymentPort: 4010,
      env: false,
    });
    expect(
      parseDemoArgs([
        '--minutes',
        '0.5',
        '--rate=20',
        '--url',
        'http://127.0.0.1:4999',
        '--payment-port',
        '5000',
      ]),
    ).toMatchObject({ minutes: 0.5, rate: 20, url: 'http://127.0.0.1:4999', paymentPort: 5000 });
    expect(parseDemoArgs(['--env']).env).toBe(true);
    expect(() => parseDemoArgs(['--minutes', '-1'])).toThrow(/--minutes/);
    expect(() => parseDemoArgs(['--bogus'])).toThrow(/unknown option/);
    expect(() => parseDemoArgs(['stray'])).toThrow(/unexpected argument/);
    expect(() => parseDemoArgs(['--rate'])).toThrow(/needs a value/);
  });

  it('prints settings the platform accepts: the demo keys, dev, sub-tenants and its payment service', () => {
    const env = demoEnv(4010);
    const config = loadConfig(env, { modules: MODULES });
    expect(config.payment.url).toBe('http://127.0.0.1:4010/authorize');
    const keys = parseApiKeys(env.API_KEYS!, knownScopes(MODULES));
    expect(authenticate(keys, 'dev')?.id).toBe('dev');
    expect(authenticate(keys, 'demo-marketplace-key')?.id).toBe('marketplace');
    expect(Object.values(env).every((v) => !/\s/.test(v))).toBe(true); // env $(…) splits on whitespace
  });

  it('its payment service declines about one order in ten, the same way every time, and refuses c-poison', () => {
    const ids = Array.from(
      { length: 2_000 },
      (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    );
    const declined = ids.filter(
      (id) => (paymentDecision(id, 'c-1').body as { approved: boolean }).approved === false,
    );
    expect(declined.length).toBeGreaterThan(120);
    expect(declined.length).toBeLessThan(280);
    expect(paymentDecision(ids[0]!, 'c-1')).toEqual(paymentDecision(ids[0]!, 'c-1'));
    expect(paymentDecision(ids[0]!, 'c-poison').status).toBe(400);
  });
});
