#!/usr/bin/env bash
# `npm test`: the whole suite on a fresh machine — installs what it needs, makes sure Redis,
# PostgreSQL and RabbitMQ answer, fetches and starts Kafka and ElasticMQ (SQS), then runs unit,
# integration, contract, end-to-end and chaos tests. Ends with one line: `tests: N passed, M failed`.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/ensure-deps.sh || exit 1
# KAFKA_FETCH_JARS: the chaos tests start private brokers from the cached jars, even beside a running one.
KAFKA_FETCH_JARS=1 bash scripts/brokers.sh || exit 1
for extra in scripts/install-chromium.sh scripts/install-promtool.sh; do
  if [[ -f $extra ]]; then bash "$extra" || exit 1; fi
done
mkdir -p .test-results
rm -f .test-results/vitest.json
npx vitest run --reporter=default --reporter=json --outputFile.json=.test-results/vitest.json "$@"
status=$?
node scripts/test-summary.mjs .test-results/vitest.json || status=1
exit $status
