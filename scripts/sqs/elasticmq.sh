#!/usr/bin/env bash
# The one definition of Conveyor's local SQS server: ElasticMQ (softwaremill, Apache-2.0), an
# SQS-compatible broker, run from its jars on Maven Central. Used by
#   - scripts/brokers.sh (`ensure`): the machine's server on SQS_ENDPOINT (127.0.0.1:9324), detached,
#     messages persisted in .cache/elasticmq/data (H2) so a restart keeps them;
#   - test/support/elasticmq-server.ts (`fetch`, `run`): private in-memory servers on spare ports.
#
#   bash scripts/sqs/elasticmq.sh fetch              # jars into .cache/elasticmq/libs (Maven, once)
#   bash scripts/sqs/elasticmq.sh ensure             # the machine's server answers on SQS_ENDPOINT
#   bash scripts/sqs/elasticmq.sh run DIR PORT [XMX] # execs a private in-memory server (foreground)
#   bash scripts/sqs/elasticmq.sh stop [--kill]      # stops the server `ensure` started
#
# `run` execs java, so the caller's child pid is the server's. Exit code 2: the jars are not cached
# (run `npm run brokers` or `elasticmq.sh fetch`). Knobs: see scripts/sqs/env.sh.
set -euo pipefail

SQS_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=env.sh
source "$SQS_SCRIPTS/env.sh"
# shellcheck source-path=SCRIPTDIR source=../lib/maven.sh
source "$SQS_SCRIPTS/../lib/maven.sh"

PREFIX=${ELASTICMQ_LOG_PREFIX:-elasticmq}
log() { printf '%s: %s\n' "$PREFIX" "$*"; }
die() {
  printf '%s: ERROR: %s\n' "$PREFIX" "$*" >&2
  exit "${2:-1}"
}

# --- jars from Maven Central (cached) ---------------------------------------------------------------
fetch_jars() {
  if elasticmq_jars_cached; then
    return
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the ElasticMQ $ELASTICMQ_VERSION jars"
  mkdir -p "$ELASTICMQ_CACHE_DIR"
  # Concurrent fetches (brokers.sh and a test run) would write the same folder: one at a time.
  exec 8>"$ELASTICMQ_CACHE_DIR/fetch.lock"
  flock -w 600 8 || die "timed out waiting for another ElasticMQ jar fetch (lock $ELASTICMQ_CACHE_DIR/fetch.lock)"
  if elasticmq_jars_cached; then
    exec 8>&-
    return
  fi
  local t0=$SECONDS mvn_log=$ELASTICMQ_CACHE_DIR/maven.log
  log "fetching ElasticMQ $ELASTICMQ_VERSION jars with Maven (cached for later runs)"
  rm -rf "$ELASTICMQ_LIBS_DIR" "$ELASTICMQ_LIBS_MARKER"
  maven_copy_dependencies "$ELASTICMQ_CACHE_DIR" "$ELASTICMQ_LIBS_DIR" elasticmq-server-jars "$(
    cat <<DEPENDENCIES
    <dependency>
      <groupId>org.elasticmq</groupId>
      <artifactId>elasticmq-server_2.13</artifactId>
      <version>$ELASTICMQ_VERSION</version>
    </dependency>
DEPENDENCIES
  )" || die "Maven could not fetch the ElasticMQ $ELASTICMQ_VERSION jars (full log: $mvn_log)"
  [[ -f $ELASTICMQ_LIBS_DIR/elasticmq-server_2.13-$ELASTICMQ_VERSION.jar ]] ||
    die "Maven finished but elasticmq-server_2.13-$ELASTICMQ_VERSION.jar is missing from $ELASTICMQ_LIBS_DIR"
  printf '%s\n' "$ELASTICMQ_VERSION" >"$ELASTICMQ_LIBS_MARKER"
  exec 8>&-
  log "$(find "$ELASTICMQ_LIBS_DIR" -name '*.jar' | wc -l) jars cached in ${ELASTICMQ_LIBS_DIR#"$ELASTICMQ_ROOT"/} ($((SECONDS - t0)) s)"
}

# --- configuration --------------------------------------------------------------------------------
# write_config FILE PORT [DATA_DIR]: a single-node server bound to 127.0.0.1:PORT whose queue URLs name
# that address. With DATA_DIR, queues (HOCON) and messages (H2) persist there; without, in memory.
write_config() {
  local file=$1 port=$2 data=${3:-}
  {
    printf '# Written by scripts/sqs/elasticmq.sh -- local SQS-compatible server for development and tests.\n'
    # Keeps ElasticMQ's own settings (pekko-http timeouts sized for 20 s long polls).
    printf 'include classpath("application.conf")\n'
    printf 'node-address { protocol = "http", host = "127.0.0.1", port = %s, context-path = "" }\n' "$port"
    printf 'rest-sqs { enabled = true, bind-port = %s, bind-hostname = "127.0.0.1", sqs-limits = strict }\n' "$port"
    printf 'generate-node-address = false\n'
    printf 'aws { region = "us-east-1", accountId = "000000000000" }\n'
    if [[ -n $data ]]; then
      printf 'queues-storage { enabled = true, path = "%s/queues.conf" }\n' "$data"
      printf 'messages-storage { enabled = true, uri = "jdbc:h2:%s/messages" }\n' "$data"
    fi
  } >"$file"
}

# java_cmd CONFIG XMX [JVM_OPTION...]: the server's command line, in the array ELASTICMQ_CMD.
java_cmd() {
  local config=$1 xmx=$2
  shift 2
  ELASTICMQ_CMD=(java "-Xmx$xmx" -XX:+UseSerialGC "$@" -Djava.awt.headless=true
    "-Dconfig.file=$config" -cp "$ELASTICMQ_LIBS_DIR/*" "$ELASTICMQ_MAIN_CLASS")
}

wait_ready() { # wait_ready ENDPOINT SECONDS [PID]
  node "$SQS_SCRIPTS/wait-ready.mjs" --endpoint "$1" --timeout "$2" ${3:+--pid "$3"}
}

require_jars() {
  elasticmq_jars_cached ||
    die "the ElasticMQ $ELASTICMQ_VERSION jars are not in $ELASTICMQ_LIBS_DIR: run \`npm run brokers\` or \`bash scripts/sqs/elasticmq.sh fetch\`" 2
  command -v java >/dev/null || die "java is not installed (needed to run ElasticMQ)"
}

# --- commands ---------------------------------------------------------------------------------------
cmd_ensure() {
  local endpoint=$SQS_ENDPOINT
  # Something already answers (another checkout's server, `docker compose up`): use it. Tests start
  # private servers from the jars, so fetch those anyway.
  if wait_ready "$endpoint" 0 >/dev/null 2>&1; then
    fetch_jars
    log "ready on $endpoint (already running)"
    return
  fi
  local port
  case "$endpoint" in
    http://127.0.0.1:* | http://localhost:*) port=${endpoint##*:} && port=${port%%/*} ;;
    *) die "nothing answers at SQS_ENDPOINT=$endpoint, and only a local server (http://127.0.0.1:<port>) can be started here" ;;
  esac
  [[ $port =~ ^[0-9]+$ ]] || die "cannot read a port from SQS_ENDPOINT=$endpoint"
  fetch_jars
  require_jars
  mkdir -p "$ELASTICMQ_DATA_DIR" "$ELASTICMQ_LOG_DIR"
  exec 9>"$ELASTICMQ_CACHE_DIR/start.lock"
  flock -w 120 9 || die "timed out waiting for another start (lock $ELASTICMQ_CACHE_DIR/start.lock)"
  local pid t0=$SECONDS
  if pid=$(elasticmq_running_pid); then
    log "server process $pid is already starting, waiting for it"
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port 127.0.0.1:$port is taken by a process that does not answer as an SQS server (see: ss -ltnp 'sport = :$port')"
    fi
    write_config "$ELASTICMQ_CONFIG" "$port" "$ELASTICMQ_DATA_DIR"
    java_cmd "$ELASTICMQ_CONFIG" 384m
    # setsid + nohup: own session, immune to the caller's SIGHUP; every fd redirected (the lock's
    # closed) so callers reading our output get EOF.
    setsid nohup "${ELASTICMQ_CMD[@]}" </dev/null >"$ELASTICMQ_STDOUT_LOG" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$ELASTICMQ_PID_FILE"
    log "starting ElasticMQ $ELASTICMQ_VERSION (pid $pid, data in ${ELASTICMQ_DATA_DIR#"$ELASTICMQ_ROOT"/}, log ${ELASTICMQ_STDOUT_LOG#"$ELASTICMQ_ROOT"/})"
  fi
  set +e
  wait_ready "$endpoint" "$ELASTICMQ_READY_TIMEOUT" "$pid"
  local rc=$?
  set -e
  case $rc in
    0) log "ready on $endpoint (started in $((SECONDS - t0)) s)" ;;
    3)
      tail -n 30 "$ELASTICMQ_STDOUT_LOG" >&2 || true
      die "server (pid $pid) exited before answering on $endpoint"
      ;;
    *)
      tail -n 30 "$ELASTICMQ_STDOUT_LOG" >&2 || true
      die "server did not answer ListQueues on $endpoint within $ELASTICMQ_READY_TIMEOUT s (pid $pid still running; scripts/sqs/elasticmq.sh stop stops it)"
      ;;
  esac
}

cmd_run() {
  local dir=${1:-} port=${2:-} xmx=${3:-192m}
  [[ -n $dir && $port =~ ^[0-9]+$ ]] || die "usage: elasticmq.sh run DIR PORT [XMX]" 64
  require_jars
  mkdir -p "$dir"
  write_config "$dir/elasticmq.conf" "$port"
  # The JIT's first tier only: a short-lived test server answers sooner and burns less CPU starting.
  java_cmd "$dir/elasticmq.conf" "$xmx" -XX:TieredStopAtLevel=1
  exec "${ELASTICMQ_CMD[@]}"
}

cmd_stop() {
  local signal=TERM pid
  case "${1:-}" in
    "") ;;
    --kill | -9) signal=KILL ;;
    *) die "unknown argument '$1' (usage: elasticmq.sh stop [--kill])" 64 ;;
  esac
  if ! pid=$(elasticmq_running_pid); then
    rm -f "$ELASTICMQ_PID_FILE"
    log "no ElasticMQ server started by brokers.sh is running"
    return
  fi
  kill -s "$signal" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + ELASTICMQ_STOP_TIMEOUT))
  while elasticmq_running_pid >/dev/null; do
    if ((SECONDS >= deadline)); then
      kill -s KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$ELASTICMQ_PID_FILE"
  log "stopped (pid $pid, SIG$signal)"
}

case "${1:-}" in
  fetch) fetch_jars ;;
  ensure) cmd_ensure ;;
  run)
    shift
    cmd_run "$@"
    ;;
  stop)
    shift
    cmd_stop "$@"
    ;;
  *) die "usage: elasticmq.sh fetch | ensure | run DIR PORT [XMX] | stop [--kill]" 64 ;;
esac
