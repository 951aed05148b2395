#!/usr/bin/env bash
# Makes sure the machine's local Redis, PostgreSQL and RabbitMQ answer, starting
# the ones that do not. Safe to run any number of times; exits 0 when all answer,
# non-zero with a message naming the service that did not.
#
# Knobs: SKIP_REDIS=1, SKIP_POSTGRES=1, SKIP_RABBITMQ=1,
#        RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672),
#        SERVICES_READY_TIMEOUT (seconds, default 90).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${SERVICES_LOG_PREFIX:-services}
RABBITMQ_URL=${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672}
READY_TIMEOUT=${SERVICES_READY_TIMEOUT:-90}

log() { printf '%s: %s\n' "$PREFIX" "$*"; }
die() {
  printf '%s: ERROR: %s\n' "$PREFIX" "$*" >&2
  exit 1
}

# wait_until SECONDS CMD... : polls CMD every 0.5 s until it succeeds or time runs out.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# --- Redis -------------------------------------------------------------------
redis_ok() { [[ $(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null) == PONG ]]; }

ensure_redis() {
  if redis_ok; then
    log "redis ready on 127.0.0.1:6379"
    return
  fi
  command -v redis-server >/dev/null || die "redis is not answering on 127.0.0.1:6379 and redis-server is not installed"
  local t0=$SECONDS
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null ||
    die "redis: redis-server failed to start (see /var/log/redis/ci.log)"
  wait_until 30 redis_ok || die "redis did not answer PING on 127.0.0.1:6379 within 30 s (see /var/log/redis/ci.log)"
  log "redis ready on 127.0.0.1:6379 (started in $((SECONDS - t0)) s)"
}

# --- PostgreSQL --------------------------------------------------------------
postgres_ok() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

ensure_postgres() {
  if postgres_ok; then
    log "postgres ready on 127.0.0.1:5432"
    return
  fi
  command -v pg_ctlcluster >/dev/null || die "postgres is not answering on 127.0.0.1:5432 and pg_ctlcluster is not installed"
  local version t0=$SECONDS
  version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n $version ]] || die "postgres: no cluster under /etc/postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  wait_until 60 postgres_ok ||
    die "postgres did not accept connections on 127.0.0.1:5432 within 60 s (pg_ctlcluster $version main start; see /var/log/postgresql/)"
  log "postgres ready on 127.0.0.1:5432 (started in $((SECONDS - t0)) s)"
}

# --- RabbitMQ ----------------------------------------------------------------
# amqp_wait SECONDS: polls an AMQP connection (amqplib) until it succeeds; 0 = one attempt.
amqp_wait() {
  (cd "$ROOT" && node --input-type=module - "$RABBITMQ_URL" "$1" <<'JS'
import amqp from 'amqplib';
const [url, seconds] = process.argv.slice(2);
const deadline = Date.now() + Number(seconds) * 1000;
let last = '';
for (;;) {
  try {
    const conn = await amqp.connect(url, { timeout: 3000 });
    await conn.close();
    process.exit(0);
  } catch (err) {
    last = err instanceof Error ? err.message : String(err);
  }
  if (Date.now() + 500 >= deadline) break;
  await new Promise((r) => setTimeout(r, 500));
}
if (Number(seconds) > 0) process.stderr.write(`last AMQP error: ${last}\n`);
process.exit(1);
JS
  )
}

ensure_rabbitmq() {
  local where=${RABBITMQ_URL#*@}
  where=${where%%/*}
  if amqp_wait 0; then
    log "rabbitmq ready on $where"
    return
  fi
  command -v rabbitmq-server >/dev/null ||
    die "rabbitmq is not accepting AMQP connections on $where and rabbitmq-server is not installed"
  local t0=$SECONDS
  rabbitmq-server -detached >/dev/null 2>&1 || true
  amqp_wait "$READY_TIMEOUT" ||
    die "rabbitmq did not accept an AMQP connection on $where within $READY_TIMEOUT s (started with rabbitmq-server -detached; see /var/log/rabbitmq/)"
  log "rabbitmq ready on $where (started in $((SECONDS - t0)) s)"
}

[[ ${SKIP_REDIS:-} == 1 ]] || ensure_redis
[[ ${SKIP_POSTGRES:-} == 1 ]] || ensure_postgres
[[ ${SKIP_RABBITMQ:-} == 1 ]] || ensure_rabbitmq
