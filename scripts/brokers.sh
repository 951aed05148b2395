#!/usr/bin/env bash
# `npm run brokers`: makes sure every broker Conveyor talks to accepts connections.
#   1. Redis, PostgreSQL and RabbitMQ via scripts/services.sh (started if down).
#   2. SQS: when nothing answers ListQueues at SQS_ENDPOINT, an ElasticMQ server (SQS-compatible)
#      is started from jars fetched with Maven into .cache/elasticmq/ (scripts/sqs/elasticmq.sh;
#      detached, messages kept in .cache/elasticmq/data; `scripts/sqs/elasticmq.sh stop` stops it).
#   3. Kafka: when nothing answers a metadata request at KAFKA_BROKERS, a single-node
#      KRaft broker is started from Apache Kafka jars fetched with Maven into
#      .cache/kafka/ (once; later runs reuse them). The broker runs detached and
#      outlives this script; scripts/kafka-stop.sh stops it, and running this
#      script again restarts it on the same data. KAFKA_NODES=3 starts a three-node KRaft cluster
#      instead (127.0.0.1:19092,29092,39092; scripts/kafka/cluster.sh), from the same cached jars.
# Idempotent: a second run finds everything up and exits 0 within a few seconds.
# Exits non-zero with a message naming the broker that did not come up.
#
# Knobs: SKIP_KAFKA=1, SKIP_SQS=1, SKIP_SERVICES=1 (and SKIP_REDIS/SKIP_POSTGRES/SKIP_RABBITMQ),
#        KAFKA_BROKERS (default 127.0.0.1:9092), KAFKA_NODES (default 1; 3 = a local cluster),
#        KAFKA_VERSION (default 3.9.2),
#        KAFKA_READY_TIMEOUT (s, default 90), KAFKA_CACHE_DIR (default .cache/kafka),
#        SQS_ENDPOINT (default http://127.0.0.1:9324), ELASTICMQ_VERSION (default 1.7.1).
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=kafka/env.sh
source "$SCRIPTS/kafka/env.sh"
# The broker's config, format step and command line (shared with test/support/kafka-server.ts).
# shellcheck source-path=SCRIPTDIR source=kafka/broker.sh
source "$SCRIPTS/kafka/broker.sh"
# shellcheck source-path=SCRIPTDIR source=lib/maven.sh
source "$SCRIPTS/lib/maven.sh"

log() { printf 'brokers: %s\n' "$*"; }
die() {
  printf 'brokers: ERROR: %s\n' "$*" >&2
  exit 1
}

if [[ ${SKIP_SERVICES:-} != 1 ]]; then
  SERVICES_LOG_PREFIX=brokers bash "$SCRIPTS/services.sh"
fi

if [[ ${SKIP_SQS:-} == 1 ]]; then
  log "sqs skipped (SKIP_SQS=1)"
else
  ELASTICMQ_LOG_PREFIX='brokers: elasticmq' bash "$SCRIPTS/sqs/elasticmq.sh" ensure
fi

if [[ ${SKIP_KAFKA:-} == 1 ]]; then
  log "kafka skipped (SKIP_KAFKA=1)"
  exit 0
fi

kafka_wait() { # kafka_wait SECONDS [PID]  (with a PID: also warms the coordinators)
  node "$SCRIPTS/kafka/wait-ready.mjs" --brokers "$KAFKA_BROKERS" --nodes "$KAFKA_NODES" --timeout "$1" \
    ${2:+--pid "$2" --warm}
}

# A broker already answers (another checkout's, a `docker compose up`): use it. The test suite still
# needs the jars (KAFKA_FETCH_JARS=1, set by scripts/test.sh): tests that restart Kafka start a private
# broker of their own from them and never touch this one.
if kafka_wait 0 2>/dev/null; then
  if [[ ${KAFKA_FETCH_JARS:-} != 1 ]] || kafka_jars_cached; then
    log "kafka ready on $KAFKA_BROKERS (already running)"
    exit 0
  fi
  already_running=1
fi

if [[ -z ${already_running:-} && $KAFKA_NODES == 1 ]]; then
  case "$KAFKA_BROKERS" in
    127.0.0.1:9092 | localhost:9092) ;;
    *) die "kafka is not answering at KAFKA_BROKERS=$KAFKA_BROKERS, and only a local broker on 127.0.0.1:9092 can be started here" ;;
  esac
fi
command -v java >/dev/null || die "kafka: java is not installed (needed to run the Kafka broker)"

mkdir -p "$KAFKA_CACHE_DIR" "$KAFKA_DATA_DIR" "$KAFKA_LOG_DIR"
# Serialize concurrent runs (jar download, format, start). fd 9 is closed for the broker.
exec 9>"$KAFKA_CACHE_DIR/brokers.lock"
if ! flock -n 9; then
  log "kafka: another brokers.sh run is busy, waiting for it"
  flock -w 900 9 || die "kafka: timed out waiting for another brokers.sh run (lock $KAFKA_CACHE_DIR/brokers.lock)"
  if kafka_wait 0 2>/dev/null && { [[ ${KAFKA_FETCH_JARS:-} != 1 ]] || kafka_jars_cached; }; then
    log "kafka ready on $KAFKA_BROKERS (started by another run)"
    exit 0
  fi
fi

# --- 1. Kafka jars from Maven Central (cached) -----------------------------------
fetch_jars() {
  if kafka_jars_cached; then
    return
  fi
  command -v mvn >/dev/null || die "kafka: Maven (mvn) is needed to fetch the Kafka $KAFKA_VERSION jars"
  local t0=$SECONDS mvn_log=$KAFKA_CACHE_DIR/maven.log
  log "kafka: fetching Apache Kafka $KAFKA_VERSION jars with Maven (cached for later runs)"
  rm -rf "$KAFKA_LIBS_DIR" "$KAFKA_LIBS_MARKER"
  maven_copy_dependencies "$KAFKA_CACHE_DIR" "$KAFKA_LIBS_DIR" kafka-broker-jars "$(
    cat <<DEPENDENCIES
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>$KAFKA_SLF4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>ch.qos.reload4j</groupId>
      <artifactId>reload4j</artifactId>
      <version>$KAFKA_RELOAD4J_VERSION</version>
    </dependency>
DEPENDENCIES
  )" || die "kafka: Maven could not fetch the Apache Kafka $KAFKA_VERSION jars (full log: $mvn_log)"
  [[ -f $KAFKA_LIBS_DIR/kafka_2.13-$KAFKA_VERSION.jar ]] ||
    die "kafka: Maven finished but kafka_2.13-$KAFKA_VERSION.jar is missing from $KAFKA_LIBS_DIR"
  printf '%s\n' "$KAFKA_VERSION" >"$KAFKA_LIBS_MARKER"
  log "kafka: $(find "$KAFKA_LIBS_DIR" -name '*.jar' | wc -l) jars cached in ${KAFKA_LIBS_DIR#"$KAFKA_ROOT"/} ($((SECONDS - t0)) s)"
}

# --- 2. Single-node KRaft configuration (rewritten every start: paths may move) ---
write_config() {
  kafka_write_config "$KAFKA_CONFIG" "$KAFKA_LOG4J_CONFIG" "$KAFKA_DATA_DIR" "$KAFKA_SERVER_LOG" 9092 9093
}

log_mark=0 # line count of server.log before this start, to find this start's errors
broker_log_tail() {
  if [[ -s $KAFKA_SERVER_LOG ]]; then
    local errors
    errors=$(tail -n +"$((log_mark + 1))" "$KAFKA_SERVER_LOG" | grep -E '^\[[^]]*\] (ERROR|FATAL) ' | head -n 5 || true)
    if [[ -n $errors ]]; then
      printf -- '--- first errors in %s ---\n%s\n' "$KAFKA_SERVER_LOG" "$errors" >&2
    fi
    printf -- '--- last 40 lines of %s ---\n' "$KAFKA_SERVER_LOG" >&2
    tail -n 40 "$KAFKA_SERVER_LOG" >&2
  fi
  if [[ -s $KAFKA_STDOUT_LOG ]]; then
    printf -- '--- last 20 lines of %s ---\n' "$KAFKA_STDOUT_LOG" >&2
    tail -n 20 "$KAFKA_STDOUT_LOG" >&2
  fi
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

fetch_jars
if [[ -n ${already_running:-} ]]; then
  log "kafka ready on $KAFKA_BROKERS (already running; jars cached for the tests' private brokers)"
  exit 0
fi
if [[ $KAFKA_NODES != 1 ]]; then
  exec 9>&- # the cluster's nodes must not hold the lock
  KAFKA_LOG_PREFIX='brokers: kafka' exec bash "$SCRIPTS/kafka/cluster.sh" start
fi
write_config

t0=$SECONDS
if pid=$(kafka_running_pid); then
  log "kafka: broker process $pid is already starting, waiting for it"
else
  for port in 9092 9093; do
    if port_open "$port"; then
      die "kafka: port 127.0.0.1:$port is taken by a process that is not a working Kafka broker (see: ss -ltnp 'sport = :$port')"
    fi
  done
  [[ -f $KAFKA_SERVER_LOG ]] && log_mark=$(wc -l <"$KAFKA_SERVER_LOG")
  if ! kafka_format "$KAFKA_CONFIG" "$KAFKA_LOG4J_CONFIG" "$KAFKA_LOG_DIR" >"$KAFKA_LOG_DIR/format.log" 2>&1; then
    cat "$KAFKA_LOG_DIR/format.log" >&2
    die "kafka: formatting the KRaft storage in ${KAFKA_DATA_DIR} failed"
  fi
  # setsid + nohup: own session, immune to the caller's SIGHUP/process-group kill.
  # All fds redirected (and the lock fd closed) so callers reading our output get EOF.
  kafka_broker_cmd "$KAFKA_CONFIG" "$KAFKA_LOG4J_CONFIG" "$KAFKA_LOG_DIR" 512m 256m
  setsid nohup "${KAFKA_BROKER_CMD[@]}" </dev/null >"$KAFKA_STDOUT_LOG" 2>&1 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$KAFKA_PID_FILE"
  log "kafka: starting Apache Kafka $KAFKA_VERSION (pid $pid, logs in ${KAFKA_LOG_DIR#"$KAFKA_ROOT"/})"
fi

set +e
kafka_wait "$KAFKA_READY_TIMEOUT" "$pid"
rc=$?
set -e
case $rc in
  0) log "kafka ready on $KAFKA_BROKERS (started in $((SECONDS - t0)) s)" ;;
  3)
    broker_log_tail
    die "kafka broker (pid $pid) exited before answering on $KAFKA_BROKERS"
    ;;
  *)
    broker_log_tail
    die "kafka did not answer a metadata request on $KAFKA_BROKERS within $KAFKA_READY_TIMEOUT s (pid $pid still running; scripts/kafka-stop.sh stops it)"
    ;;
esac
