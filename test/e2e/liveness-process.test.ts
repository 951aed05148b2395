import { rabbitmqSettings } from '../../shared/bus/create-bus.ts';
import { afterEach, expect, it } from 'vitest';
import { rabbitmqTopology } from '../../shared/bus/rabbitmq/bus.ts';
import { withAmqpChannel } from '../../shared/bus/rabbitmq/admin.ts';
import { loadConfig } from '../../shared/config/config.ts';
import { EXIT_FATAL } from '../../shared/runtime/lifecycle.ts';
import { eventually, isolatedEnv } from '../support/env.ts';
import { cleanup } from '../support/platform.ts';
import { logRecords, startProcess, type Proc } from '../support/processes.ts';
import { MODULES } from '../../modules/registry.ts';

// Point 1 of issue #12, at the process level: a real worker process whose RabbitMQ consumer can no
// longer consume must not go on looking healthy — it logs why at fatal level and exits EXIT_FATAL
// (70) after a graceful close, so Kubernetes or whoever runs it restarts it.

let proc: Proc | undefined;
const env = isolatedEnv({ EVENT_BUS: 'rabbitmq', WORKER_KINDS: 'projections' });
afterEach(async () => {
  await proc?.kill('SIGKILL');
  await cleanup(loadConfig(env, { modules: MODULES }));
});

it('exits 70 with a fatal log line when the broker refuses the consumer’s re-declare (406)', async () => {
  proc = startProcess('workers/main.ts', env);
  const port = await eventually(
    () => {
      if (proc!.child.exitCode !== null) throw new Error(`workers exited:\n${proc!.lines.join('\n')}`);
      const line = logRecords(proc!).find((r) => r.msg === 'metrics server listening');
      return line?.port as number | undefined;
    },
    { timeoutMs: 30_000, what: 'the worker metrics server' },
  );
  expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);

  // Another party re-declares our exchange as a different type, then our queue is deleted: the
  // broker cancels the consumer, and its re-declare of the exchange now fails with 406 for good.
  const config = loadConfig(env, { modules: MODULES });
  const topology = rabbitmqTopology(rabbitmqSettings(config));
  await withAmqpChannel(config.bus.rabbitmq.url, async (channel) => {
    await channel.deleteExchange(topology.exchange);
    await channel.assertExchange(topology.exchange, 'direct', { durable: true });
    await channel.deleteQueue(topology.queue);
  });

  const code = await Promise.race([
    proc.exited,
    new Promise((_, reject) => setTimeout(() => reject(new Error('the worker did not exit')), 30_000)),
  ]);
  expect(code).toBe(EXIT_FATAL);
  const fatal = logRecords(proc).find((r) => r.level === 'fatal');
  expect(fatal).toMatchObject({ component: `rabbitmq consumer ${topology.queue}` });
  expect(String(fatal?.msg)).toMatch(/can no longer do its work: .*406 \(PRECONDITION-FAILED\)/);
  expect(logRecords(proc).some((r) => r.msg === 'shutdown complete' && r.exitCode === EXIT_FATAL)).toBe(true);
});
