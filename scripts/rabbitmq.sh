#!/usr/bin/env bash
# scripts/rabbitmq.sh - run a real RabbitMQ on this machine for Weir's tests: the broker of
# Debian's rabbitmq-server package (3.10.8 in bookworm; install it with apt-get, this script
# does not), run as the current user without systemd as its own node weir-PORT@localhost,
# with every file under the state dir (the package's /etc/rabbitmq and /var/lib/rabbitmq play
# no part) and no plugins (AMQP 0.9.1 only, no management UI). Data persists across stop and
# start: durable queues and persistent messages survive `restart`.
#
#   scripts/rabbitmq.sh start     (idempotent: if it is already running and ready, says so)
#   scripts/rabbitmq.sh stop      (SIGTERM, a clean shutdown; SIGKILL after
#                                  WEIR_RABBITMQ_STOP_TIMEOUT)
#   scripts/rabbitmq.sh restart   (stop, then start on the same data)
#   scripts/rabbitmq.sh status    (exit 0 only if it is running and ready, else 1)
#   scripts/rabbitmq.sh url       (prints amqp://USER:PASSWORD@127.0.0.1:PORT/, vhost "/")
#   scripts/rabbitmq.sh ctl ARGS  (runs rabbitmqctl ARGS against this node, e.g.
#                                  `ctl list_queues name messages durable`)
#
# Port contract: every port on 127.0.0.1 only (epmd also on [::1]), all of them below 20000
# (tests use 20000-32000); one node per AMQP port. These are all the TCP ports it listens on,
# and it has no UDP ones:
#   15673        AMQP 0.9.1 (WEIR_RABBITMQ_PORT; call it PORT)
#   PORT+1       Erlang distribution of the node (WEIR_RABBITMQ_DIST_PORT, default 15674;
#                RabbitMQ's own default, PORT+20000, is in the tests' range)
#   PORT+2..+11  Erlang distribution of `ctl` and of this script's own rabbitmqctl calls,
#                one port per concurrent call, open only while it runs
#                (WEIR_RABBITMQ_CTL_PORT_MIN, default 15675-15684; rabbitmqctl's own
#                default is 0.0.0.0:35672-35682)
#   14369        epmd, the Erlang port mapper (WEIR_RABBITMQ_EPMD_PORT; not the default 4369,
#                so it is not shared with other Erlang software). Started by the first node,
#                shared by nodes on other AMQP ports; `stop` ends it when no node is left on it
# A second node needs a PORT at least 12 away (e.g. 15693). Remembered from `start`:
# status, ctl and stop of a running node need only WEIR_RABBITMQ_PORT.
#
# Users: WEIR_RABBITMQ_USER / WEIR_RABBITMQ_PASSWORD (administrator, all permissions on vhost
# "/") is created when the node's database is created; on later starts with other values the
# user is added or its password changed. There is no guest user. Names and passwords are
# limited to A-Z a-z 0-9 . _ ~ - (they go into the URL and the config file as they are).
# State: per AMQP port a directory port-PORT holding pid, ports, credentials, rabbitmq.conf,
# enabled_plugins, .erlang.cookie (rabbitmqctl finds it there: HOME is that directory),
# rabbitmq.log (the broker's stdout), log/weir-PORT@localhost.log (its own log) and mnesia/
# (the data; delete port-PORT while stopped to begin empty).
#
# Environment:
#   WEIR_RABBITMQ_PORT           AMQP port (default 15673)
#   WEIR_RABBITMQ_DIST_PORT      the node's Erlang distribution port (default PORT+1)
#   WEIR_RABBITMQ_CTL_PORT_MIN   first of the 10 distribution ports for rabbitmqctl (default
#                                PORT+2)
#   WEIR_RABBITMQ_EPMD_PORT      epmd port (default 14369)
#   WEIR_RABBITMQ_USER           test user (default weir)
#   WEIR_RABBITMQ_PASSWORD       its password (default weir-secret)
#   WEIR_RABBITMQ_STATE          state root (default ${XDG_CACHE_HOME:-$HOME/.cache}/weir/rabbitmq)
#   WEIR_RABBITMQ_HOME           RabbitMQ's installation, with bin/rabbitmq-server and
#                                bin/rabbitmqctl (default /usr/lib/rabbitmq, Debian's; not
#                                /usr/sbin's wrappers, which switch to the rabbitmq user)
#   WEIR_RABBITMQ_ERL_ARGS       extra arguments for the node's Erlang VM, e.g. "+S 1"
#   WEIR_RABBITMQ_START_TIMEOUT  seconds to wait until ready (default 60)
#   WEIR_RABBITMQ_STOP_TIMEOUT   seconds before SIGKILL on stop (default 30)
set -euo pipefail

STATE_ROOT=${WEIR_RABBITMQ_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/rabbitmq}
RMQ_HOME=${WEIR_RABBITMQ_HOME:-/usr/lib/rabbitmq}
PORT=${WEIR_RABBITMQ_PORT:-15673}
DIST_PORT=${WEIR_RABBITMQ_DIST_PORT:-}
CTL_PORT_MIN=${WEIR_RABBITMQ_CTL_PORT_MIN:-}
EPMD_PORT=${WEIR_RABBITMQ_EPMD_PORT:-14369}
RMQ_USER=${WEIR_RABBITMQ_USER:-weir}
RMQ_PASSWORD=${WEIR_RABBITMQ_PASSWORD:-weir-secret}
START_TIMEOUT=${WEIR_RABBITMQ_START_TIMEOUT:-60}
STOP_TIMEOUT=${WEIR_RABBITMQ_STOP_TIMEOUT:-30}
SERVER=$RMQ_HOME/bin/rabbitmq-server
CTL=$RMQ_HOME/bin/rabbitmqctl
NODENAME=weir-$PORT@localhost
RUN_DIR=$STATE_ROOT/port-$PORT
PID_FILE=$RUN_DIR/pid
PORTS_FILE=$RUN_DIR/ports
CREDS_FILE=$RUN_DIR/credentials
CONFIG=$RUN_DIR/rabbitmq.conf
LOG_FILE=$RUN_DIR/rabbitmq.log
NODE_LOG=$RUN_DIR/log/$NODENAME.log
MNESIA_BASE=$RUN_DIR/mnesia
BEAM_PID_FILE=$MNESIA_BASE/$NODENAME.pid  # RabbitMQ writes the Erlang VM's pid here

log() { echo "rabbitmq.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Seconds since $1 (an $EPOCHREALTIME), to a tenth.
elapsed() {
  local now=${EPOCHREALTIME/[.,]/} then=${1/[.,]/}
  local ds=$(((now - then) / 100000))
  echo "$((ds / 10)).$((ds % 10))"
}

set_port_defaults() {
  DIST_PORT=${DIST_PORT:-$((PORT + 1))}
  CTL_PORT_MIN=${CTL_PORT_MIN:-$((PORT + 2))}
  CTL_PORT_MAX=$((CTL_PORT_MIN + 9))
}
set_port_defaults

# ---------------------------------------------------------------- installation
EPMD=""
check_install() {
  [[ -x $SERVER && -x $CTL ]] ||
    die "RabbitMQ is not installed: no $SERVER (Debian: apt-get install rabbitmq-server, then stop and disable its own service; or set WEIR_RABBITMQ_HOME)"
  command -v erl >/dev/null || die "Erlang (erl) is not on PATH; RabbitMQ needs it"
  find_epmd || die "epmd is not on PATH nor next to erl"
}
find_epmd() {
  [[ -n $EPMD ]] && return 0
  if command -v epmd >/dev/null; then EPMD=$(command -v epmd)
  elif command -v erl >/dev/null && [[ -x $(dirname "$(readlink -f "$(command -v erl)")")/epmd ]]; then
    EPMD=$(dirname "$(readlink -f "$(command -v erl)")")/epmd
  else return 1; fi
}

# ---------------------------------------------------------------- node environment
# Everything the broker scripts and rabbitmqctl read, and nothing from the caller's
# environment: RABBITMQ_* and ERL_* variables there could point at another node or config.
node_env() {
  local v
  for v in $(compgen -e); do
    case $v in RABBITMQ_* | ERL_*) unset "$v" ;; esac
  done
  export HOME=$RUN_DIR  # .erlang.cookie
  export RABBITMQ_NODENAME=$NODENAME
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$PORT RABBITMQ_DIST_PORT=$DIST_PORT
  export RABBITMQ_MNESIA_BASE=$MNESIA_BASE RABBITMQ_LOG_BASE=$RUN_DIR/log
  export RABBITMQ_CONFIG_FILE=$CONFIG RABBITMQ_ENABLED_PLUGINS_FILE=$RUN_DIR/enabled_plugins
  export RABBITMQ_ADVANCED_CONFIG_FILE=$RUN_DIR/advanced.config  # never written: none
  export RABBITMQ_CONF_ENV_FILE=$RUN_DIR/rabbitmq-env.conf       # never written: none
  export RABBITMQ_PID_FILE=$BEAM_PID_FILE
  export ERL_EPMD_PORT=$EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1
  # Both distribution listeners on loopback only (by default they listen on every address).
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} ${WEIR_RABBITMQ_ERL_ARGS:-}"
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_DIST_PORT_MIN=$CTL_PORT_MIN RABBITMQ_CTL_DIST_PORT_MAX=$CTL_PORT_MAX
}

# rabbitmqctl against this node (its output as it is; the lock fds are not passed on).
run_ctl() { ( node_env; exec "$CTL" "$@" ) 7>&- 8>&- 9>&-; }

write_config() {
  mkdir -p "$RUN_DIR" "$RUN_DIR/log" "$MNESIA_BASE"
  chmod 700 "$RUN_DIR"
  (
    umask 077
    cat >"$CONFIG.tmp" <<EOF
# Generated by scripts/rabbitmq.sh on each start; edits are lost. The listener, node name,
# distribution and paths come from environment variables set by the script.
# The first user, made only when the database is created (later starts use rabbitmqctl):
default_vhost = /
default_user = $RMQ_USER
default_pass = $RMQ_PASSWORD
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users.guest = true
log.console = false
log.file.level = info
EOF
    mv "$CONFIG.tmp" "$CONFIG"
    echo '[].' >"$RUN_DIR/enabled_plugins"
    if [[ ! -s $RUN_DIR/.erlang.cookie ]]; then
      local cookie
      cookie=$(LC_ALL=C tr -dc '[:upper:]' </dev/urandom | head -c 20) || true
      [[ ${#cookie} -eq 20 ]] || die "cannot make an Erlang cookie"
      printf '%s' "$cookie" >"$RUN_DIR/.erlang.cookie.tmp"
      chmod 400 "$RUN_DIR/.erlang.cookie.tmp"
      mv "$RUN_DIR/.erlang.cookie.tmp" "$RUN_DIR/.erlang.cookie"
    fi
  )
}

# ---------------------------------------------------------------- process
port_open() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Pid of our rabbitmq-server (the shell script; the Erlang VM is its child) for this port
# (guards against pid reuse: its environment names this node and run directory).
node_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid; pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/environ ]] || return 1
  local cmd; cmd=$({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null) || return 1
  [[ $cmd == *"$SERVER"* ]] || return 1
  { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | grep -qxF "RABBITMQ_MNESIA_BASE=$MNESIA_BASE" || return 1
  echo "$pid"
}
# The launched process is alive (before `exec` its pid is the launching subshell's).
launched_alive() { [[ -f $PID_FILE ]] && kill -0 "$(<"$PID_FILE")" 2>/dev/null; }

# The Erlang VM's pid, if it runs.
beam_pid() {
  [[ -f $BEAM_PID_FILE ]] || return 1
  local pid; pid=$(<"$BEAM_PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] && [[ $({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null) == *beam* ]] || return 1
  echo "$pid"
}

ready() { port_open "$PORT" && run_ctl -q await_startup --timeout 10 >/dev/null 2>&1; }

epmd_names() { "$EPMD" -port "$EPMD_PORT" -names 2>/dev/null; }
# Node names on our epmd are looked at and changed under this lock: `start` holds it until
# its node is registered, `stop` while it ends an epmd with no node left on it.
epmd_lock() { mkdir -p "$STATE_ROOT"; exec 7>"$STATE_ROOT/epmd-$EPMD_PORT.lock"; flock 7; }
epmd_unlock() { exec 7>&-; }

# Ends our epmd if nothing is registered on it any more (a node of another port, or a
# rabbitmqctl call, keeps it).
epmd_cleanup() {
  find_epmd || return 0
  epmd_lock
  local names
  if names=$(epmd_names) && ! grep -q '^name ' <<<"$names"; then
    "$EPMD" -port "$EPMD_PORT" -kill >/dev/null 2>&1 && log "stopped epmd on port $EPMD_PORT"
  fi
  epmd_unlock
}

# The ports of a node already running on $PORT, as it was started: used where the caller did
# not set them; a caller that set one differently is told to stop it first.
adopt_running_ports() {
  node_pid >/dev/null && [[ -f $PORTS_FILE ]] || return 0
  local name value var
  while IFS='=' read -r name value; do
    case $name in
      DIST_PORT) var=WEIR_RABBITMQ_DIST_PORT ;;
      CTL_PORT_MIN) var=WEIR_RABBITMQ_CTL_PORT_MIN ;;
      EPMD_PORT) var=WEIR_RABBITMQ_EPMD_PORT ;;
      *) continue ;;
    esac
    [[ $value =~ ^[0-9]+$ ]] || continue
    if [[ -z ${!var:-} ]]; then printf -v "$name" '%s' "$value"
    elif [[ ${!name} != "$value" ]]; then
      die "the node on AMQP port $PORT runs with $var=$value, not ${!name} (stop it first)"
    fi
  done <"$PORTS_FILE"
  set_port_defaults
}

launch() {
  write_config
  printf 'DIST_PORT=%s\nCTL_PORT_MIN=%s\nEPMD_PORT=%s\n' "$DIST_PORT" "$CTL_PORT_MIN" "$EPMD_PORT" >"$PORTS_FILE"
  # Without a NOTIFY_SOCKET or RABBITMQ_ALLOW_INPUT, rabbitmq-server stays a shell that runs
  # the VM as its child and turns SIGTERM into a clean shutdown of it.
  ( cd "$RUN_DIR" && node_env && unset NOTIFY_SOCKET && exec setsid "$SERVER" ) \
    </dev/null >"$LOG_FILE" 2>&1 7>&- 8>&- 9>&- &
  echo $! > "$PID_FILE"
  log "started RabbitMQ node $NODENAME on port $PORT (pid $!, log $NODE_LOG)"
}

stop_node() {
  local pid deadline=$((SECONDS + STOP_TIMEOUT))
  if pid=$(node_pid) || { launched_alive && pid=$(<"$PID_FILE"); }; then
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        log "RabbitMQ (pid $pid) did not stop in ${STOP_TIMEOUT}s; killing it"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true  # with the VM
        deadline=$((SECONDS + 1000))
      fi
      sleep 0.1
    done
    log "stopped RabbitMQ on port $PORT"
  fi
  rm -f "$PID_FILE"
  epmd_cleanup
}

show_failure() {
  log "---- tail of $LOG_FILE"
  tail -n 20 "$LOG_FILE" >&2 2>/dev/null || true
  log "---- tail of $NODE_LOG"
  tail -n 40 "$NODE_LOG" >&2 2>/dev/null || true
  stop_node
}

# The test user as configured now, on a node whose database is older than these settings.
ensure_user() {
  local want; want=$(printf '%s\n%s' "$RMQ_USER" "$RMQ_PASSWORD")
  [[ -f $CREDS_FILE && $(<"$CREDS_FILE") == "$want" ]] && return 0
  if ! $1; then
    local out
    if ! out=$(run_ctl -q add_user "$RMQ_USER" "$RMQ_PASSWORD" 2>&1); then
      out=$(run_ctl -q change_password "$RMQ_USER" "$RMQ_PASSWORD" 2>&1) || { echo "$out" >&2; return 1; }
    fi
    out=$(run_ctl -q set_user_tags "$RMQ_USER" administrator 2>&1) || { echo "$out" >&2; return 1; }
    out=$(run_ctl -q set_permissions -p / "$RMQ_USER" '.*' '.*' '.*' 2>&1) || { echo "$out" >&2; return 1; }
    log "user $RMQ_USER set up with rabbitmqctl"
  fi
  (umask 077; echo "$want" >"$CREDS_FILE")
}

# ---------------------------------------------------------------- commands
cmd_start() {
  local t0=$EPOCHREALTIME p fresh=false launched=false
  if node_pid >/dev/null; then
    if ready; then log "RabbitMQ is already running and ready: $(public_url)"; return 0; fi
    log "RabbitMQ on port $PORT is running but not ready; waiting"
  else
    check_install
    for p in "$PORT" "$DIST_PORT"; do
      port_open "$p" && die "port $p is already in use by a process this script did not start"
    done
    epmd_lock
    if port_open "$EPMD_PORT" && ! epmd_names >/dev/null; then
      die "port $EPMD_PORT (epmd) is in use by something that is not epmd"
    fi
    if grep -q "^name weir-$PORT at " <<<"$(epmd_names || true)"; then
      die "a node weir-$PORT is already registered on epmd port $EPMD_PORT (not started from $RUN_DIR?)"
    fi
    [[ -d $MNESIA_BASE/$NODENAME ]] || fresh=true
    launch; launched=true
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  # Until the node is on epmd: a `stop` of another port must not end epmd under it.
  if $launched; then
    until grep -q "^name weir-$PORT at port $DIST_PORT\$" <<<"$(epmd_names || true)"; do
      launched_alive || { epmd_unlock; log "RabbitMQ exited during startup"; show_failure; exit 1; }
      if ((SECONDS >= deadline)); then
        epmd_unlock; log "RabbitMQ did not register with epmd in ${START_TIMEOUT}s"; show_failure; exit 1
      fi
      sleep 0.1
    done
    epmd_unlock
  fi
  until port_open "$PORT"; do
    launched_alive || { log "RabbitMQ exited during startup"; show_failure; exit 1; }
    if ((SECONDS >= deadline)); then
      log "RabbitMQ not ready after ${START_TIMEOUT}s"; show_failure; exit 1
    fi
    sleep 0.1
  done
  local left=$((deadline - SECONDS)) out
  ((left > 0)) || left=1
  if ! out=$(run_ctl -q await_startup --timeout "$left" 2>&1); then
    echo "$out" >&2; log "RabbitMQ did not finish booting"; show_failure; exit 1
  fi
  node_pid >/dev/null || { log "something else answers on port $PORT"; show_failure; exit 1; }
  ensure_user $fresh || { log "cannot set up user $RMQ_USER"; show_failure; exit 1; }
  log "RabbitMQ $(rabbit_version) is ready in $(elapsed "$t0")s: $(public_url)"
}

rabbit_version() {
  sed -n 's/.*Starting RabbitMQ \([0-9][^ ]*\) on Erlang.*/\1/p' "$NODE_LOG" 2>/dev/null | tail -n 1
}

cmd_stop() {
  if ! node_pid >/dev/null && ! launched_alive; then
    rm -f "$PID_FILE"; log "RabbitMQ on port $PORT is not running"; epmd_cleanup; return 0
  fi
  stop_node
}

cmd_status() {
  local pid beam rss=""
  if ! pid=$(node_pid); then echo "rabbitmq stopped port=$PORT"; return 1; fi
  if beam=$(beam_pid); then
    rss=" rss=$(awk '/^VmRSS:/ {printf "%d", $2 / 1024}' "/proc/$beam/status" 2>/dev/null)MB"
  fi
  if ready; then
    echo "rabbitmq running pid=$pid${beam:+ beam=$beam}$rss node=$NODENAME amqp=127.0.0.1:$PORT dist=$DIST_PORT epmd=$EPMD_PORT log=$NODE_LOG"
  else
    echo "rabbitmq starting (not ready) pid=$pid port=$PORT log=$NODE_LOG"; return 1
  fi
}

cmd_ctl() {
  node_pid >/dev/null || die "RabbitMQ on port $PORT is not running (start it first)"
  [[ -f $RUN_DIR/.erlang.cookie ]] || die "no Erlang cookie in $RUN_DIR"
  run_ctl "$@"
}

public_url() { echo "amqp://127.0.0.1:$PORT/ (user $RMQ_USER)"; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

[[ $# -ge 1 ]] || usage
[[ $1 == ctl || $# -eq 1 ]] || usage
case $1 in start | stop | restart | status | url | ctl) ;; *) usage ;; esac
for p in "$PORT" "$EPMD_PORT" "$DIST_PORT" "$CTL_PORT_MIN" "$CTL_PORT_MAX"; do
  if ! [[ $p =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then die "RabbitMQ ports must be port numbers: $p"; fi
done
[[ $RMQ_USER =~ ^[A-Za-z0-9._~-]+$ ]] || die "WEIR_RABBITMQ_USER may hold only A-Z a-z 0-9 . _ ~ -"
[[ $RMQ_PASSWORD =~ ^[A-Za-z0-9._~-]+$ ]] || die "WEIR_RABBITMQ_PASSWORD may hold only A-Z a-z 0-9 . _ ~ -"
for n in START_TIMEOUT STOP_TIMEOUT; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "WEIR_RABBITMQ_$n must be a positive number of seconds: ${!n}"
done
case $1 in  # one changing command at a time (tests may race to start it)
  start | stop | restart) mkdir -p "$STATE_ROOT"; exec 9>"$STATE_ROOT/port-$PORT.lock"; flock 9 ;;
esac
adopt_running_ports
find_epmd || true
case $1 in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  url) echo "amqp://$RMQ_USER:$RMQ_PASSWORD@127.0.0.1:$PORT/" ;;
  ctl) shift; cmd_ctl "$@" ;;
esac
