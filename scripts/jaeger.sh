#!/usr/bin/env bash
# scripts/jaeger.sh - run a real Jaeger on this machine for Weir's tests: the `jaeger` binary of
# Jaeger v1.75.0 (Jaeger v2, built on the OpenTelemetry Collector), built from the Go module
# github.com/jaegertracing/jaeger@v1.75.0 once and cached outside the repository, run with a
# generated config: in-memory storage (every start begins empty), no authentication, no UI
# assets (the module has none: / serves a placeholder page, the HTTP API works).
#
#   scripts/jaeger.sh start      (idempotent: if it is already running and ready, says so)
#   scripts/jaeger.sh stop       (SIGTERM, then SIGKILL after WEIR_JAEGER_STOP_TIMEOUT)
#   scripts/jaeger.sh status     (exit 0 only if it is running and ready)
#   scripts/jaeger.sh url        (prints the OTLP/HTTP base URL, http://127.0.0.1:4318;
#                                 traces go to POST $URL/v1/traces, protobuf or JSON)
#   scripts/jaeger.sh query-url  (prints the query API base URL, http://127.0.0.1:16686)
#   scripts/jaeger.sh fetch      (only build the binary if missing; prints its path)
#
# Port contract: every port on 127.0.0.1 only, all of them below 20000 (tests use 20000-32000);
# one Jaeger per OTLP/HTTP port (status, url, query-url and stop of a running one need only
# WEIR_JAEGER_OTLP_HTTP_PORT: its other ports are remembered). These are all the TCP ports it
# listens on, and it has no UDP ones (the generated config drops the defaults' metrics,
# health-check, zpages, expvar, sampling, Jaeger and Zipkin listeners, two of them 2777x):
#   4318   OTLP/HTTP receiver (WEIR_JAEGER_OTLP_HTTP_PORT): POST /v1/traces with
#          Content-Type application/x-protobuf or application/json (OTLP JSON: hex ids)
#   4317   OTLP/gRPC receiver (WEIR_JAEGER_OTLP_GRPC_PORT)
#   16686  query HTTP (WEIR_JAEGER_QUERY_PORT): /api/services, /api/traces?service=S,
#          /api/traces/TRACEID (Jaeger's JSON model), /api/v3/... (OTLP JSON); readiness is
#          GET /api/services answering 200
#   16685  query gRPC (WEIR_JAEGER_QUERY_GRPC_PORT): api_v2 and api_v3 QueryService
# Spans are batched (batch processor, up to 200 ms) before storage: a trace is queryable a
# fraction of a second after the OTLP request returns, so poll for it. In /api/traces answers
# a trace id whose high 64 bits are zero is printed as 16 hex digits, not 32; OTLP links are
# FOLLOWS_FROM references (without their attributes); /api/services with none says "data":null.
#
# Environment:
#   WEIR_JAEGER_OTLP_HTTP_PORT   OTLP/HTTP port (default 4318)
#   WEIR_JAEGER_OTLP_GRPC_PORT   OTLP/gRPC port (default 4317)
#   WEIR_JAEGER_QUERY_PORT       query HTTP port (default 16686)
#   WEIR_JAEGER_QUERY_GRPC_PORT  query gRPC port (default 16685)
#   WEIR_JAEGER_STATE            state root: bin/jaeger-VERSION, and per OTLP/HTTP port a
#                                directory port-PORT with pid, ports, config.yaml, jaeger.log
#                                (default ${XDG_CACHE_HOME:-$HOME/.cache}/weir/jaeger)
#   WEIR_JAEGER_BIN              use this jaeger binary instead of building one
#   WEIR_JAEGER_GO               go command for the build, Go 1.24.6+ (default go on PATH,
#                                then /usr/local/go/bin/go); the build takes minutes and
#                                needs the Go module proxy the first time
#   WEIR_JAEGER_GOCACHE          Go build cache for that build (default: a throwaway one in the
#                                build directory, ~GB while building, removed afterwards: the
#                                cached binary is what is kept)
#   WEIR_JAEGER_MAX_TRACES       in-memory storage capacity in traces (default 100000)
#   WEIR_JAEGER_LOG_LEVEL        debug, info, warn or error (default info)
#   WEIR_JAEGER_START_TIMEOUT    seconds to wait until ready (default 30)
#   WEIR_JAEGER_STOP_TIMEOUT     seconds before SIGKILL on stop (default 10)
set -euo pipefail

VERSION=1.75.0
MODULE=github.com/jaegertracing/jaeger

STATE_ROOT=${WEIR_JAEGER_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/jaeger}
BIN=${WEIR_JAEGER_BIN:-$STATE_ROOT/bin/jaeger-$VERSION}
OTLP_HTTP_PORT=${WEIR_JAEGER_OTLP_HTTP_PORT:-4318}
OTLP_GRPC_PORT=${WEIR_JAEGER_OTLP_GRPC_PORT:-4317}
QUERY_PORT=${WEIR_JAEGER_QUERY_PORT:-16686}
QUERY_GRPC_PORT=${WEIR_JAEGER_QUERY_GRPC_PORT:-16685}
MAX_TRACES=${WEIR_JAEGER_MAX_TRACES:-100000}
LOG_LEVEL=${WEIR_JAEGER_LOG_LEVEL:-info}
START_TIMEOUT=${WEIR_JAEGER_START_TIMEOUT:-30}
STOP_TIMEOUT=${WEIR_JAEGER_STOP_TIMEOUT:-10}
if [[ -n ${WEIR_JAEGER_GO:-} ]]; then GO=$WEIR_JAEGER_GO
elif command -v go >/dev/null; then GO=go
else GO=/usr/local/go/bin/go; fi
RUN_DIR=$STATE_ROOT/port-$OTLP_HTTP_PORT
PID_FILE=$RUN_DIR/pid
LOG_FILE=$RUN_DIR/jaeger.log
CONFIG=$RUN_DIR/config.yaml
PORTS_FILE=$RUN_DIR/ports
OTLP_URL=http://127.0.0.1:$OTLP_HTTP_PORT
QUERY_URL=http://127.0.0.1:$QUERY_PORT
PORTS=("$OTLP_HTTP_PORT" "$OTLP_GRPC_PORT" "$QUERY_PORT" "$QUERY_GRPC_PORT")

log() { echo "jaeger.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- binary
# Built from the module's own source tree (a copy of it out of the Go module cache), not with
# `go install MODULE/cmd/jaeger@v$VERSION`: its go.mod has a replace directive (Shopify/sarama),
# which `go install pkg@version` refuses, and building in the module keeps the release's exact
# dependency versions. CGO off and -trimpath, as upstream's Makefile builds it.
ensure_bin() {
  [[ -x $BIN ]] && return 0
  [[ -z ${WEIR_JAEGER_BIN:-} ]] || die "WEIR_JAEGER_BIN=$WEIR_JAEGER_BIN is not an executable file"
  mkdir -p "$STATE_ROOT/bin"
  exec 8>"$STATE_ROOT/build.lock"; flock 8  # jaegers on other ports may be building it too
  [[ -x $BIN ]] && { exec 8>&-; return 0; }
  "$GO" version >/dev/null 2>&1 || die "the jaeger binary is not built yet and there is no Go ($GO)"
  local t0=$SECONDS tmp src
  tmp=$(mktemp -d "$STATE_ROOT/build.XXXXXX")
  local gocache=${WEIR_JAEGER_GOCACHE:-$tmp/gocache}
  # A module-cache download works outside any module; run it in an empty directory so that a
  # go.mod or go.work around the caller's working directory plays no part.
  log "downloading $MODULE@v$VERSION with go..."
  if ! src=$(cd "$tmp" && GOFLAGS='' GOWORK=off "$GO" mod download -json "$MODULE@v$VERSION" |
               sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') || [[ ! -f $src/go.mod ]]; then
    rm -rf "$tmp"; die "cannot download $MODULE@v$VERSION from the Go module proxy"
  fi
  cp -R "$src" "$tmp/src"; chmod -R u+w "$tmp/src"
  log "building jaeger $VERSION (takes minutes; output in $STATE_ROOT/build.log)..."
  if ! (cd "$tmp/src" && GOFLAGS=-mod=mod GOWORK=off GOCACHE=$gocache CGO_ENABLED=0 "$GO" build -trimpath -buildvcs=false \
          -ldflags "-X $MODULE/internal/version.latestVersion=v$VERSION" \
          -o "$tmp/jaeger" ./cmd/jaeger) >"$STATE_ROOT/build.log" 2>&1; then
    tail -n 40 "$STATE_ROOT/build.log" >&2; chmod -R u+w "$tmp"; rm -rf "$tmp"
    die "go build of jaeger $VERSION failed"
  fi
  mv "$tmp/jaeger" "$BIN"
  chmod -R u+w "$tmp"; rm -rf "$tmp"  # the module copy came read-only from the module cache
  exec 8>&-
  log "built jaeger $VERSION into $BIN in $((SECONDS - t0))s ($(du -m "$BIN" | cut -f1) MB)"
}

write_config() {
  mkdir -p "$RUN_DIR"
  cat >"$CONFIG.tmp" <<EOF
# Generated by scripts/jaeger.sh on each start; edits are lost.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: $LOG_LEVEL

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: $MAX_TRACES
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:$QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$QUERY_GRPC_PORT

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$OTLP_GRPC_PORT
      http:
        endpoint: 127.0.0.1:$OTLP_HTTP_PORT

processors:
  batch:
    timeout: 200ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
  mv "$CONFIG.tmp" "$CONFIG"
}

# ---------------------------------------------------------------- process
port_open() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Pid of our jaeger for this port set (guards against pid reuse).
jaeger_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid; pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  local cmd; cmd=$({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null) || return 1
  [[ $cmd == *"--config $CONFIG "* ]] || return 1
  echo "$pid"
}
# The launched process is alive (before `exec` its pid is the launching subshell's).
launched_alive() { [[ -f $PID_FILE ]] && kill -0 "$(<"$PID_FILE")" 2>/dev/null; }

ready() {
  curl -fsS -o /dev/null --max-time 5 "$QUERY_URL/api/services" 2>/dev/null &&
    port_open "$OTLP_HTTP_PORT" && port_open "$OTLP_GRPC_PORT"
}

# The other ports of a jaeger already running on $OTLP_HTTP_PORT, as it was started: used where
# the caller did not set them (so `WEIR_JAEGER_OTLP_HTTP_PORT=P scripts/jaeger.sh status` and
# `query-url` tell the truth); a caller that set one differently is told to stop it first.
adopt_running_ports() {
  jaeger_pid >/dev/null && [[ -f $PORTS_FILE ]] || return 0
  local name value current var
  while IFS='=' read -r name value; do
    case $name in
      OTLP_GRPC_PORT) var=WEIR_JAEGER_OTLP_GRPC_PORT ;;
      QUERY_PORT) var=WEIR_JAEGER_QUERY_PORT ;;
      QUERY_GRPC_PORT) var=WEIR_JAEGER_QUERY_GRPC_PORT ;;
      *) continue ;;
    esac
    [[ $value =~ ^[0-9]+$ ]] || continue
    current=${!name}
    if [[ -z ${!var:-} ]]; then printf -v "$name" '%s' "$value"
    elif [[ $current != "$value" ]]; then
      die "the jaeger on OTLP/HTTP port $OTLP_HTTP_PORT runs with $var=$value, not $current (stop it first)"
    fi
  done <"$PORTS_FILE"
  QUERY_URL=http://127.0.0.1:$QUERY_PORT
  PORTS=("$OTLP_HTTP_PORT" "$OTLP_GRPC_PORT" "$QUERY_PORT" "$QUERY_GRPC_PORT")
}

launch() {
  write_config
  printf 'OTLP_GRPC_PORT=%s\nQUERY_PORT=%s\nQUERY_GRPC_PORT=%s\n' \
    "$OTLP_GRPC_PORT" "$QUERY_PORT" "$QUERY_GRPC_PORT" >"$PORTS_FILE"
  ( exec setsid "$BIN" --config "$CONFIG" ) </dev/null >"$LOG_FILE" 2>&1 8>&- 9>&- &
  echo $! > "$PID_FILE"
  log "started jaeger $VERSION with OTLP/HTTP on port $OTLP_HTTP_PORT (pid $!, log $LOG_FILE)"
}

stop_jaeger() {
  local pid deadline=$((SECONDS + STOP_TIMEOUT))
  if pid=$(jaeger_pid) || { launched_alive && pid=$(<"$PID_FILE"); }; then
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        log "jaeger (pid $pid) did not stop in ${STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 1000))
      fi
      sleep 0.1
    done
    log "stopped jaeger on port $OTLP_HTTP_PORT"
  fi
  rm -f "$PID_FILE"
}

show_failure() {
  log "---- tail of $LOG_FILE"
  tail -n 40 "$LOG_FILE" >&2 2>/dev/null || true
  stop_jaeger
}

# ---------------------------------------------------------------- commands
cmd_start() {
  local t0=$SECONDS p
  if jaeger_pid >/dev/null; then
    if ready; then log "jaeger is already running and ready: OTLP $OTLP_URL, query $QUERY_URL"; return 0; fi
    log "jaeger on port $OTLP_HTTP_PORT is running but not ready; waiting"
  else
    command -v curl >/dev/null || die "curl is needed to check jaeger's readiness"
    for p in "${PORTS[@]}"; do
      port_open "$p" && die "port $p is already in use by a process this script did not start"
    done
    ensure_bin
    launch
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until ready; do
    launched_alive || { log "jaeger exited during startup"; show_failure; exit 1; }
    if ((SECONDS >= deadline)); then
      log "jaeger not ready after ${START_TIMEOUT}s"; show_failure; exit 1
    fi
    sleep 0.1
  done
  jaeger_pid >/dev/null || { log "something else answers on jaeger's ports"; show_failure; exit 1; }
  log "jaeger is ready in $((SECONDS - t0))s: OTLP $OTLP_URL, query $QUERY_URL"
}

cmd_stop() {
  if ! jaeger_pid >/dev/null && ! launched_alive; then
    rm -f "$PID_FILE"; log "jaeger on port $OTLP_HTTP_PORT is not running"; return 0
  fi
  stop_jaeger
}

cmd_status() {
  local pid
  if ! pid=$(jaeger_pid); then echo "jaeger stopped port=$OTLP_HTTP_PORT"; return 1; fi
  if ready; then
    echo "jaeger running pid=$pid otlp=$OTLP_URL otlp-grpc=127.0.0.1:$OTLP_GRPC_PORT query=$QUERY_URL log=$LOG_FILE"
  else
    echo "jaeger starting (not ready) pid=$pid port=$OTLP_HTTP_PORT log=$LOG_FILE"; return 1
  fi
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

[[ $# -eq 1 ]] || usage
for p in "${PORTS[@]}"; do
  if ! [[ $p =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then die "jaeger ports must be port numbers: $p"; fi
done
[[ $MAX_TRACES =~ ^[1-9][0-9]*$ ]] || die "WEIR_JAEGER_MAX_TRACES must be a positive number: $MAX_TRACES"
case $1 in  # one changing command at a time (tests may race to start it)
  start | stop) mkdir -p "$STATE_ROOT"; exec 9>"$STATE_ROOT/port-$OTLP_HTTP_PORT.lock"; flock 9 ;;
esac
[[ $1 == fetch ]] || adopt_running_ports
case $1 in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) echo "$OTLP_URL" ;;
  query-url) echo "$QUERY_URL" ;;
  fetch) ensure_bin; echo "$BIN" ;;
  *) usage ;;
esac
