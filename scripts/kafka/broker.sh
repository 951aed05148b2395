#!/usr/bin/env bash
# The one definition of Conveyor's single-node KRaft Kafka broker: its server.properties and
# log4j.properties, the storage format step and the broker's java command line. Used by
#   - scripts/brokers.sh (sources this file): the machine's broker on 127.0.0.1:9092/9093, detached,
#     data in .cache/kafka/data;
#   - test/support/kafka-server.ts (runs this file): a private broker per test on spare ports, in a
#     temp dir, for tests that stop or crash Kafka.
#
# Sourced, it defines:
#   kafka_write_config CONFIG LOG4J_CONFIG DATA_DIR SERVER_LOG PORT CONTROLLER_PORT
#   kafka_format CONFIG LOG4J_CONFIG LOG_DIR        (StorageTool format --ignore-formatted; output to stdout)
#   kafka_broker_cmd CONFIG LOG4J_CONFIG LOG_DIR XMX XMS [JVM_OPTION...]   (sets the array KAFKA_BROKER_CMD)
#
# Run, with DIR laid out as DIR/server.properties, DIR/log4j.properties, DIR/data, DIR/logs:
#   bash scripts/kafka/broker.sh prepare DIR PORT CONTROLLER_PORT   # writes the config, formats DIR/data
#   bash scripts/kafka/broker.sh run DIR [XMX [XMS]]                # execs the broker in the foreground
# `run` execs java, so the caller's child pid is the broker's pid. Unlike brokers.sh's broker it runs the
# JIT's first tier only (-XX:TieredStopAtLevel=1): a short-lived test broker then answers ~2.5 s sooner
# and burns less CPU starting. Exit code 2: the Kafka jars are not in the cache (`npm run brokers`).

# shellcheck source-path=SCRIPTDIR source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# kafka_write_config CONFIG LOG4J_CONFIG DATA_DIR SERVER_LOG PORT CONTROLLER_PORT
# (Rewritten on every start: paths may move.)
kafka_write_config() {
  local config=$1 log4j_config=$2 data_dir=$3 server_log=$4 port=$5 controller_port=$6
  cat >"$config" <<PROPS
# Written by scripts/kafka/broker.sh -- single-node KRaft broker for development and tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$data_dir
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
# Internal topics: 50 partitions by default; 10 makes their creation/loading on a fresh broker faster.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
# After a crash (kafka-stop.sh --kill) the restarted broker cannot register until the old
# incarnation's session expires (9 s by default); shorter so chaos-test restarts are quicker.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=5000
PROPS
  cat >"$log4j_config" <<LOG4J
# Written by scripts/kafka/broker.sh: the broker logs to a file, not the terminal.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$server_log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
LOG4J
}

# JVM options every Kafka java process gets: kafka_java_common LOG4J_CONFIG LOG_DIR (sets KAFKA_JAVA_COMMON)
kafka_java_common() {
  KAFKA_JAVA_COMMON=(-Djava.awt.headless=true "-Dlog4j.configuration=file:$1" "-Dkafka.logs.dir=$2")
}

# kafka_format CONFIG LOG4J_CONFIG LOG_DIR: formats the KRaft storage named in CONFIG (once: re-runnable).
kafka_format() {
  kafka_java_common "$2" "$3"
  java -Xmx256m "${KAFKA_JAVA_COMMON[@]}" -cp "$KAFKA_LIBS_DIR/*" kafka.tools.StorageTool format \
    -t "$KAFKA_CLUSTER_ID" -c "$1" --ignore-formatted
}

# kafka_broker_cmd CONFIG LOG4J_CONFIG LOG_DIR XMX XMS [JVM_OPTION...]: the broker's command line,
# in the array KAFKA_BROKER_CMD.
kafka_broker_cmd() {
  local config=$1 log4j_config=$2 log_dir=$3 xmx=$4 xms=$5
  shift 5
  kafka_java_common "$log4j_config" "$log_dir"
  KAFKA_BROKER_CMD=(java "-Xmx$xmx" "-Xms$xms" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent "$@"
    "${KAFKA_JAVA_COMMON[@]}" -cp "$KAFKA_LIBS_DIR/*" kafka.Kafka "$config")
}

# True when the cache holds the jars of KAFKA_VERSION (written last by brokers.sh's fetch).
kafka_jars_cached() {
  [[ -f $KAFKA_LIBS_MARKER && $(cat "$KAFKA_LIBS_MARKER") == "$KAFKA_VERSION" ]]
}

kafka_broker_main() {
  set -euo pipefail
  local cmd=${1:-} dir=${2:-}
  [[ -n $dir ]] || {
    printf 'usage: broker.sh prepare DIR PORT CONTROLLER_PORT | run DIR [XMX [XMS]]\n' >&2
    return 64
  }
  if ! kafka_jars_cached; then
    # shellcheck disable=SC2016 # the backquotes are literal
    printf 'kafka: the Apache Kafka %s jars are not in %s: run `npm run brokers` first (it fetches them with Maven)\n' \
      "$KAFKA_VERSION" "$KAFKA_LIBS_DIR" >&2
    return 2
  fi
  command -v java >/dev/null || {
    printf 'kafka: java is not installed (needed to run the Kafka broker)\n' >&2
    return 1
  }
  case $cmd in
    prepare)
      [[ $# == 4 ]] || {
        printf 'usage: broker.sh prepare DIR PORT CONTROLLER_PORT\n' >&2
        return 64
      }
      mkdir -p "$dir/data" "$dir/logs"
      kafka_write_config "$dir/server.properties" "$dir/log4j.properties" "$dir/data" "$dir/logs/server.log" "$3" "$4"
      kafka_format "$dir/server.properties" "$dir/log4j.properties" "$dir/logs"
      ;;
    run)
      kafka_broker_cmd "$dir/server.properties" "$dir/log4j.properties" "$dir/logs" "${3:-384m}" "${4:-128m}" \
        -XX:TieredStopAtLevel=1
      exec "${KAFKA_BROKER_CMD[@]}"
      ;;
    *)
      printf 'broker.sh: unknown command %s (prepare | run)\n' "'$cmd'" >&2
      return 64
      ;;
  esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  kafka_broker_main "$@"
fi
