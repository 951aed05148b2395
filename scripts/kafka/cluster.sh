#!/usr/bin/env bash
# A local KRaft cluster of KAFKA_NODES (3; up to 5) nodes, each broker and controller at once, for trying
# replication by hand: node N listens on 127.0.0.1:N9092 (controller N9093), keeps its data, logs and
# pid in .cache/kafka/cluster/node-N/, and runs detached with a small heap (KAFKA_NODE_HEAP, 384m).
# The config is scripts/kafka/broker.sh's (internal topics replicated on three nodes, min ISR 2).
#
#   KAFKA_NODES=3 npm run brokers                        # fetches the jars, then: cluster.sh start
#   KAFKA_NODES=3 bash scripts/kafka/cluster.sh start    # starts the nodes that are not running, waits
#   KAFKA_NODES=3 bash scripts/kafka/cluster.sh stop [--kill] [NODE]   # all nodes, or node NODE only
#   KAFKA_NODES=3 bash scripts/kafka/cluster.sh status
#
# Point Conveyor at it with KAFKA_BROKERS=127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092
# KAFKA_REPLICATION_FACTOR=3 KAFKA_MIN_INSYNC_REPLICAS=2. `stop --kill 2` is a crash of node 2 (kill -9);
# `start` brings it back on its data. Needs the jars (`npm run brokers` fetches them).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=broker.sh
source "$(dirname "${BASH_SOURCE[0]}")/broker.sh"

log() { printf '%s: %s\n' "${KAFKA_LOG_PREFIX:-kafka-cluster}" "$*"; }
die() {
  printf '%s: ERROR: %s\n' "${KAFKA_LOG_PREFIX:-kafka-cluster}" "$*" >&2
  exit 1
}

[[ $KAFKA_NODES =~ ^[2-5]$ ]] || die "KAFKA_NODES must be 2 to 5 for a cluster (got '$KAFKA_NODES')"
HEAP=${KAFKA_NODE_HEAP:-384m}
node_dir() { printf '%s/node-%s\n' "$KAFKA_CLUSTER_DIR" "$1"; }
voters() {
  local n out=
  for ((n = 1; n <= KAFKA_NODES; n++)); do out+="$n@127.0.0.1:$(kafka_cluster_port "$n" 9093),"; done
  printf '%s\n' "${out%,}"
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_node() { # start_node N: formats (once) and starts node N detached; prints its pid
  local n=$1 dir port controller
  dir=$(node_dir "$n")
  port=$(kafka_cluster_port "$n" 9092)
  controller=$(kafka_cluster_port "$n" 9093)
  for p in "$port" "$controller"; do
    port_open "$p" && die "port 127.0.0.1:$p (node $n) is taken by a process that is not this cluster's node $n"
  done
  mkdir -p "$dir/data" "$dir/logs"
  kafka_write_config "$dir/server.properties" "$dir/log4j.properties" "$dir/data" "$dir/logs/server.log" \
    "$port" "$controller" "$n" "$(voters)"
  if ! kafka_format "$dir/server.properties" "$dir/log4j.properties" "$dir/logs" >"$dir/logs/format.log" 2>&1; then
    cat "$dir/logs/format.log" >&2
    die "formatting node $n's storage in $dir/data failed"
  fi
  kafka_broker_cmd "$dir/server.properties" "$dir/log4j.properties" "$dir/logs" "$HEAP" 128m
  # setsid + nohup: own session, immune to the caller's SIGHUP/process-group kill; every fd redirected.
  setsid nohup "${KAFKA_BROKER_CMD[@]}" </dev/null >"$dir/logs/kafka.out" 2>&1 9>&- &
  printf '%s\n' "$!" >"$dir/kafka.pid"
  printf '%s\n' "$!"
}

cmd_start() {
  kafka_jars_cached || die "the Apache Kafka $KAFKA_VERSION jars are not in $KAFKA_LIBS_DIR: run \`KAFKA_NODES=$KAFKA_NODES npm run brokers\`"
  command -v java >/dev/null || die "java is not installed (needed to run the Kafka brokers)"
  local n pid pids=() t0=$SECONDS started=0
  for ((n = 1; n <= KAFKA_NODES; n++)); do
    if pid=$(kafka_running_pid "$(node_dir "$n")/kafka.pid"); then
      pids+=("$pid")
    else
      pid=$(start_node "$n")
      pids+=("$pid")
      started=$((started + 1))
      log "node $n starting (pid $pid, 127.0.0.1:$(kafka_cluster_port "$n" 9092), logs in ${KAFKA_CLUSTER_DIR#"$KAFKA_ROOT"/}/node-$n/logs)"
    fi
  done
  local list
  list=$(
    IFS=,
    printf '%s' "${pids[*]}"
  )
  if ! node "$KAFKA_ROOT/scripts/kafka/wait-ready.mjs" --brokers "$KAFKA_BROKERS" --nodes "$KAFKA_NODES" \
    --timeout "$KAFKA_READY_TIMEOUT" --pid "$list" --warm; then
    for ((n = 1; n <= KAFKA_NODES; n++)); do
      printf -- '--- node %s: last 15 lines of its server.log ---\n' "$n" >&2
      tail -n 15 "$(node_dir "$n")/logs/server.log" >&2 2>/dev/null || true
    done
    die "the $KAFKA_NODES-node cluster did not answer on $KAFKA_BROKERS within $KAFKA_READY_TIMEOUT s (\`KAFKA_NODES=$KAFKA_NODES bash scripts/kafka-stop.sh\` stops it)"
  fi
  log "kafka cluster of $KAFKA_NODES nodes ready on $KAFKA_BROKERS ($started started, $((SECONDS - t0)) s)"
}

cmd_stop() {
  local signal=TERM only=
  for arg in "$@"; do
    case $arg in
      --kill | -9) signal=KILL ;;
      [1-5]) only=$arg ;;
      *) die "usage: cluster.sh stop [--kill] [NODE]" ;;
    esac
  done
  local n pid sent deadline nodes=() pids=()
  for ((n = 1; n <= KAFKA_NODES; n++)); do
    [[ -z $only || $only == "$n" ]] || continue
    if ! pid=$(kafka_running_pid "$(node_dir "$n")/kafka.pid"); then
      log "node $n is not running"
      continue
    fi
    nodes+=("$n")
    pids+=("$pid")
  done
  # Signalled together: one node after the other, the last ones would wait for a controller quorum
  # that the first ones took away.
  for pid in "${pids[@]}"; do kill -s "$signal" "$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  for i in "${!nodes[@]}"; do
    n=${nodes[$i]} pid=${pids[$i]} sent=$signal
    while [[ -d /proc/$pid ]] && kafka_running_pid "$(node_dir "$n")/kafka.pid" >/dev/null; do
      if ((SECONDS >= deadline)); then
        [[ $sent == KILL ]] && die "node $n (pid $pid) did not exit after SIGKILL"
        log "node $n (pid $pid) still running after $KAFKA_STOP_TIMEOUT s, sending SIGKILL"
        sent=KILL
        kill -s KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 10))
      fi
      sleep 0.2
    done
    rm -f "$(node_dir "$n")/kafka.pid"
    log "node $n stopped (pid $pid)"
  done
}

cmd_status() {
  local n pid
  for ((n = 1; n <= KAFKA_NODES; n++)); do
    if pid=$(kafka_running_pid "$(node_dir "$n")/kafka.pid"); then
      log "node $n running (pid $pid) on 127.0.0.1:$(kafka_cluster_port "$n" 9092)"
    else
      log "node $n not running"
    fi
  done
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop "${@:2}" ;;
  status) cmd_status ;;
  *) die "usage: cluster.sh start | stop [--kill] [NODE] | status" ;;
esac
