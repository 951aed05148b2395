#!/usr/bin/env bash
# Stops the Kafka broker that scripts/brokers.sh started (found by its pid file).
# The data directory is kept: `npm run brokers` starts it again on the same data.
#
#   bash scripts/kafka-stop.sh          # SIGTERM: clean, controlled shutdown
#   bash scripts/kafka-stop.sh --kill   # SIGKILL: a crash, for chaos tests
#   KAFKA_NODES=3 bash scripts/kafka-stop.sh [--kill] [NODE]   # the local cluster (scripts/kafka/cluster.sh)
#
# Exits 0 when no broker started by brokers.sh is left running (also when none was).
# Knob: KAFKA_STOP_TIMEOUT (s, default 30) before a clean stop falls back to SIGKILL.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=kafka/env.sh
source "$SCRIPTS/kafka/env.sh"

log() { printf 'kafka-stop: %s\n' "$*"; }
die() {
  printf 'kafka-stop: ERROR: %s\n' "$*" >&2
  exit 1
}

if [[ $KAFKA_NODES != 1 ]]; then
  KAFKA_LOG_PREFIX=kafka-stop exec bash "$SCRIPTS/kafka/cluster.sh" stop "$@"
fi

signal=TERM
case "${1:-}" in
  "") ;;
  --kill | -9) signal=KILL ;;
  *) die "unknown argument '$1' (usage: kafka-stop.sh [--kill])" ;;
esac

if ! pid=$(kafka_running_pid); then
  rm -f "$KAFKA_PID_FILE"
  if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
    die "something listens on 127.0.0.1:9092 but it is not a Kafka broker started by scripts/brokers.sh (no live pid in ${KAFKA_PID_FILE#"$KAFKA_ROOT"/})"
  fi
  log "no Kafka broker running"
  exit 0
fi

t0=$SECONDS
kill -s "$signal" "$pid" 2>/dev/null || true
deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
while [[ -d /proc/$pid ]] && kafka_running_pid >/dev/null; do
  if ((SECONDS >= deadline)) && [[ $signal != KILL ]]; then
    log "broker (pid $pid) still running after $KAFKA_STOP_TIMEOUT s, sending SIGKILL"
    signal=KILL
    kill -s KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
  elif ((SECONDS >= deadline)); then
    die "kafka broker (pid $pid) did not exit after SIGKILL"
  fi
  sleep 0.2
done
rm -f "$KAFKA_PID_FILE"
log "kafka stopped (pid $pid, SIG$signal, $((SECONDS - t0)) s)"
