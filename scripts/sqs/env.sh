# shellcheck shell=bash disable=SC2034
# Shared settings of the local ElasticMQ server (an SQS-compatible broker) for scripts/brokers.sh,
# scripts/sqs/elasticmq.sh and test/support/elasticmq-server.ts (sourced, not run). Every value can be
# overridden from the environment.

ELASTICMQ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Where Conveyor's SQS clients connect (the config's SQS_ENDPOINT default): the server brokers.sh starts.
SQS_ENDPOINT=${SQS_ENDPOINT:-http://127.0.0.1:9324}
# Newest ElasticMQ on Maven Central (thin jars; the all-in-one jar of their site is not on Maven).
ELASTICMQ_VERSION=${ELASTICMQ_VERSION:-1.7.1}
ELASTICMQ_CACHE_DIR=${ELASTICMQ_CACHE_DIR:-$ELASTICMQ_ROOT/.cache/elasticmq}
ELASTICMQ_LIBS_DIR=$ELASTICMQ_CACHE_DIR/libs
ELASTICMQ_LIBS_MARKER=$ELASTICMQ_CACHE_DIR/libs.complete
ELASTICMQ_DATA_DIR=$ELASTICMQ_CACHE_DIR/data
ELASTICMQ_LOG_DIR=$ELASTICMQ_CACHE_DIR/logs
ELASTICMQ_PID_FILE=$ELASTICMQ_CACHE_DIR/elasticmq.pid
ELASTICMQ_CONFIG=$ELASTICMQ_CACHE_DIR/elasticmq.conf
ELASTICMQ_STDOUT_LOG=$ELASTICMQ_LOG_DIR/elasticmq.out
ELASTICMQ_READY_TIMEOUT=${ELASTICMQ_READY_TIMEOUT:-60}
ELASTICMQ_STOP_TIMEOUT=${ELASTICMQ_STOP_TIMEOUT:-20}
# The JVM's main class; also how a running server is recognized in /proc/<pid>/cmdline.
ELASTICMQ_MAIN_CLASS=org.elasticmq.server.Main

# True when the cache holds the jars of ELASTICMQ_VERSION (the marker is written last by the fetch).
elasticmq_jars_cached() {
  [[ -f $ELASTICMQ_LIBS_MARKER && $(cat "$ELASTICMQ_LIBS_MARKER") == "$ELASTICMQ_VERSION" ]]
}

# Prints the pid of the server started by brokers.sh and returns 0 while that process is alive
# (a reused pid or a zombie does not count).
elasticmq_running_pid() {
  local pid
  pid=$(cat "$ELASTICMQ_PID_FILE" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q "$ELASTICMQ_MAIN_CLASS" || return 1
  printf '%s\n' "$pid"
}
