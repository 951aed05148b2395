#!/usr/bin/env bash
# The one definition of Conveyor's KRaft Kafka brokers: their server.properties and
# log4j.properties, the storage format step and the broker's java command line. Used by
#   - scripts/brokers.sh (sources this file): the machine's broker on 127.0.0.1:9092/9093, detached,
#     data in .cache/kafka/data; with KAFKA_NODES=3 a three-node cluster instead (.cache/kafka/cluster/);
#   - test/support/kafka-server.ts and kafka-cluster.ts (run this file): a private broker or cluster per
#     test on spare ports, in a temp dir, for tests that stop or crash Kafka.
# Every node is broker and controller at once (combined mode). A single node is its own quorum; in a
# cluster the internal topics (__consumer_offsets, __transaction_state) get replication factor
# min(nodes, 3) and min.insync.replicas 2 from three nodes up, so losing one node loses nothing.
#
# Sourced, it defines:
#   kafka_write_config CONFIG LOG4J_CONFIG DATA_DIR SERVER_LOG PORT CONTROLLER_PORT [NODE_ID VOTERS]
#     (VOTERS: the quorum, e.g. 1@127.0.0.1:19093,2@127.0.0.1:29093,3@127.0.0.1:39093; default: this
#     node alone, node id 1). With KAFKA_SASL_USERS=user:password[,user:password…] in the environment the
#     client listener is SASL_PLAINTEXT with SASL/PLAIN for those users (the first one is the broker's
#     own), for tests of the clients' SASL settings.
#   kafka_format CONFIG LOG4J_CONFIG LOG_DIR        (StorageTool format --ignore-formatted; output to stdout)
#   kafka_broker_cmd CONFIG LOG4J_CONFIG LOG_DIR XMX XMS [JVM_OPTION...]   (sets the array KAFKA_BROKER_CMD)
#
# Run, with DIR laid out as DIR/server.properties, DIR/log4j.properties, DIR/data, DIR/logs:
#   bash scripts/kafka/broker.sh prepare DIR PORT CONTROLLER_PORT [NODE_ID VOTERS]
#                                                                   # writes the config, formats DIR/data
#   bash scripts/kafka/broker.sh run DIR [XMX [XMS]]                # execs the broker in the foreground
# `run` execs java, so the caller's child pid is the broker's pid. Unlike brokers.sh's broker it runs the
# JIT's first tier only (-XX:TieredStopAtLevel=1): a short-lived test broker then answers ~2.5 s sooner
# and burns less CPU starting. Exit code 2: the Kafka jars are not in the cache (`npm run brokers`).

# shellcheck source-path=SCRIPTDIR source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# kafka_write_config CONFIG LOG4J_CONFIG DATA_DIR SERVER_LOG PORT CONTROLLER_PORT [NODE_ID VOTERS]
# (Rewritten on every start: paths may move.)
kafka_write_config() {
  local config=$1 log4j_config=$2 data_dir=$3 server_log=$4 port=$5 controller_port=$6
  local node_id=${7:-1} voters=${8:-1@127.0.0.1:$6}
  local nodes internal_rf internal_isr
  nodes=$(tr ',' '\n' <<<"$voters" | grep -c .)
  internal_rf=$((nodes < 3 ? nodes : 3))
  internal_isr=$((internal_rf >= 3 ? 2 : 1))
  local listener=PLAINTEXT sasl_props=''
  if [[ -n ${KAFKA_SASL_USERS:-} ]]; then
    local entry users='' first_user first_password
    first_user=${KAFKA_SASL_USERS%%,*} first_password=${first_user#*:} first_user=${first_user%%:*}
    IFS=, read -ra entries <<<"$KAFKA_SASL_USERS"
    for entry in "${entries[@]}"; do users+=" user_${entry%%:*}=\"${entry#*:}\""; done
    listener=SASL_PLAINTEXT
    sasl_props="sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$first_user\" password=\"$first_password\"$users;"
  fi
  cat >"$config" <<PROPS
# Written by scripts/kafka/broker.sh -- KRaft node $node_id of $nodes (broker and controller) for
# development and tests.
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=$voters
listeners=$listener://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=$listener://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=$listener
listener.security.protocol.map=CONTROLLER:PLAINTEXT,$listener:$listener
$sasl_props
log.dirs=$data_dir
num.partitions=3
auto.create.topics.enable=false
# Internal topics on every node of the cluster (up to 3): a lost node loses no offsets or transactions.
offsets.topic.replication.factor=$internal_rf
# Internal topics: 50 partitions by default; 10 makes their creation/loading on a fresh broker faster.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
transaction.state.log.replication.factor=$internal_rf
transaction.state.log.min.isr=$internal_isr
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
    printf 'usage: broker.sh prepare DIR PORT CONTROLLER_PORT [NODE_ID VOTERS] | run DIR [XMX [XMS]]\n' >&2
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
      [[ $# == 4 || $# == 6 ]] || {
        printf 'usage: broker.sh prepare DIR PORT CONTROLLER_PORT [NODE_ID VOTERS]\n' >&2
        return 64
      }
      mkdir -p "$dir/data" "$dir/logs"
      kafka_write_config "$dir/server.properties" "$dir/log4j.properties" "$dir/data" "$dir/logs/server.log" \
        "$3" "$4" "${5:-}" "${6:-}"
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
