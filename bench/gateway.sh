#!/usr/bin/env bash
# bench/gateway.sh - what does the MQTT gateway (`weir gateway mqtt`) cost, and what does it
# give? The same MQTT workloads against Mosquitto (an MQTT broker: the reference point an MQTT
# user knows) and against the gateway, where every message goes through Kafka (written with
# acks=all, read back by the gateway's live tail), rotating the order from round to round;
# prints medians, the gateway's ratios to Mosquitto, and its CPU per message.
#
#   bench/gateway.sh [--quick] [--rounds N] [--count N] [--size BYTES] [--subs N]
#                    [--fanout-rate R] [--latency-rate R] [--no-build]
#
#   default: 3 rounds; 50,000 messages of 128 bytes per throughput run; latency 10 s (after
#     2 s) at 1,000 messages/s; fan-out to 1,000 subscribers at 20 messages/s for 10 s;
#     about 10 minutes on 2 CPUs
#   --quick: 1 round, 5,000 messages, 3 s latency and fan-out runs: a smoke test
#
# WHAT (the load generator is bench/brokers/, Go, paho.mqtt.golang, MQTT 3.1.1):
#   pub_q1      a publisher alone at QoS 1, at most 1,000 unacknowledged: acknowledged/s. At the
#               gateway a PUBACK waits for Kafka's acks=all.
#   tp_q0/q1    publisher and subscriber on one topic (the subscriber's receipts count), at
#               most 1,000 ahead: messages/s end to end (through Kafka and back, at the gateway).
#   lat_q0/q1   end-to-end latency at a fixed rate, QoS 0 and QoS 1, open loop: p50/p99 ms
#               (and, at QoS 0, messages lost).
#   fanout      SUBS subscribers (a connection each) of one topic, one publisher at a fixed rate,
#               QoS 0: p50/p99 ms of every delivery, and deliveries/s.
#   hop CPU     the gateway's (or Mosquitto's) utime+stime per message of the throughput runs.
#
# HOW. Builds the release binary into $CARGO_TARGET_DIR (default ~/.cache/weir/target-bench;
# skip with --no-build) and the Go tool. Uses the Kafka cluster scripts/kafka.sh runs, or
# starts one broker (and stops it on exit). Starts its own Mosquitto on port BASE (17890) and
# the gateway on BASE+1 (admin BASE+2) with the mapping `weir-bench/+` → Kafka topic
# `weir-bench.gateway` (3 partitions, key: the topic's last level), no credentials, no
# policy, logging at warn. Results: stdout and bench/results/gateway-latest.txt.
#
# Everything shares the machine: Kafka, Mosquitto, the gateway and the load generator compete
# for the same cores, so the figures are relative, not what each would do on its own cores.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target-bench}
WEIR=${WEIR_BENCH_BIN:-$TARGET/release/weir}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
BASE=${WEIR_BENCH_GATEWAY_PORT:-17890}
ROUNDS=3 COUNT=50000 SIZE=128 SUBS=1000 FAN_RATE=20 LAT_RATE=1000 SECONDS_=10 WARMUP=2 BUILD=1

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) ROUNDS=1 COUNT=5000 SECONDS_=3 WARMUP=1; shift ;;
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    --count) COUNT=${2:?}; shift 2 ;;
    --size) SIZE=${2:?}; shift 2 ;;
    --subs) SUBS=${2:?}; shift 2 ;;
    --fanout-rate) FAN_RATE=${2:?}; shift 2 ;;
    --latency-rate) LAT_RATE=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage ;;
    *) echo "gateway.sh: unknown option $1" >&2; usage ;;
  esac
done

RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"
exec 8> "$RESULTS/.lock"
flock -n 8 || { echo "gateway.sh: another benchmark is running (lock $RESULTS/.lock)" >&2; exit 1; }
RUN_DIR=$RESULTS/gateway-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN_DIR"
DATA=$RUN_DIR/data.tsv
: > "$DATA"
log() { printf '%s gateway.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$2"; }
port_open() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
cpu_ticks() {
  local stat f
  stat=$(< "/proc/$1/stat")
  read -r -a f <<< "${stat##*) }"
  echo $((f[11] + f[12]))
}
CLK_TCK=$(getconf CLK_TCK)

GW_PID="" STARTED_KAFKA=0 STARTED_MOSQ=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $GW_PID ]] && kill -TERM "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null || true
  ((STARTED_MOSQ)) && WEIR_MOSQUITTO_PORT=$BASE "$ROOT/scripts/mosquitto.sh" stop >&2 || true
  ((STARTED_KAFKA)) && "$ROOT/scripts/kafka.sh" stop >&2 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -n ${WEIR_BENCH_BIN:-} ]] && BUILD=0
if ((BUILD)); then
  log "building the release binary (target $TARGET)"
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET nice -n 10 cargo build --release -q -p weir) >&2
fi
[[ -x $WEIR ]] || die "$WEIR is missing (run without --no-build)"
(cd "$ROOT/bench/brokers" && "$GO" build -o "$RUN_DIR/brokers" .) >&2 || die "cannot build bench/brokers"
TOOL=$RUN_DIR/brokers
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)

if ! "$ROOT/scripts/kafka.sh" status >/dev/null 2>&1; then
  STARTED_KAFKA=1
  "$ROOT/scripts/kafka.sh" start --brokers 1 >&2
fi
BROKERS=$("$ROOT/scripts/kafka.sh" status 2>/dev/null | sed -n 's/.*brokers=\([0-9]*\).*/\1/p' | tail -1)
"$ROOT/scripts/kafka.sh" run org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 \
  --create --if-not-exists --topic weir-bench.gateway --partitions 3 >/dev/null
# acks=all waits for every in-sync replica: the replication factor is part of the result.
RF=$("$ROOT/scripts/kafka.sh" run org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --describe \
  --topic weir-bench.gateway 2>/dev/null | sed -n 's/.*ReplicationFactor: \([0-9]*\).*/\1/p' | head -1)

export WEIR_MOSQUITTO_PORT=$BASE WEIR_MOSQUITTO_LOG_TYPES="error warning" \
  WEIR_MOSQUITTO_AUTOSAVE_INTERVAL=0 WEIR_MOSQUITTO_EXTRA_CONF="max_queued_messages 100000"
if ! "$ROOT/scripts/mosquitto.sh" status >/dev/null 2>&1; then
  STARTED_MOSQ=1
  "$ROOT/scripts/mosquitto.sh" start >&2
fi
MOSQ_PID=$(pgrep -f "mosquitto.*$BASE" | head -1 || true)

cat > "$RUN_DIR/gateway.yaml" <<YAML
listen: 127.0.0.1:$((BASE + 1))
admin: 127.0.0.1:$((BASE + 2))
kafka: {bootstrap: "127.0.0.1:9092"}
mappings:
  - {mqtt: "weir-bench/+", kafka: weir-bench.gateway, key: "{1}"}
sessions: {topic: weir-bench.gateway-sessions}
retained: {topic: weir-bench.gateway-retained}
limits: {max_connections: 20000}
log: {format: json, level: warn}
YAML
"$WEIR" gateway mqtt --config "$RUN_DIR/gateway.yaml" > "$RUN_DIR/gateway.log" 2>&1 &
GW_PID=$!
for _ in $(seq 1 200); do port_open $((BASE + 1)) && break; sleep 0.1; done
port_open $((BASE + 1)) || die "the gateway did not listen: $(tail -3 "$RUN_DIR/gateway.log")"
ulimit -n 20000 2>/dev/null || true

declare -A ADDR=([mosquitto]=127.0.0.1:$BASE [gateway]=127.0.0.1:$((BASE + 1)))
declare -A HOP=([mosquitto]=$MOSQ_PID [gateway]=$GW_PID)
run() {  # run ROUND PATH NAME TOOL-ARGS...
  local round=$1 path=$2 name=$3 line before after
  shift 3
  before=$(cpu_ticks "${HOP[$path]}")
  line=$("$TOOL" "$@" 2>>"$RUN_DIR/tool.log") || { log "$path $name failed: $(tail -1 "$RUN_DIR/tool.log")"; return; }
  after=$(cpu_ticks "${HOP[$path]}")
  echo "$round $path $name $line" >> "$RUN_DIR/raw.txt"
  for key in rate p50_ms p99_ms deliveries_per_s lost; do
    local v
    v=$(field "$key" " $line")
    [[ -n $v ]] && printf '%s\t%s\t%s\t%s\n' "$round" "$path" "$name.$key" "$v" >> "$DATA"
  done
  local done_
  done_=$(field done " $line")
  if [[ -n $done_ && $done_ -gt 0 ]]; then
    printf '%s\t%s\t%s\t%s\n' "$round" "$path" "$name.cpu_us" \
      "$(awk -v t=$((after - before)) -v n="$done_" -v h="$CLK_TCK" 'BEGIN {printf "%.2f", t / h * 1e6 / n}')" >> "$DATA"
  fi
}

log "warm-up"
for path in mosquitto gateway; do "$TOOL" mqtt-tp -addr "${ADDR[$path]}" -qos 1 -count 2000 >/dev/null 2>&1 || true; done
for round in $(seq 1 "$ROUNDS"); do
  order=(mosquitto gateway)
  ((round % 2 == 0)) && order=(gateway mosquitto)
  for path in "${order[@]}"; do
    log "round $round/$ROUNDS: $path"
    addr=${ADDR[$path]}
    run "$round" "$path" pub_q1 mqtt-pub -addr "$addr" -qos 1 -count "$COUNT" -size "$SIZE"
    run "$round" "$path" tp_q0 mqtt-tp -addr "$addr" -qos 0 -count "$COUNT" -size "$SIZE"
    run "$round" "$path" tp_q1 mqtt-tp -addr "$addr" -qos 1 -count "$COUNT" -size "$SIZE"
    run "$round" "$path" lat_q0 mqtt-lat -addr "$addr" -qos 0 -rate "$LAT_RATE" -seconds "$SECONDS_" -warmup "$WARMUP" -size "$SIZE"
    run "$round" "$path" lat_q1 mqtt-lat -addr "$addr" -qos 1 -rate "$LAT_RATE" -seconds "$SECONDS_" -warmup "$WARMUP" -size "$SIZE"
    run "$round" "$path" fanout mqtt-fanout -addr "$addr" -subs "$SUBS" -qos 0 -rate "$FAN_RATE" -seconds "$SECONDS_" -warmup "$WARMUP" -size "$SIZE"
  done
done
RSS_KB=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$GW_PID/status")
grep -q '"level":"\(WARN\|ERROR\)"' "$RUN_DIR/gateway.log" && log "the gateway logged warnings: see $RUN_DIR/gateway.log"

python3 - "$DATA" "$COMMIT" "$ROUNDS" "$COUNT" "$SIZE" "$SUBS" "$FAN_RATE" "$LAT_RATE" "$BROKERS/RF $RF" "$RSS_KB" <<'PY' | tee "$RESULTS/gateway-latest.txt"
import collections, statistics, sys
data, commit, rounds, count, size, subs, fan_rate, lat_rate, brokers, rss = sys.argv[1:]
values = collections.defaultdict(list)
for line in open(data):
    _, path, key, value = line.rstrip("\n").split("\t")
    values[(path, key)].append(float(value))
med = lambda path, key: statistics.median(values[(path, key)]) if values[(path, key)] else float("nan")
print(f"MQTT gateway vs Mosquitto: commit {commit}, {rounds} rounds (medians), {count} x {size} B, "
      f"Kafka brokers: {brokers} (replication factor), fan-out {subs} subscribers at {fan_rate}/s, latency at {lat_rate}/s")
print(f"{'workload':<34}{'mosquitto':>12}{'gateway':>12}{'gateway/mosq':>14}")
rows = [("publish QoS 1, acked msg/s", "pub_q1.rate"), ("end to end QoS 0, msg/s", "tp_q0.rate"),
        ("end to end QoS 1, msg/s", "tp_q1.rate"), ("latency QoS 0 p50 ms", "lat_q0.p50_ms"),
        ("latency QoS 0 p99 ms", "lat_q0.p99_ms"), ("latency QoS 0 lost", "lat_q0.lost"),
        ("latency QoS 1 p50 ms", "lat_q1.p50_ms"),
        ("latency QoS 1 p99 ms", "lat_q1.p99_ms"), ("fan-out p50 ms", "fanout.p50_ms"),
        ("fan-out p99 ms", "fanout.p99_ms"), ("fan-out deliveries/s", "fanout.deliveries_per_s"),
        ("fan-out lost", "fanout.lost"),
        ("hop CPU us/msg, publish QoS 1", "pub_q1.cpu_us"), ("hop CPU us/msg, end to end QoS 0", "tp_q0.cpu_us"),
        ("hop CPU us/msg, end to end QoS 1", "tp_q1.cpu_us")]
for label, key in rows:
    m, g = med("mosquitto", key), med("gateway", key)
    ratio = g / m if m else float("nan")
    print(f"{label:<34}{m:>12.3f}{g:>12.3f}{ratio:>14.3f}")
print(f"gateway peak RSS: {int(rss) / 1024:.1f} MB")
PY
