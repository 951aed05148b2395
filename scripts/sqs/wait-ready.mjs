// Waits until an SQS-compatible server (ElasticMQ) answers a real request — ListQueues over the SQS
// query protocol — not merely until its port is open.
//
//   node scripts/sqs/wait-ready.mjs [--endpoint http://127.0.0.1:9324] [--timeout 60] [--pid 1234]
//
// --timeout 0 makes a single attempt. --pid makes it give up as soon as that process (the server
// being started) has exited. Exit codes: 0 ready, 1 not ready before the deadline, 3 the --pid
// process exited.
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    endpoint: { type: 'string', default: process.env.SQS_ENDPOINT ?? 'http://127.0.0.1:9324' },
    timeout: { type: 'string', default: '60' },
    pid: { type: 'string' },
  },
});

const deadline = Date.now() + Number(values.timeout) * 1000;

function processAlive(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('org.elasticmq');
  } catch {
    return false;
  }
}

/** POSTs ListQueues (query protocol); true on a 2xx answer within 2 s. */
function answers() {
  const body = 'Action=ListQueues&Version=2012-11-05';
  const request = values.endpoint.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    const req = request(
      values.endpoint,
      {
        method: 'POST',
        timeout: 2_000,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'content-length': String(body.length), // ASCII
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
    req.end(body);
  });
}

for (;;) {
  if (await answers()) process.exit(0);
  if (values.pid && !processAlive(values.pid)) process.exit(3);
  if (Date.now() >= deadline) {
    process.stderr.write(`no SQS server answered ListQueues at ${values.endpoint}\n`);
    process.exit(1);
  }
  await sleep(200);
}
