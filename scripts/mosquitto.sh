#!/usr/bin/env bash
# scripts/mosquitto.sh - run a real MQTT broker on this machine for Weir's tests: Eclipse
# Mosquitto from Debian's `mosquitto` package (2.0.x; MQTT 3.1, 3.1.1 and 5), with readiness
# checked by `mosquitto_sub` from `mosquitto-clients` (.ci/run installs both; this script does
# not). Run with a generated config: plain TCP, persistence on (sessions of clients connected
# with clean session false / a session expiry, their queued QoS 1/2 messages and retained
# messages survive `restart`, and `stop` then `start`, until `reset`).
#
#   scripts/mosquitto.sh start    (idempotent: if it is already running and ready, says so;
#                                  refuses if it runs with a different configuration)
#   scripts/mosquitto.sh stop     (SIGTERM, which saves the persistence database, then SIGKILL
#                                  after WEIR_MOSQUITTO_STOP_TIMEOUT)
#   scripts/mosquitto.sh restart  (stop, then start: keeps the persistence database)
#   scripts/mosquitto.sh reset    (stop if running, and delete the persistence database: the
#                                  next start begins empty)
#   scripts/mosquitto.sh status   (exit 0 only if it is running and ready)
#   scripts/mosquitto.sh url      (prints the broker address, 127.0.0.1:PORT)
#
# Port contract: MQTT over TCP on 127.0.0.1:11883 (WEIR_MOSQUITTO_PORT), below 20000 (tests
# use 20000-32000) and below 32768 (ephemeral ports); one broker per port, and that is its
# only listener (no websockets, no TLS, nothing on 1883). Readiness: the port accepts TCP and
# a subscriber (with the first user's credentials if WEIR_MOSQUITTO_PASSWORDS is set) receives
# the retained $SYS/broker/version. Debian's own mosquitto service (port 1883) plays no part.
# Persistence keeps only sessions whose latest CONNECT had clean session / clean start 0: an
# MQTT 5 client that connected with clean start 1 and a session expiry interval keeps its
# session across a reconnect, but loses it on restart (mosquitto writes no such session to
# its database). To prove a session survives restart, connect with clean start 0 every time.
#
# Environment:
#   WEIR_MOSQUITTO_PORT              TCP port (default 11883)
#   WEIR_MOSQUITTO_STATE             state root; per port a directory port-PORT with pid,
#                                    mosquitto.conf, passwd and probe (the first user, for
#                                    readiness checks), mosquitto.log and data/ (the
#                                    persistence database, data/mosquitto.db)
#                                    (default ${XDG_CACHE_HOME:-$HOME/.cache}/weir/mosquitto)
#   WEIR_MOSQUITTO_PASSWORDS         "user:pass,user2:pass2": users in a password file made with
#                                    mosquitto_passwd (a password may hold ':' but no ',');
#                                    anonymous clients are then refused unless
#                                    WEIR_MOSQUITTO_ANONYMOUS=true is set too
#   WEIR_MOSQUITTO_ANONYMOUS         allow_anonymous, true or false (default true without
#                                    passwords, false with them)
#   WEIR_MOSQUITTO_MAX_PACKET_SIZE   max_packet_size in bytes, 0 for no limit (default 0)
#   WEIR_MOSQUITTO_LOG_TYPES         log_type values, space separated: all, or some of debug
#                                    error warning notice information subscribe unsubscribe
#                                    (default all: every packet is logged, with timestamps)
#   WEIR_MOSQUITTO_AUTOSAVE_INTERVAL seconds between saves of the persistence database while
#                                    running, 0 for only on exit (default 30; SIGKILL loses
#                                    what changed since the last save)
#   WEIR_MOSQUITTO_EXTRA_CONF        more mosquitto.conf lines, appended as they are
#   WEIR_MOSQUITTO_CLEAN             1: start and restart delete the persistence database
#                                    before launching (start refuses if it is already running)
#   WEIR_MOSQUITTO_BIN               mosquitto binary (default mosquitto on PATH, then
#                                    /usr/sbin/mosquitto)
#   WEIR_MOSQUITTO_START_TIMEOUT     seconds to wait until ready (default 15)
#   WEIR_MOSQUITTO_STOP_TIMEOUT      seconds before SIGKILL on stop (default 10)
set -euo pipefail

STATE_ROOT=${WEIR_MOSQUITTO_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/mosquitto}
PORT=${WEIR_MOSQUITTO_PORT:-11883}
PASSWORDS=${WEIR_MOSQUITTO_PASSWORDS:-}
if [[ -n $PASSWORDS ]]; then ANONYMOUS=${WEIR_MOSQUITTO_ANONYMOUS:-false}
else ANONYMOUS=${WEIR_MOSQUITTO_ANONYMOUS:-true}; fi
MAX_PACKET_SIZE=${WEIR_MOSQUITTO_MAX_PACKET_SIZE:-0}
LOG_TYPES=${WEIR_MOSQUITTO_LOG_TYPES:-all}
AUTOSAVE_INTERVAL=${WEIR_MOSQUITTO_AUTOSAVE_INTERVAL:-30}
CLEAN=${WEIR_MOSQUITTO_CLEAN:-0}
START_TIMEOUT=${WEIR_MOSQUITTO_START_TIMEOUT:-15}
STOP_TIMEOUT=${WEIR_MOSQUITTO_STOP_TIMEOUT:-10}
if [[ -n ${WEIR_MOSQUITTO_BIN:-} ]]; then BIN=$WEIR_MOSQUITTO_BIN
elif command -v mosquitto >/dev/null; then BIN=$(command -v mosquitto)
else BIN=/usr/sbin/mosquitto; fi  # Debian puts it in /usr/sbin, not always on a user's PATH
RUN_DIR=$STATE_ROOT/port-$PORT
PID_FILE=$RUN_DIR/pid
LOG_FILE=$RUN_DIR/mosquitto.log
CONFIG=$RUN_DIR/mosquitto.conf
PASSWD_FILE=$RUN_DIR/passwd
PROBE_FILE=$RUN_DIR/probe  # the first user and password, for readiness checks of the running one
DATA_DIR=$RUN_DIR/data
ADDRESS=127.0.0.1:$PORT

log() { echo "mosquitto.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- config

check_settings() {
  if ! [[ $PORT =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65535)); then die "WEIR_MOSQUITTO_PORT must be a port number: $PORT"; fi
  [[ $ANONYMOUS == true || $ANONYMOUS == false ]] || die "WEIR_MOSQUITTO_ANONYMOUS must be true or false: $ANONYMOUS"
  [[ $MAX_PACKET_SIZE =~ ^[0-9]+$ ]] || die "WEIR_MOSQUITTO_MAX_PACKET_SIZE must be a number of bytes: $MAX_PACKET_SIZE"
  [[ $AUTOSAVE_INTERVAL =~ ^[0-9]+$ ]] || die "WEIR_MOSQUITTO_AUTOSAVE_INTERVAL must be a number of seconds: $AUTOSAVE_INTERVAL"
  [[ $START_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "WEIR_MOSQUITTO_START_TIMEOUT must be a positive number: $START_TIMEOUT"
  [[ $STOP_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "WEIR_MOSQUITTO_STOP_TIMEOUT must be a positive number: $STOP_TIMEOUT"
  [[ $LOG_TYPES =~ ^[a-z]+( +[a-z]+)*$ ]] || die "WEIR_MOSQUITTO_LOG_TYPES must be log_type words: $LOG_TYPES"
  local entry entries
  if [[ -n $PASSWORDS ]]; then
    IFS=, read -ra entries <<<"$PASSWORDS"
    for entry in "${entries[@]}"; do
      [[ $entry == ?*:* && ${entry%%:*} != *[[:space:]]* ]] ||
        die "WEIR_MOSQUITTO_PASSWORDS must be user:pass,user2:pass2 (bad entry: ${entry%%:*}:...)"
    done
  fi
  if [[ $ANONYMOUS == false && -z $PASSWORDS ]]; then
    die "WEIR_MOSQUITTO_ANONYMOUS=false needs users in WEIR_MOSQUITTO_PASSWORDS"
  fi
}

# The mosquitto.conf for these settings, on stdout. It names no secret, but carries a hash of
# WEIR_MOSQUITTO_PASSWORDS so that a start with other users sees that the running broker differs.
render_config() {
  local t
  echo "# Generated by scripts/mosquitto.sh on each start; edits are lost."
  # Run as root, mosquitto would drop to the user `mosquitto`, which cannot write the run dir.
  echo "user $(id -un)"
  echo "per_listener_settings false"
  echo "listener $PORT 127.0.0.1"
  echo "allow_anonymous $ANONYMOUS"
  if [[ -n $PASSWORDS ]]; then
    echo "password_file $PASSWD_FILE"
    echo "# users: $(printf '%s' "$PASSWORDS" | sha256sum | cut -c1-16)"
  fi
  echo "persistence true"
  echo "persistence_location $DATA_DIR/"
  echo "persistence_file mosquitto.db"
  echo "autosave_interval $AUTOSAVE_INTERVAL"
  ((MAX_PACKET_SIZE == 0)) || echo "max_packet_size $MAX_PACKET_SIZE"
  echo "log_dest file $LOG_FILE"
  for t in $LOG_TYPES; do echo "log_type $t"; done
  echo "log_timestamp true"
  echo "log_timestamp_format %Y-%m-%dT%H:%M:%S"
  echo "connection_messages true"
  [[ -z ${WEIR_MOSQUITTO_EXTRA_CONF:-} ]] || printf '%s\n' "$WEIR_MOSQUITTO_EXTRA_CONF"
}

write_config() {
  mkdir -p "$RUN_DIR" "$DATA_DIR"
  rm -f "$PASSWD_FILE" "$PROBE_FILE"
  if [[ -n $PASSWORDS ]]; then
    local entry entries out opt=-c
    IFS=, read -ra entries <<<"$PASSWORDS"
    (umask 077 && : >"$PASSWD_FILE" && printf '%s\n%s\n' "${entries[0]%%:*}" "${entries[0]#*:}" >"$PROBE_FILE")
    for entry in "${entries[@]}"; do
      out=$(mosquitto_passwd $opt -b "$PASSWD_FILE" "${entry%%:*}" "${entry#*:}" 2>&1) ||
        { echo "$out" >&2; die "mosquitto_passwd failed for user ${entry%%:*}"; }
      opt=""
    done
  fi
  render_config >"$CONFIG.tmp"
  mv "$CONFIG.tmp" "$CONFIG"
}

# ---------------------------------------------------------------- process
port_open() { (: <>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# Pid of our mosquitto on $PORT (guards against pid reuse).
mosquitto_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid; pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  local cmd; cmd=$({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null) || return 1
  [[ $cmd == *mosquitto*" -c $CONFIG "* ]] || return 1
  echo "$pid"
}
# The launched process is alive (before `exec` its pid is the launching subshell's).
launched_alive() { [[ -f $PID_FILE ]] && kill -0 "$(<"$PID_FILE")" 2>/dev/null; }

# Ready: the port accepts TCP and $SYS/broker/version arrives, with the credentials the running
# broker was started with (so status needs no WEIR_MOSQUITTO_PASSWORDS).
ready() {
  port_open || return 1
  local creds=() user pass
  if [[ -f $PROBE_FILE ]]; then { IFS= read -r user; IFS= read -r pass; } <"$PROBE_FILE"; creds=(-u "$user" -P "$pass"); fi
  # shellcheck disable=SC2016 # $SYS is the topic's name, not a variable
  mosquitto_sub -h 127.0.0.1 -p "$PORT" "${creds[@]}" -t '$SYS/broker/version' -C 1 -W 5 >/dev/null 2>&1
}

launch() {
  write_config
  : >"$LOG_FILE"  # mosquitto appends its log to it; stderr (early errors) goes there too
  ( exec setsid "$BIN" -c "$CONFIG" ) </dev/null >>"$LOG_FILE" 2>&1 8>&- 9>&- &
  echo $! > "$PID_FILE"
  log "started $("$BIN" -h 2>/dev/null | sed -n '1s/ version / /p') on $ADDRESS (pid $!, log $LOG_FILE)"
}

stop_mosquitto() {
  local pid deadline=$((SECONDS + STOP_TIMEOUT))
  if pid=$(mosquitto_pid) || { launched_alive && pid=$(<"$PID_FILE"); }; then
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        log "mosquitto (pid $pid) did not stop in ${STOP_TIMEOUT}s; killing it (unsaved changes are lost)"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 1000))
      fi
      sleep 0.1
    done
    log "stopped mosquitto on port $PORT"
  fi
  rm -f "$PID_FILE"
}

show_failure() {
  log "---- tail of $LOG_FILE"
  tail -n 40 "$LOG_FILE" >&2 2>/dev/null || true
  stop_mosquitto
}

wipe_data() {
  if [[ -e $DATA_DIR ]]; then rm -rf "$DATA_DIR"; log "deleted the persistence database of port $PORT"; fi
}

# ---------------------------------------------------------------- commands
cmd_start() {
  local t0=$SECONDS
  if mosquitto_pid >/dev/null; then
    [[ $CLEAN != 1 ]] || die "mosquitto is already running on port $PORT; WEIR_MOSQUITTO_CLEAN=1 needs restart or reset"
    if [[ $(render_config) != "$(cat "$CONFIG" 2>/dev/null)" ]]; then
      die "mosquitto on port $PORT runs with a different configuration ($CONFIG); use restart"
    fi
    if ready; then log "mosquitto is already running and ready on $ADDRESS"; return 0; fi
    log "mosquitto on port $PORT is running but not ready; waiting"
  else
    [[ -x $BIN ]] || command -v "$BIN" >/dev/null ||
      die "mosquitto is not installed ($BIN): apt-get install mosquitto mosquitto-clients"
    command -v mosquitto_sub >/dev/null ||
      die "mosquitto_sub is needed to check the broker's readiness: apt-get install mosquitto-clients"
    port_open && die "port $PORT is already in use by a process this script did not start"
    [[ $CLEAN != 1 ]] || wipe_data
    launch
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until ready; do
    launched_alive || { log "mosquitto exited during startup"; show_failure; exit 1; }
    if ((SECONDS >= deadline)); then
      log "mosquitto not ready after ${START_TIMEOUT}s"; show_failure; exit 1
    fi
    sleep 0.1
  done
  mosquitto_pid >/dev/null || { log "something else answers on port $PORT"; show_failure; exit 1; }
  log "mosquitto is ready in $((SECONDS - t0))s on $ADDRESS"
}

cmd_stop() {
  if ! mosquitto_pid >/dev/null && ! launched_alive; then
    rm -f "$PID_FILE"; log "mosquitto on port $PORT is not running"; return 0
  fi
  stop_mosquitto
}

cmd_status() {
  local pid auth
  if ! pid=$(mosquitto_pid); then echo "mosquitto stopped port=$PORT"; return 1; fi
  if grep -q '^password_file ' "$CONFIG"; then auth=passwords; else auth=none; fi
  auth+=" $(grep '^allow_anonymous ' "$CONFIG" | tr ' ' =)"
  if ready; then
    echo "mosquitto running pid=$pid address=$ADDRESS auth=$auth log=$LOG_FILE"
  else
    echo "mosquitto starting (not ready) pid=$pid port=$PORT log=$LOG_FILE"; return 1
  fi
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

[[ $# -eq 1 ]] || usage
case $1 in start | stop | restart | reset | status | url) ;; *) usage ;; esac
check_settings
case $1 in  # one changing command at a time (tests may race to start it)
  start | stop | restart | reset) mkdir -p "$STATE_ROOT"; exec 9>"$STATE_ROOT/port-$PORT.lock"; flock 9 ;;
esac
case $1 in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  reset) cmd_stop; wipe_data ;;
  status) cmd_status ;;
  url) echo "$ADDRESS" ;;
esac
