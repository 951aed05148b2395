// Waits until a Kafka broker answers a real client request (metadata fetch via
// kafkajs admin.listTopics), not merely until its port is open.
//
//   node scripts/kafka/wait-ready.mjs [--brokers 127.0.0.1:9092] [--timeout 90] [--pid 1234[,5678…]]
//                                     [--nodes 3] [--sasl-plain user:password] [--warm]
//
// --timeout 0 makes a single attempt. --pid makes it give up as soon as that
// process (the broker being started; a list: any of them) has exited. --nodes N
// (a cluster) also waits until N brokers are registered in the cluster's metadata. --sasl-plain
// authenticates with SASL/PLAIN (a broker whose listener is SASL_PLAINTEXT). --warm (used after a start)
// then also waits until the group coordinator answers (creating/loading
// __consumer_offsets) and an idempotent producer gets a producer id, so the first
// consumer group or idempotent producer of a test does not meet "coordinator not
// available / loading" retries.
// Exit codes: 0 ready, 1 not ready before the deadline, 3 the --pid process exited.
import { readFileSync } from 'node:fs';
import { clearTimeout, setTimeout } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import kafkajs from 'kafkajs';

const { Kafka, logLevel } = kafkajs;

const { values } = parseArgs({
  options: {
    brokers: { type: 'string', default: process.env.KAFKA_BROKERS ?? '127.0.0.1:9092' },
    timeout: { type: 'string', default: '90' },
    pid: { type: 'string' },
    nodes: { type: 'string', default: '1' },
    'sasl-plain': { type: 'string' },
    warm: { type: 'boolean', default: false },
  },
});

const brokers = values.brokers
  .split(',')
  .map((b) => b.trim())
  .filter(Boolean);
const deadline = Date.now() + Number(values.timeout) * 1000;
const plain = values['sasl-plain'];
const sasl = plain
  ? {
      sasl: {
        mechanism: 'plain',
        username: plain.split(':')[0],
        password: plain.slice(plain.indexOf(':') + 1),
      },
    }
  : {};

function processAlive(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('kafka.Kafka');
  } catch {
    return false;
  }
}

async function attempt() {
  const kafka = new Kafka({
    clientId: 'conveyor-wait-ready',
    brokers,
    ...sasl,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1500,
    requestTimeout: 3000,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('metadata request timed out')), 5000);
  });
  try {
    await Promise.race([
      (async () => {
        await admin.connect();
        await admin.listTopics();
        const { brokers: registered } = await admin.describeCluster();
        if (registered.length < Number(values.nodes)) {
          throw new Error(`${registered.length} of ${values.nodes} brokers registered`);
        }
      })(),
      guard,
    ]);
  } finally {
    clearTimeout(timer);
    await admin.disconnect().catch(() => {});
  }
}

async function warm() {
  const kafka = new Kafka({
    clientId: 'conveyor-wait-ready',
    brokers,
    ...sasl,
    logLevel: logLevel.NOTHING,
    retry: { initialRetryTime: 200, maxRetryTime: 2000, retries: 10 },
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    // FindCoordinator + DescribeGroups: creates and loads __consumer_offsets.
    await admin.describeGroups(['conveyor-warmup']);
  } finally {
    await admin.disconnect().catch(() => {});
  }
  // An idempotent producer's InitProducerId (on connect in kafkajs) makes the broker
  // fetch its first producer-id block from the controller.
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await producer.disconnect();
}

let lastError = 'no attempt made';
for (;;) {
  try {
    await attempt();
    if (values.warm) await warm();
    process.exit(0);
  } catch (err) {
    lastError = err instanceof Error ? err.message : String(err);
  }
  const dead = (values.pid ?? '').split(',').filter((pid) => pid && !processAlive(pid));
  if (dead.length > 0) {
    process.stderr.write(`kafka process ${dead.join(', ')} exited (last error: ${lastError})\n`);
    process.exit(3);
  }
  if (Date.now() + 500 >= deadline) break;
  await sleep(500);
}
if (Number(values.timeout) > 0) {
  process.stderr.write(`no Kafka metadata from ${brokers.join(',')}: ${lastError}\n`);
}
process.exit(1);
