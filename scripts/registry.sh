#!/usr/bin/env bash
# scripts/registry.sh - run a real schema registry on this machine for Weir's tests: Apicurio
# Registry 3.0.9 (its app distribution from Maven Central, cached in ~/.m2 and extracted once
# into the state dir), in-memory storage (every start begins empty), no authentication.
#
#   scripts/registry.sh start    (idempotent: if it is already running and ready, says so)
#   scripts/registry.sh stop     (SIGTERM, then SIGKILL after WEIR_REGISTRY_STOP_TIMEOUT)
#   scripts/registry.sh status   (exit 0 only if it is running and ready)
#   scripts/registry.sh url      (prints the Confluent-compatible base URL,
#                                 http://127.0.0.1:PORT/apis/ccompat/v7)
#   scripts/registry.sh fetch    (only download and extract the distribution)
#
# Port contract: HTTP on 127.0.0.1:18080 (WEIR_REGISTRY_PORT), one registry per port.
#   http://127.0.0.1:PORT/apis/ccompat/v7   Confluent Schema Registry API (schema ids are
#                                           Apicurio content ids: global, shared by subjects)
#   http://127.0.0.1:PORT/apis/registry/v3  Apicurio's own API
#   http://127.0.0.1:PORT/health/ready      readiness (200 once it serves)
# Deleting is enabled in Apicurio's own API too (ccompat deletes work either way).
# Apicurio has no compatibility rule by default (GET /config says NONE), unlike Confluent's
# BACKWARD: set one with PUT /config, or start with WEIR_REGISTRY_JVM_OPTS=
# -Dapicurio.rules.global.compatibility=BACKWARD (enforced, though GET /config still says NONE).
#
# Environment:
#   WEIR_REGISTRY_PORT           HTTP port (default 18080)
#   WEIR_REGISTRY_STATE          state root: the extracted distribution, and per port a
#                                directory port-PORT with pid and registry.log
#                                (default ${XDG_CACHE_HOME:-$HOME/.cache}/weir/registry)
#   WEIR_REGISTRY_HEAP_OPTS      heap (default "-Xms64m -Xmx384m")
#   WEIR_REGISTRY_JVM_OPTS       extra JVM options, e.g. -Dapicurio.ccompat.use-canonical-hash=true
#   WEIR_REGISTRY_JAVA           java binary, Java 17+ (default $JAVA_HOME/bin/java, then java)
#   WEIR_REGISTRY_M2_REPO        Maven local repository to look in first (default ~/.m2/repository;
#                                if the artifact is not there, mvn fetches it)
#   WEIR_REGISTRY_START_TIMEOUT  seconds to wait until ready (default 60)
#   WEIR_REGISTRY_STOP_TIMEOUT   seconds before SIGKILL on stop (default 20)
set -euo pipefail

VERSION=3.0.9
GAV=io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all
TARBALL=apicurio-registry-app-$VERSION-all.tar.gz
JAR=apicurio-registry-app-$VERSION-runner.jar

STATE_ROOT=${WEIR_REGISTRY_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/registry}
DIST=$STATE_ROOT/apicurio-registry-app-$VERSION
M2_REPO=${WEIR_REGISTRY_M2_REPO:-$HOME/.m2/repository}
PORT=${WEIR_REGISTRY_PORT:-18080}
HEAP=${WEIR_REGISTRY_HEAP_OPTS:--Xms64m -Xmx384m}
START_TIMEOUT=${WEIR_REGISTRY_START_TIMEOUT:-60}
STOP_TIMEOUT=${WEIR_REGISTRY_STOP_TIMEOUT:-20}
if [[ -n ${WEIR_REGISTRY_JAVA:-} ]]; then JAVA=$WEIR_REGISTRY_JAVA
elif [[ -n ${JAVA_HOME:-} && -x ${JAVA_HOME}/bin/java ]]; then JAVA=$JAVA_HOME/bin/java
else JAVA=java; fi
RUN_DIR=$STATE_ROOT/port-$PORT
PID_FILE=$RUN_DIR/pid
LOG_FILE=$RUN_DIR/registry.log
BASE_URL=http://127.0.0.1:$PORT

log() { echo "registry.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- distribution
# The tarball from ~/.m2 (fetched by mvn if missing), extracted once into $DIST.
ensure_dist() {
  [[ -f $DIST/$JAR && -f $DIST/.extracted ]] && return 0
  mkdir -p "$STATE_ROOT"
  exec 8>"$STATE_ROOT/dist.lock"; flock 8  # registries on other ports may be extracting it too
  [[ -f $DIST/$JAR && -f $DIST/.extracted ]] && { exec 8>&-; return 0; }
  local t0=$SECONDS tgz=$M2_REPO/io/apicurio/apicurio-registry-app/$VERSION/$TARBALL copy="" tmp
  if [[ ! -s $tgz ]]; then
    # dependency:copy resolves into whatever local repository mvn is configured with and
    # copies the file out, so this works whatever settings.xml says.
    command -v mvn >/dev/null || die "the registry distribution is not in $M2_REPO and mvn is not installed"
    copy=$(mktemp -d "$STATE_ROOT/download.XXXXXX")
    log "fetching $GAV with Maven (~110 MB)..."
    local out
    if ! out=$(mvn -B -q dependency:copy -Dartifact="$GAV" -DoutputDirectory="$copy" 2>&1); then
      echo "$out" >&2; rm -rf "$copy"; die "mvn could not fetch $GAV"
    fi
    tgz=$copy/$TARBALL
    [[ -s $tgz ]] || { rm -rf "$copy"; die "mvn did not produce $TARBALL"; }
  fi
  tmp=$(mktemp -d "$STATE_ROOT/extract.XXXXXX")
  if ! tar -xzf "$tgz" -C "$tmp" || [[ ! -f $tmp/$JAR ]]; then
    rm -rf "$tmp" ${copy:+"$copy"}; die "cannot extract $tgz (no $JAR in it?)"
  fi
  [[ -z $copy ]] || rm -rf "$copy"
  touch "$tmp/.extracted"; chmod 755 "$tmp"
  rm -rf "$DIST"
  mv "$tmp" "$DIST"
  exec 8>&-
  log "extracted Apicurio Registry $VERSION into $DIST ($((SECONDS - t0))s)"
}

check_java() {
  local v
  v=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p') ||
    die "cannot run java ($JAVA)"
  [[ ${v%%.*} -ge 17 ]] 2>/dev/null || die "Apicurio Registry $VERSION needs Java 17+, $JAVA is Java ${v:-unknown}"
}

# ---------------------------------------------------------------- process
port_open() { (: <>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# Pid of our registry on $PORT (guards against pid reuse).
registry_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid; pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  local cmd; cmd=$({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null) || return 1
  [[ $cmd == *"-Dquarkus.http.port=$PORT "* && $cmd == *"-jar $JAR"* ]] || return 1
  echo "$pid"
}
# The launched process is alive (before `exec` its pid is the launching subshell's).
launched_alive() { [[ -f $PID_FILE ]] && kill -0 "$(<"$PID_FILE")" 2>/dev/null; }

ready() { curl -fsS -o /dev/null --max-time 5 "$BASE_URL/health/ready" 2>/dev/null; }

launch() {
  mkdir -p "$RUN_DIR"
  # shellcheck disable=SC2086 # HEAP and WEIR_REGISTRY_JVM_OPTS are word lists
  ( cd "$DIST" && exec setsid "$JAVA" $HEAP -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$PORT" -Dquarkus.banner.enabled=false \
      -Dapicurio.rest.deletion.artifact.enabled=true \
      -Dapicurio.rest.deletion.artifact-version.enabled=true \
      -Dapicurio.rest.deletion.group.enabled=true \
      ${WEIR_REGISTRY_JVM_OPTS:-} -jar "$JAR" ) </dev/null >"$LOG_FILE" 2>&1 8>&- 9>&- &
  echo $! > "$PID_FILE"
  log "started Apicurio Registry $VERSION on port $PORT (pid $!, log $LOG_FILE)"
}

stop_registry() {
  local pid deadline=$((SECONDS + STOP_TIMEOUT))
  if pid=$(registry_pid) || { launched_alive && pid=$(<"$PID_FILE"); }; then
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        log "registry (pid $pid) did not stop in ${STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 1000))
      fi
      sleep 0.2
    done
    log "stopped the registry on port $PORT"
  fi
  rm -f "$PID_FILE"
}

show_failure() {
  log "---- tail of $LOG_FILE"
  tail -n 40 "$LOG_FILE" >&2 2>/dev/null || true
  stop_registry
}

# ---------------------------------------------------------------- commands
cmd_start() {
  local t0=$SECONDS
  if registry_pid >/dev/null; then
    if ready; then log "registry is already running and ready on port $PORT: $BASE_URL/apis/ccompat/v7"; return 0; fi
    log "registry on port $PORT is running but not ready; waiting"
  else
    command -v curl >/dev/null || die "curl is needed to check the registry's health"
    port_open && die "port $PORT is already in use by a process this script did not start"
    check_java
    ensure_dist
    launch
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until ready; do
    launched_alive || { log "the registry exited during startup"; show_failure; exit 1; }
    if ((SECONDS >= deadline)); then
      log "registry not ready after ${START_TIMEOUT}s"; show_failure; exit 1
    fi
    sleep 0.25
  done
  registry_pid >/dev/null || { log "something else answers on port $PORT"; show_failure; exit 1; }
  log "registry is ready in $((SECONDS - t0))s: $BASE_URL/apis/ccompat/v7"
}

cmd_stop() {
  if ! registry_pid >/dev/null && ! launched_alive; then
    rm -f "$PID_FILE"; log "registry on port $PORT is not running"; return 0
  fi
  stop_registry
}

cmd_status() {
  local pid
  if ! pid=$(registry_pid); then echo "registry stopped port=$PORT"; return 1; fi
  if ready; then
    echo "registry running pid=$pid port=$PORT url=$BASE_URL/apis/ccompat/v7 log=$LOG_FILE"
  else
    echo "registry starting (not ready) pid=$pid port=$PORT log=$LOG_FILE"; return 1
  fi
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

[[ $# -eq 1 ]] || usage
if ! [[ $PORT =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65535)); then die "WEIR_REGISTRY_PORT must be a port number: $PORT"; fi
case $1 in  # one changing command at a time (tests may race to start it)
  start | stop) mkdir -p "$STATE_ROOT"; exec 9>"$STATE_ROOT/port-$PORT.lock"; flock 9 ;;
esac
case $1 in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) echo "$BASE_URL/apis/ccompat/v7" ;;
  fetch) ensure_dist; echo "$DIST" ;;
  *) usage ;;
esac
