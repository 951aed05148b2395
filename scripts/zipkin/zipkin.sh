#!/usr/bin/env bash
# A local trace backend: Zipkin's server (Apache-2.0), one runnable jar from Maven Central
# (io.zipkin:zipkin-server, classifier exec), in-memory storage. Used by
#   - test/support/zipkin-server.ts (`fetch`, `run`): private servers on spare ports;
#   - people trying tracing locally (`ensure`): then `OTEL_TRACES_EXPORTER=zipkin npm start`, and
#     http://127.0.0.1:9411/zipkin/ shows the traces.
#
#   bash scripts/zipkin/zipkin.sh fetch          # the jar into .cache/zipkin/ (Maven, once; ~130 MB)
#   bash scripts/zipkin/zipkin.sh run PORT [XMX] # execs a server on 127.0.0.1:PORT (foreground)
#   bash scripts/zipkin/zipkin.sh ensure         # a server answers on 127.0.0.1:${ZIPKIN_PORT:-9411} (detached)
#   bash scripts/zipkin/zipkin.sh stop           # stops the server `ensure` started
#
# Exit code 2 from `run`: the jar is not cached (run `fetch`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ZIPKIN_VERSION=${ZIPKIN_VERSION:-3.5.1}
CACHE=${ZIPKIN_CACHE_DIR:-$ROOT/.cache/zipkin}
JAR=$CACHE/zipkin-server-$ZIPKIN_VERSION-exec.jar
PID_FILE=$CACHE/zipkin.pid
PORT_DEFAULT=${ZIPKIN_PORT:-9411}

log() { printf 'zipkin: %s\n' "$*"; }
die() {
  printf 'zipkin: ERROR: %s\n' "$1" >&2
  exit "${2:-1}"
}

fetch() {
  [[ -f $JAR ]] && return
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch zipkin-server $ZIPKIN_VERSION"
  mkdir -p "$CACHE"
  # Concurrent fetches (two test files) would write the same file: one at a time.
  exec 8>"$CACHE/fetch.lock"
  flock -w 900 8 || die "timed out waiting for another Zipkin fetch ($CACHE/fetch.lock)"
  if [[ ! -f $JAR ]]; then
    log "fetching io.zipkin:zipkin-server:$ZIPKIN_VERSION:jar:exec with Maven (cached for later runs)"
    mvn -q -B dependency:copy -Dartifact="io.zipkin:zipkin-server:$ZIPKIN_VERSION:jar:exec" \
      -DoutputDirectory="$CACHE" -Dmdep.overWriteReleases=false >"$CACHE/maven.log" 2>&1 ||
      die "Maven could not fetch zipkin-server (see $CACHE/maven.log)"
    [[ -f $JAR ]] || die "Maven did not leave $JAR (see $CACHE/maven.log)"
  fi
  exec 8>&-
}

run() {
  local port=${1:?usage: zipkin.sh run PORT [XMX]} xmx=${2:-384m}
  [[ -f $JAR ]] || die "zipkin-server $ZIPKIN_VERSION is not cached: bash scripts/zipkin/zipkin.sh fetch" 2
  exec java "-Xmx$xmx" -XX:+UseSerialGC -jar "$JAR" --server.address=127.0.0.1 --server.port="$port" \
    --logging.level.root=WARN
}

ready() { curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1; }

case "${1:-}" in
  fetch) fetch ;;
  run) shift && run "$@" ;;
  ensure)
    if ready "$PORT_DEFAULT"; then exit 0; fi
    fetch
    nohup bash "$0" run "$PORT_DEFAULT" >"$CACHE/zipkin.out" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 120); do
      if ready "$PORT_DEFAULT"; then
        log "Zipkin on http://127.0.0.1:$PORT_DEFAULT/zipkin/"
        exit 0
      fi
      sleep 0.5
    done
    die "Zipkin did not answer on port $PORT_DEFAULT (see $CACHE/zipkin.out)"
    ;;
  stop)
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] && kill "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
    ;;
  *) die "usage: zipkin.sh fetch | run PORT [XMX] | ensure | stop" ;;
esac
