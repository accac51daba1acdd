#!/usr/bin/env bash
# bench/brokers.sh - what do the MQTT and AMQP 0.9.1 sidecars cost? Runs the same workloads
# against Mosquitto and RabbitMQ directly, through a zero-work TCP relay, through
# `weir proxy --protocol mqtt|amqp` and (unless --no-policy) through a second sidecar that
# enforces an allow-everything policy, rotating the order of the paths from round to round
# (direct, relay, sidecar, policy; then relay, sidecar, policy, direct; ...), then prints
# medians, the sidecar's ratios to direct and to the relay, and its memory.
#
#   bench/brokers.sh [--quick] [--rounds N] [--count N] [--size BYTES] [--window N]
#                    [--prefetch N] [--autoack] [--latency-rate R] [--latency-seconds S]
#                    [--latency-qos 0|1] [--only mqtt|amqp] [--no-policy] [--no-build]
#
#   default: 5 rounds of 200,000 messages of 128 bytes per throughput run, latency 10 s
#     (after 2 s of warm-up) at 2,000 messages/s; about 20-25 minutes on 2 CPUs
#   --quick: 1 round of 20,000 messages, latency 2 s (after 1 s): a smoke test, about a minute
#
# WHAT. Per path and round (the load generator is bench/brokers/, Go: paho.mqtt.golang and
# amqp091-go; publisher and subscriber/consumer in one process, both through the same path):
#   MQTT (3.1.1, clean sessions, a fresh topic per run)
#     mqtt_q0, mqtt_q1  messages/s at QoS 0 and at QoS 1 (publisher and subscription at that
#                       QoS), counted at the subscriber: COUNT messages sent as fast as the
#                       publisher may, never more than WINDOW (default 1,000) ahead of what
#                       the subscriber has received, so no broker queue overflows.
#     mqtt_lat          end-to-end latency at a FIXED rate (--latency-qos, default 1).
#   AMQP (a classic non-durable queue, transient messages, default exchange)
#     amqp_pub          publish with confirms: messages confirmed/s, at most WINDOW unconfirmed.
#     amqp_cons         consume: the COUNT messages amqp_pub left in the queue, drained with
#                       basic.qos PREFETCH (default 1,000) and a basic.ack per message
#                       (--autoack: no-ack consumer instead).
#     amqp_lat          end-to-end latency at a FIXED rate: a confirm-mode publisher (confirms
#                       drained on the side) and a manual-ack consumer on two connections.
#   Latency runs are open loop: the publisher paces itself against its schedule and never waits
#   for the subscriber, so a slow path shows up as latency rather than as a lower rate; each
#   message carries its send time (monotonic clock, same process) and the receiver subtracts it.
#   Around every throughput run the hop's CPU time (utime+stime of the relay or the sidecar,
#   /proc/PID/stat) is read: "hop CPU us/msg".
#   Memory: each sidecar's VmRSS right after start, with IDLE_CONNS (100) idle client
#   connections open (MQTT: connected; AMQP: logged in with one channel each), and its peak
#   (VmHWM) at the end of the run.
#   Before round 1 a short unmeasured warm-up runs on every path.
#
# PATHS. direct: the broker itself. relay: HAProxy in TCP mode (Debian's haproxy, installed
# with apt-get when missing; no parsing). sidecar: `weir proxy --protocol P --listen ... --upstream ...` (no auth, no
# policy, one worker thread, the default). policy: the same with `authorization: {policy:
# FILE}` allowing everything (topic:#; exchange:* and queue:*), so every PUBLISH,
# SUBSCRIBE, basic.publish and basic.consume is judged. Sidecars log at warn.
#
# HOW. Builds the release binary into $CARGO_TARGET_DIR (default ~/.cache/weir/target-bench;
# skip with --no-build) and the Go tool into the run directory. Starts its own Mosquitto on
# port BASE (scripts/mosquitto.sh with WEIR_MOSQUITTO_PORT=BASE; logging only errors and
# warnings, as per-packet logging would dominate, and max_queued_messages raised) unless one
# already runs there, and RabbitMQ with scripts/rabbitmq.sh (127.0.0.1:15673, user weir) unless
# it already runs; stops on exit only what it started. Ports (BASE = 17880 by default, outside
# the tests' 20000-32000): BASE Mosquitto, BASE+1 MQTT sidecar, BASE+2 MQTT sidecar with
# policy, BASE+3 relay to Mosquitto, BASE+4 AMQP sidecar, BASE+5 AMQP sidecar with policy,
# BASE+6 relay to RabbitMQ. Results: stdout and bench/results/brokers-latest.txt; every run's
# raw output in bench/results/brokers-<run id>/.
#
# Environment: WEIR_BENCH_BIN (a prebuilt weir binary; implies --no-build),
# WEIR_BENCH_BROKERS_PORT (BASE), GO (the go command), WEIR_RABBITMQ_PORT and the other
# variables of scripts/rabbitmq.sh.
#
# Everything shares the machine: brokers, hops and the load generator compete for the same
# cores, so these figures are relative (sidecar vs direct vs relay under the same
# conditions), not what any of them would do with cores of its own. Run it on a quiet machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target-bench}
WEIR=${WEIR_BENCH_BIN:-$TARGET/release/weir}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
BASE=${WEIR_BENCH_BROKERS_PORT:-17880}

ROUNDS=5 COUNT=200000 SIZE=128 WINDOW=1000 PREFETCH=1000 AUTOACK=0
LAT_RATE=2000 LAT_SECONDS=10 LAT_WARMUP=2 LAT_QOS=1 IDLE_CONNS=100 IDLE_HOLD=2
QUICK=0 BUILD=1 POLICY=1 PROTOCOLS="mqtt amqp"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
opt_rounds="" opt_count="" opt_lat_seconds=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1; shift ;;
    --rounds) opt_rounds=${2:?}; shift 2 ;;
    --count) opt_count=${2:?}; shift 2 ;;
    --size) SIZE=${2:?}; shift 2 ;;
    --window) WINDOW=${2:?}; shift 2 ;;
    --prefetch) PREFETCH=${2:?}; shift 2 ;;
    --autoack) AUTOACK=1; shift ;;
    --latency-rate) LAT_RATE=${2:?}; shift 2 ;;
    --latency-seconds) opt_lat_seconds=${2:?}; shift 2 ;;
    --latency-qos) LAT_QOS=${2:?}; shift 2 ;;
    --only) PROTOCOLS=${2:?}; shift 2 ;;
    --no-policy) POLICY=0; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage ;;
    *) echo "brokers.sh: unknown option $1" >&2; usage ;;
  esac
done
if ((QUICK)); then ROUNDS=1 COUNT=20000 LAT_SECONDS=2 LAT_WARMUP=1 IDLE_HOLD=1; fi
ROUNDS=${opt_rounds:-$ROUNDS} COUNT=${opt_count:-$COUNT} LAT_SECONDS=${opt_lat_seconds:-$LAT_SECONDS}
for v in ROUNDS COUNT SIZE WINDOW PREFETCH LAT_RATE LAT_SECONDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "brokers.sh: $v must be a positive integer" >&2; exit 2; }
done
[[ $LAT_QOS == 0 || $LAT_QOS == 1 ]] || { echo "brokers.sh: --latency-qos takes 0 or 1" >&2; exit 2; }
[[ $PROTOCOLS == mqtt || $PROTOCOLS == amqp || $PROTOCOLS == "mqtt amqp" ]] ||
  { echo "brokers.sh: --only takes mqtt or amqp" >&2; exit 2; }
MODES=(direct relay sidecar)
((POLICY)) && MODES+=(policy)
has() { [[ " $PROTOCOLS " == *" $1 "* ]]; }

MOSQ_PORT=$BASE
declare -A PORT=(
  [mqtt-sidecar]=$((BASE + 1)) [mqtt-policy]=$((BASE + 2)) [mqtt-relay]=$((BASE + 3))
  [amqp-sidecar]=$((BASE + 4)) [amqp-policy]=$((BASE + 5)) [amqp-relay]=$((BASE + 6))
)

RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"
# One benchmark at a time on this machine (the lock bench/run.sh and bench/hop.sh take too).
exec 8> "$RESULTS/.lock"
flock -n 8 || { echo "brokers.sh: another benchmark is running (lock $RESULTS/.lock)" >&2; exit 1; }
RUN_ID=$(date +%Y%m%d-%H%M%S)
RUN_DIR=$RESULTS/brokers-$RUN_ID
mkdir -p "$RUN_DIR"
DATA=$RUN_DIR/data.tsv  # round mode key value
: > "$DATA"
T_START=$SECONDS

log() { printf '%s brokers.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$DATA"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$2"; }  # field KEY LINE
port_open() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }  # status_kb PID VmRSS
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {  # utime+stime of PID in clock ticks (0 for no PID)
  [[ -n $1 ]] || { echo 0; return; }
  local stat f
  stat=$(< "/proc/$1/stat")
  read -r -a f <<< "${stat##*) }"  # after "(comm) " comes field 3; utime is 14, stime 15
  echo $((f[11] + f[12]))
}

# ------------------------------------------------------------------ cleanup
declare -A PID=()  # "PROTOCOL - MODE" -> pid of that path's hop (relay: both protocols' key)
STARTED_MOSQ=0 STARTED_RABBIT=0
cleanup() {
  local rc=$? key pid
  trap - EXIT INT TERM
  for key in "${!PID[@]}"; do
    pid=${PID[$key]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for key in "${!PID[@]}"; do
    pid=${PID[$key]}
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if ((STARTED_MOSQ)); then WEIR_MOSQUITTO_PORT=$MOSQ_PORT "$ROOT/scripts/mosquitto.sh" stop >&2 || true; fi
  if ((STARTED_RABBIT)); then "$ROOT/scripts/rabbitmq.sh" stop >&2 || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build
[[ -n ${WEIR_BENCH_BIN:-} ]] && BUILD=0
if ((BUILD)); then
  log "building the release binary (cargo build --release -p weir, target $TARGET)"
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET nice -n 10 cargo build --release -q -p weir) >&2
fi
[[ -x $WEIR ]] || die "$WEIR is missing (run without --no-build)"
log "building the load generator (bench/brokers)"
(cd "$ROOT/bench/brokers" && "$GO" build -o "$RUN_DIR/brokers" .) >&2 || die "cannot build bench/brokers"
TOOL=$RUN_DIR/brokers
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]] && COMMIT+=" + uncommitted changes in crates/"

# ------------------------------------------------------------------ brokers
if has mqtt; then
  export WEIR_MOSQUITTO_PORT=$MOSQ_PORT WEIR_MOSQUITTO_LOG_TYPES="error warning" \
    WEIR_MOSQUITTO_AUTOSAVE_INTERVAL=0 WEIR_MOSQUITTO_EXTRA_CONF="max_queued_messages 100000"
  if "$ROOT/scripts/mosquitto.sh" status >/dev/null 2>&1; then
    log "Mosquitto already runs on port $MOSQ_PORT; using it (and leaving it running)"
  else
    STARTED_MOSQ=1
    "$ROOT/scripts/mosquitto.sh" start >&2
  fi
  MOSQ_VERSION=$(mosquitto -h 2>/dev/null | sed -n '1s/.* version //p' || true)
fi
if has amqp; then
  if "$ROOT/scripts/rabbitmq.sh" status >/dev/null 2>&1; then
    log "RabbitMQ already runs; using it (and leaving it running)"
  else
    STARTED_RABBIT=1
    "$ROOT/scripts/rabbitmq.sh" start >&2 8>&-
  fi
  AMQP_URL=$("$ROOT/scripts/rabbitmq.sh" url)  # amqp://USER:PASSWORD@127.0.0.1:PORT/
  RABBIT_ADDR=${AMQP_URL#*@}
  RABBIT_ADDR=${RABBIT_ADDR%/}
fi

# ------------------------------------------------------------------ hops
wait_port() {  # wait_port PORT PID NAME
  local i
  for i in $(seq 1 300); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited during startup (see $RUN_DIR)"
    sleep 0.1
  done
  die "$3 does not listen on port $1 after 30 s"
}
# start_sidecar PROTOCOL MODE UPSTREAM: `weir proxy` for that path, its pid in PID.
start_sidecar() {
  local p=$1 mode=$2 upstream=$3 listen=127.0.0.1:${PORT[$1-$2]} args=()
  if [[ $mode == policy ]]; then
    if [[ $p == mqtt ]]; then
      echo 'rules: [{effect: allow, principals: ["*"], resources: ["topic:#"], operations: [all]}]'
    else
      echo 'rules: [{effect: allow, principals: ["*"], resources: ["exchange:*", "queue:*"], operations: [all]}]'
    fi > "$RUN_DIR/$p-policy.yaml"
    printf '%s\n' "listen: $listen" "upstream: $upstream" \
      "authorization: {policy: $RUN_DIR/$p-policy.yaml}" > "$RUN_DIR/weir-$p-policy.yaml"
    args=(--config "$RUN_DIR/weir-$p-policy.yaml")
  else
    args=(--listen "$listen" --upstream "$upstream")
  fi
  "$WEIR" proxy --protocol "$p" "${args[@]}" --log-level warn > "$RUN_DIR/weir-$p-$mode.log" 2>&1 8>&- &
  PID[$p-$mode]=$!
  wait_port "${PORT[$p-$mode]}" "$!" "the $p sidecar ($mode)"
}
relay_routes=()
if has mqtt; then
  start_sidecar mqtt sidecar "127.0.0.1:$MOSQ_PORT"
  ((POLICY)) && start_sidecar mqtt policy "127.0.0.1:$MOSQ_PORT"
  relay_routes+=("127.0.0.1:${PORT[mqtt-relay]}=127.0.0.1:$MOSQ_PORT")
fi
if has amqp; then
  start_sidecar amqp sidecar "$RABBIT_ADDR"
  ((POLICY)) && start_sidecar amqp policy "$RABBIT_ADDR"
  relay_routes+=("127.0.0.1:${PORT[amqp-relay]}=$RABBIT_ADDR")
fi
# The relay is HAProxy in TCP mode, as in bench/run.sh: the proxy anyone can install, and a
# floor a user-space relay cannot beat by much (bench/relay.py pays a Python call per packet).
if ! command -v haproxy >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing haproxy (Debian) for the relay runs"
    { apt-get install -y -qq haproxy || { apt-get update -qq && apt-get install -y -qq haproxy; }; } >&2 ||
      die "could not install haproxy"
  else
    die "the relay runs need haproxy (apt-get install haproxy)"
  fi
fi
{
  echo "# Written by bench/brokers.sh: a zero-work TCP relay, one frontend per broker."
  printf 'global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n'
  for route in "${relay_routes[@]}"; do
    echo "listen relay-${route%%=*}"
    echo "  bind ${route%%=*}"
    echo "  server broker ${route#*=}"
  done
} > "$RUN_DIR/haproxy.cfg"
haproxy -db -f "$RUN_DIR/haproxy.cfg" > /dev/null 2>> "$RUN_DIR/relay.log" 8>&- &
RELAY_PID=$!
for p in $PROTOCOLS; do
  PID[$p-relay]=$RELAY_PID
  wait_port "${PORT[$p-relay]}" "$RELAY_PID" "the relay"
done
# Where each path's clients connect.
addr() {  # addr PROTOCOL MODE -> host:port
  if [[ $2 == direct ]]; then
    if [[ $1 == mqtt ]]; then echo "127.0.0.1:$MOSQ_PORT"; else echo "$RABBIT_ADDR"; fi
  else
    echo "127.0.0.1:${PORT[$1-$2]}"
  fi
}
url() { echo "${AMQP_URL%@*}@$(addr amqp "$1")/"; }  # url MODE

# ------------------------------------------------------------------ idle memory
idle_memory() {  # idle_memory PROTOCOL MODE: the sidecar's VmRSS at start and with IDLE_CONNS open
  local p=$1 mode=$2 pid=${PID[$1-$2]} out=$RUN_DIR/idle-$1-$2.log target tool i
  record 0 "$mode" "${p}_rss_start_kb" "$(status_kb "$pid" VmRSS)"
  if [[ $p == mqtt ]]; then target=(-addr "$(addr mqtt "$mode")"); else target=(-url "$(url "$mode")"); fi
  "$TOOL" idle -protocol "$p" "${target[@]}" -conns "$IDLE_CONNS" -hold "$IDLE_HOLD" > "$out" 2>&1 8>&- &
  tool=$!
  for i in $(seq 1 600); do
    grep -q '^idle ' "$out" && break
    kill -0 "$tool" 2>/dev/null || break
    sleep 0.05
  done
  if grep -q '^idle ' "$out"; then
    sleep 0.2  # let the sidecar finish the last handshakes
    record 0 "$mode" "${p}_rss_idle_kb" "$(status_kb "$pid" VmRSS)"
  else
    log "warning: could not open $IDLE_CONNS idle connections to the $p $mode (see $out)"
  fi
  wait "$tool" || log "warning: the idle run against the $p $mode failed (see $out)"
}
for p in $PROTOCOLS; do
  for mode in sidecar policy; do
    if [[ -n ${PID[$p-$mode]:-} ]]; then idle_memory "$p" "$mode"; fi
  done
done

# ------------------------------------------------------------------ runs
# run ROUND MODE KEY COUNT TOOL-ARGS...: one tool run, its line in the run's log; records its
# rate or latency percentiles and, for throughput runs, the hop's CPU per message.
FAILS=0
run() {
  local round=$1 mode=$2 key=$3 count=$4 pid line t0 t1 log=$RUN_DIR/r$1-$2-$3.log
  shift 4
  pid=${PID[${key%%_*}-$mode]:-}
  t0=$(cpu_ticks "$pid")
  if ! "$TOOL" "$@" > "$log" 2>&1 8>&-; then
    FAILS=$((FAILS + 1))
    log "warning: round $round $mode $key failed: $(tail -n 1 "$log")"
  fi
  t1=$(cpu_ticks "$pid")
  line=$(grep -E '^(mqtt|amqp)-' "$log" | tail -n 1 || true)
  [[ -n $line ]] || return 0
  ((round > 0)) || return 0  # the warm-up
  record "$round" "$mode" "${key}_lost" "$(field lost "$line")"
  if [[ $key == *_lat ]]; then
    for f in p50_ms p99_ms p999_ms; do record "$round" "$mode" "${key}_$f" "$(field $f "$line")"; done
  else
    record "$round" "$mode" "$key" "$(field rate "$line")"
    [[ -n $pid ]] && record "$round" "$mode" "${key}_cpu_us" \
      "$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$count" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')"
  fi
  return 0
}
ack_args=(-prefetch "$PREFETCH")
((AUTOACK)) && ack_args+=(-autoack)
# workloads ROUND MODE COUNT: every workload of every protocol on one path.
workloads() {
  local round=$1 mode=$2 n=$3 a q lat=(-rate "$LAT_RATE" -seconds "$LAT_SECONDS" -warmup "$LAT_WARMUP" -size "$SIZE")
  if has mqtt; then
    a=$(addr mqtt "$mode")
    run "$round" "$mode" mqtt_q0 "$n" mqtt-tp -addr "$a" -qos 0 -count "$n" -size "$SIZE" -window "$WINDOW"
    run "$round" "$mode" mqtt_q1 "$n" mqtt-tp -addr "$a" -qos 1 -count "$n" -size "$SIZE" -window "$WINDOW"
    if ((round > 0)); then run "$round" "$mode" mqtt_lat 0 mqtt-lat -addr "$a" -qos "$LAT_QOS" "${lat[@]}"; fi
  fi
  if has amqp; then
    a=$(url "$mode") q=weir-bench-$RUN_ID-r$round-$mode
    run "$round" "$mode" amqp_pub "$n" amqp-pub -url "$a" -queue "$q" -count "$n" -size "$SIZE" -window "$WINDOW"
    run "$round" "$mode" amqp_cons "$n" amqp-cons -url "$a" -queue "$q" -count "$n" "${ack_args[@]}"
    if ((round > 0)); then run "$round" "$mode" amqp_lat 0 amqp-lat -url "$a" -prefetch "$PREFETCH" "${lat[@]}"; fi
  fi
  return 0
}

warm=$((COUNT / 10 > 5000 ? COUNT / 10 : 5000))
log "warm-up: $warm messages per throughput workload on every path (not measured)"
for mode in "${MODES[@]}"; do workloads 0 "$mode" "$warm"; done
LOADS=()
for ((r = 1; r <= ROUNDS; r++)); do
  order=()
  for ((i = 0; i < ${#MODES[@]}; i++)); do order+=("${MODES[(i + r - 1) % ${#MODES[@]}]}"); done
  LOADS+=("round $r: $(cut -d' ' -f1-3 /proc/loadavg)")
  log "round $r/$ROUNDS: ${order[*]}"
  for mode in "${order[@]}"; do workloads "$r" "$mode" "$COUNT"; done
done
for p in $PROTOCOLS; do
  for mode in sidecar policy; do
    [[ -n ${PID[$p-$mode]:-} ]] || continue
    record 0 "$mode" "${p}_rss_peak_kb" "$(status_kb "${PID[$p-$mode]}" VmHWM)"
    record 0 "$mode" "${p}_rss_end_kb" "$(status_kb "${PID[$p-$mode]}" VmRSS)"
  done
done

# ------------------------------------------------------------------ report
report() {
  local ack=manual
  ((AUTOACK)) && ack=auto
  echo "bench/brokers.sh $RUN_ID  commit $COMMIT  $(nproc) CPUs  $((SECONDS - T_START)) s"
  echo "rounds $ROUNDS  throughput runs: $COUNT messages of $SIZE B, window $WINDOW; AMQP consume: $ack ack, prefetch $PREFETCH"
  echo "latency: $LAT_RATE msg/s for $LAT_SECONDS s after $LAT_WARMUP s warm-up (MQTT at QoS $LAT_QOS)"
  has mqtt && echo "Mosquitto ${MOSQ_VERSION:-?} at 127.0.0.1:$MOSQ_PORT"
  has amqp && echo "RabbitMQ at $RABBIT_ADDR ($("$ROOT/scripts/rabbitmq.sh" ctl version 2>/dev/null | tail -n 1 || echo "?"))"
  echo "medians over $ROUNDS round(s); s/d = sidecar/direct, s/r = sidecar/relay, p/s = policy/sidecar"
  echo "(for latency: the added milliseconds instead of ratios)"
  awk -F'\t' -v rounds="$ROUNDS" -v policy="$POLICY" -v protocols="$PROTOCOLS" -v failed="$FAILS" '
    { v[$1, $2, $3] = $4; if ($1 > 0) { n[$2, $3]++; s[$2, $3, n[$2, $3]] = $4 } }
    function median(mode, key,   k, i, j, t, a) {
      k = n[mode, key]; if (k == 0) return ""
      for (i = 1; i <= k; i++) a[i] = s[mode, key, i] + 0
      for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    function cell(x, fmt) { return x == "" ? "-" : sprintf(fmt, x) }
    function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.3f", a / b) }
    function diff(a, b) { return (a == "" || b == "") ? "-" : sprintf("%+.3f", a - b) }
    function head(title) {
      printf "\n%-30s %10s %10s %10s %10s %7s %7s %7s\n", title, "direct", "relay", "sidecar", policy ? "policy" : "", "s/d", "s/r", policy ? "p/s" : ""
    }
    function rate(label, key,   d, r, s_, p) {
      d = median("direct", key); r = median("relay", key); s_ = median("sidecar", key); p = median("policy", key)
      printf "%-30s %10s %10s %10s %10s %7s %7s %7s\n", label, cell(d, "%.0f"), cell(r, "%.0f"), cell(s_, "%.0f"),
        policy ? cell(p, "%.0f") : "", ratio(s_, d), ratio(s_, r), policy ? ratio(p, s_) : ""
    }
    function lat(label, key,   d, r, s_, p) {
      d = median("direct", key); r = median("relay", key); s_ = median("sidecar", key); p = median("policy", key)
      printf "%-30s %10s %10s %10s %10s %7s %7s %7s\n", label, cell(d, "%.3f"), cell(r, "%.3f"), cell(s_, "%.3f"),
        policy ? cell(p, "%.3f") : "", diff(s_, d), diff(s_, r), policy ? diff(p, s_) : ""
    }
    function cpu(label, key) {
      printf "%-30s %10s %10s %10s %10s\n", label, "", cell(median("relay", key "_cpu_us"), "%.2f"),
        cell(median("sidecar", key "_cpu_us"), "%.2f"), policy ? cell(median("policy", key "_cpu_us"), "%.2f") : ""
    }
    function lost(key,   i, m, t, mode) {
      t = 0
      for (i = 1; i <= rounds; i++) for (m = 1; m <= 4; m++) {
        mode = m == 1 ? "direct" : m == 2 ? "relay" : m == 3 ? "sidecar" : "policy"
        t += v[i, mode, key "_lost"]
      }
      return t
    }
    function rounds_row(key, fmt,   i, m, mode, line) {
      printf "  %-16s", key
      for (i = 1; i <= rounds; i++) {
        line = ""
        for (m = 1; m <= (policy ? 4 : 3); m++) {
          mode = m == 1 ? "direct" : m == 2 ? "relay" : m == 3 ? "sidecar" : "policy"
          line = line (m > 1 ? " / " : "") ((i, mode, key) in v ? sprintf(fmt, v[i, mode, key]) : "-")
        }
        printf "  %s", line
      }
      printf "\n"
    }
    function mb(kb) { return kb == "" ? "-" : sprintf("%.1f", kb * 1024 / 1e6) }
    END {
      if (protocols ~ /mqtt/) {
        head("MQTT messages/s")
        rate("  QoS 0", "mqtt_q0"); rate("  QoS 1", "mqtt_q1")
        head("MQTT end-to-end latency (ms)")
        lat("  p50", "mqtt_lat_p50_ms"); lat("  p99", "mqtt_lat_p99_ms"); lat("  p99.9", "mqtt_lat_p999_ms")
        printf "%-30s\n", "MQTT hop CPU us/msg"
        cpu("  QoS 0", "mqtt_q0"); cpu("  QoS 1", "mqtt_q1")
      }
      if (protocols ~ /amqp/) {
        head("AMQP messages/s")
        rate("  publish, confirmed", "amqp_pub"); rate("  consume", "amqp_cons")
        head("AMQP end-to-end latency (ms)")
        lat("  p50", "amqp_lat_p50_ms"); lat("  p99", "amqp_lat_p99_ms"); lat("  p99.9", "amqp_lat_p999_ms")
        printf "%-30s\n", "AMQP hop CPU us/msg"
        cpu("  publish", "amqp_pub"); cpu("  consume", "amqp_cons")
      }
      printf "\n%-30s %10s %10s %10s %10s\n", "sidecar memory, VmRSS (MB)", "started", "100 idle", "peak", "at end"
      split(protocols, ps, " ")
      for (i = 1; i in ps; i++) for (m = 1; m <= (policy ? 2 : 1); m++) {
        mode = m == 1 ? "sidecar" : "policy"; p = ps[i]
        printf "  %-28s %10s %10s %10s %10s\n", p (m == 2 ? " with policy" : ""), mb(v[0, mode, p "_rss_start_kb"]),
          mb(v[0, mode, p "_rss_idle_kb"]), mb(v[0, mode, p "_rss_peak_kb"]), mb(v[0, mode, p "_rss_end_kb"])
      }
      total = 0
      split("mqtt_q0 mqtt_q1 mqtt_lat amqp_pub amqp_cons amqp_lat", ks, " ")
      for (i = 1; i in ks; i++) total += lost(ks[i])
      printf "\nper round (direct / relay / sidecar%s):\n", policy ? " / policy" : ""
      if (protocols ~ /mqtt/) { rounds_row("mqtt_q0", "%.0f"); rounds_row("mqtt_q1", "%.0f"); rounds_row("mqtt_lat_p99_ms", "%.2f") }
      if (protocols ~ /amqp/) { rounds_row("amqp_pub", "%.0f"); rounds_row("amqp_cons", "%.0f"); rounds_row("amqp_lat_p99_ms", "%.2f") }
      if (total > 0) printf "WARNING: %d messages lost in all (see the *_lost keys in data.tsv)\n", total
      if (failed > 0) printf "WARNING: %d tool run(s) failed (see the logs)\n", failed
    }' "$DATA"
  echo
  echo "load average at the start of each round:"
  printf '  %s\n' "${LOADS[@]}"
  echo "raw output: bench/results/brokers-$RUN_ID/"
}
report | tee "$RUN_DIR/results.txt" > "$RESULTS/brokers-latest.txt"
cat "$RESULTS/brokers-latest.txt"
