#!/usr/bin/env bash
# `npm start`: the whole platform in one process for local use — API, every worker kind and the
# dashboard — against the machine's Redis and PostgreSQL (started if down), migrations applied.
# Kafka, RabbitMQ and SQS (ElasticMQ locally) are needed only when EVENT_BUS says so.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/ensure-deps.sh
case "${EVENT_BUS:-bullmq}" in
  kafka) SKIP_SQS=1 bash scripts/brokers.sh ;;
  rabbitmq) SKIP_KAFKA=1 SKIP_SQS=1 bash scripts/brokers.sh ;;
  sqs) SKIP_KAFKA=1 SKIP_RABBITMQ=1 bash scripts/brokers.sh ;;
  *) SKIP_RABBITMQ=1 SERVICES_LOG_PREFIX=start bash scripts/services.sh ;;
esac
# Local defaults for a laptop (override any of them in the environment or .env).
if [[ -f .env ]]; then
  set -a
  # shellcheck disable=SC1091
  source .env
  set +a
fi
# Local-only dashboard credentials so a newcomer can log in; production must set its own.
if [[ ${NODE_ENV:-development} != production ]]; then
  if [[ -z ${DASHBOARD_PASSWORD:-} ]]; then
    export DASHBOARD_PASSWORD=conveyor
    echo "start: dashboard login admin / conveyor (set DASHBOARD_PASSWORD to change)"
  fi
  export DASHBOARD_VIEWER_PASSWORD=${DASHBOARD_VIEWER_PASSWORD:-viewer}
fi
echo "start: API on http://localhost:${PORT:-3000}, dashboard on http://localhost:${DASHBOARD_PORT:-3001}/dashboard"
# exec: node replaces this shell, so the signals a terminal or supervisor sends reach the platform
# itself, which shuts down gracefully and exits 0 (70 after a component failed for good). npm must
# run this script with `exec` too (package.json: "start": "exec bash scripts/start.sh"): a plain
# `sh -c` between npm and node dies of the process group's SIGTERM and npm then reports 143.
# The tracing register first: a no-op unless OTEL_TRACES_EXPORTER (or an OTLP endpoint) turns tracing on.
exec node --import tsx --import ./shared/observability/tracing/register.ts main.ts
