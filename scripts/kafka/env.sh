# shellcheck shell=bash disable=SC2034
# Shared settings for scripts/brokers.sh, scripts/kafka-stop.sh and scripts/kafka/broker.sh (sourced, not run).
# Every value can be overridden from the environment.

KAFKA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# 1: the single broker on 127.0.0.1:9092. 3 (up to 5): a local cluster, node N on 127.0.0.1:N9092
# (controller N9093), started by scripts/kafka/cluster.sh; KAFKA_BROKERS then defaults to all of them.
KAFKA_NODES=${KAFKA_NODES:-1}
kafka_cluster_port() { printf '%s\n' "$(($1 * 10000 + $2))"; } # kafka_cluster_port NODE 9092|9093
if [[ $KAFKA_NODES =~ ^[2-5]$ && -z ${KAFKA_BROKERS:-} ]]; then
  KAFKA_BROKERS=$(for ((n = 1; n <= KAFKA_NODES; n++)); do printf '127.0.0.1:%s,' "$(kafka_cluster_port "$n" 9092)"; done)
  KAFKA_BROKERS=${KAFKA_BROKERS%,}
fi
KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:9092}
# Newest 3.9.x on Maven Central (checked: 3.9.0, 3.9.1, 3.9.2 exist; 3.9.3 does not).
KAFKA_VERSION=${KAFKA_VERSION:-3.9.2}
# slf4j-api version that kafka_2.13 3.9.x depends on; the binding must match it.
KAFKA_SLF4J_VERSION=${KAFKA_SLF4J_VERSION:-1.7.36}
# reload4j version that the official Kafka 3.9 distribution ships.
KAFKA_RELOAD4J_VERSION=${KAFKA_RELOAD4J_VERSION:-1.2.25}
KAFKA_CACHE_DIR=${KAFKA_CACHE_DIR:-$KAFKA_ROOT/.cache/kafka}
KAFKA_LIBS_DIR=$KAFKA_CACHE_DIR/libs
KAFKA_LIBS_MARKER=$KAFKA_CACHE_DIR/libs.complete
KAFKA_DATA_DIR=$KAFKA_CACHE_DIR/data
KAFKA_LOG_DIR=$KAFKA_CACHE_DIR/logs
KAFKA_PID_FILE=$KAFKA_CACHE_DIR/kafka.pid
# The local cluster (KAFKA_NODES > 1): node N in $KAFKA_CLUSTER_DIR/node-N (data, logs, config, kafka.pid).
KAFKA_CLUSTER_DIR=$KAFKA_CACHE_DIR/cluster
KAFKA_CONFIG=$KAFKA_CACHE_DIR/server.properties
KAFKA_LOG4J_CONFIG=$KAFKA_CACHE_DIR/log4j.properties
KAFKA_SERVER_LOG=$KAFKA_LOG_DIR/server.log
KAFKA_STDOUT_LOG=$KAFKA_LOG_DIR/kafka.out
# Fixed KRaft cluster id: base64url of the 16 bytes "conveyor-local-1".
KAFKA_CLUSTER_ID=${KAFKA_CLUSTER_ID:-Y29udmV5b3ItbG9jYWwtMQ}
KAFKA_READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}

# Prints the pid of the broker started by brokers.sh (or of the node whose pid file is given) and
# returns 0 when that process is still alive (a reused pid or a zombie does not count).
kafka_running_pid() {
  local pid
  pid=$(cat "${1:-$KAFKA_PID_FILE}" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' || return 1
  printf '%s\n' "$pid"
}
