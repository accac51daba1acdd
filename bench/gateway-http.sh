#!/usr/bin/env bash
# bench/gateway-http.sh - what does the HTTP gateway (`weir gateway http`) cost next to a Kafka
# client? The same records written and read through the gateway (HTTP POST, Server-Sent
# Events) and by Kafka's Java client directly, both with acks=all, rotating the order from
# round to round; prints medians, the gateway's ratios to the Java client, and its CPU.
#
#   bench/gateway-http.sh [--quick] [--rounds N] [--seconds S] [--size BYTES] [--rate R]
#                         [--streams N] [--no-build]
#
#   default: 3 rounds of 10 s runs, 128-byte values, latency at 1,000 records/s, fan-out to
#     100 streams at 100 records/s; about 6 minutes on 2 CPUs
#   --quick: 1 round of 3 s runs: a smoke test
#
# WHAT (the HTTP load generator is bench/brokers/http.go, Go's net/http):
#   produce_batch  8 clients, each POSTing 100 records per request, one request in flight:
#                  records/s; against Kafka's ProducerPerformance (Java client, acks=all,
#                  --throughput -1, about as many records): records/s, with the Java client's
#                  default batching and with librdkafka's (batch.size 1 MiB, linger.ms 2), which
#                  the gateway's client has.
#   produce_one    16 clients POSTing 1 record per request: requests/s, p50/p99 ms (no Kafka
#                  counterpart: a Java producer does not wait per record).
#   latency        records POSTed one per request at RATE/s (open loop), read by one event
#                  stream: p50/p99 ms from POST to event; against bench/BenchTool.java
#                  `latency` (Java producer acks=all, Java consumer, same rate and size).
#   fanout         STREAMS event streams of one topic, records at 100/s: p50/p99 ms of every
#                  delivery.
#   CPU            the gateway's utime+stime per record of the produce runs.
#
# HOW. Builds the release binary into $CARGO_TARGET_DIR (default ~/.cache/weir/target-bench;
# skip with --no-build or WEIR_BENCH_BIN) and the Go tool. Uses the Kafka cluster
# scripts/kafka.sh runs, or starts one broker (and stops it on exit). Starts the gateway on
# port BASE (17893, admin BASE+1): no credentials (a fixed principal), no policy, logging at
# warn; topic weir-bench.http (3 partitions). Results: stdout and
# bench/results/gateway-http-latest.txt.
#
# Everything shares the machine: Kafka, the gateway, the JVM and the load generator compete
# for the same cores, so the figures are relative, not what each would do on its own cores.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target-bench}
WEIR=${WEIR_BENCH_BIN:-$TARGET/release/weir}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
KAFKA=$ROOT/scripts/kafka.sh
BASE=${WEIR_BENCH_HTTP_PORT:-17893}
ROUNDS=3 SECONDS_=10 WARMUP=2 SIZE=128 RATE=1000 STREAMS=100 BUILD=1

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) ROUNDS=1 SECONDS_=3 WARMUP=1; shift ;;
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    --seconds) SECONDS_=${2:?}; shift 2 ;;
    --size) SIZE=${2:?}; shift 2 ;;
    --rate) RATE=${2:?}; shift 2 ;;
    --streams) STREAMS=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage ;;
    *) echo "gateway-http.sh: unknown option $1" >&2; usage ;;
  esac
done

RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"
exec 8> "$RESULTS/.lock"
flock -n 8 || { echo "gateway-http.sh: another benchmark is running (lock $RESULTS/.lock)" >&2; exit 1; }
RUN_DIR=$RESULTS/gateway-http-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN_DIR"
DATA=$RUN_DIR/data.tsv
: > "$DATA"
log() { printf '%s gateway-http.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
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
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$DATA"; }  # record ROUND KEY VALUE

GW_PID="" STARTED_KAFKA=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $GW_PID ]] && kill -TERM "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null || true
  ((STARTED_KAFKA)) && "$KAFKA" stop >&2 || true
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

if ! "$KAFKA" status >/dev/null 2>&1; then
  STARTED_KAFKA=1
  "$KAFKA" start --brokers 1 >&2
fi
BROKERS=$("$KAFKA" status 2>/dev/null | sed -n 's/.*brokers=\([0-9]*\).*/\1/p' | tail -1)
TOPIC=weir-bench.http
"$KAFKA" run org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 \
  --create --if-not-exists --topic $TOPIC --partitions 3 >/dev/null
# acks=all waits for every in-sync replica: the replication factor is part of the result.
RF=$("$KAFKA" run org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --describe --topic $TOPIC \
  2>/dev/null | sed -n 's/.*ReplicationFactor: \([0-9]*\).*/\1/p' | head -1)

CP=$("$KAFKA" classpath)
JAVA=${WEIR_KAFKA_JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/}java}
JAVAC=${JAVA%java}javac
mkdir -p "$RUN_DIR/classes"
"$JAVAC" -nowarn -cp "$CP" -d "$RUN_DIR/classes" "$ROOT/bench/BenchTool.java" >&2 || die "cannot compile bench/BenchTool.java"
java_latency() {  # Java producer (acks=all) -> Kafka -> Java consumer, at RATE
  "$JAVA" -Xmx1g -Dweir.bench.acks=all -cp "$RUN_DIR/classes:$CP" \
    -Dlog4j2.configurationFile="$ROOT/kafka/log4j2-tools.properties" \
    BenchTool latency 127.0.0.1:9092 $TOPIC "$RATE" "$SECONDS_" "$WARMUP" "$SIZE"
}

cat > "$RUN_DIR/gateway.yaml" <<YAML
listen: 127.0.0.1:$BASE
admin: 127.0.0.1:$((BASE + 1))
kafka: {bootstrap: "127.0.0.1:9092"}
fixed_principal: bench
limits: {max_connections: 20000, max_streams: 10000}
log: {format: json, level: warn}
YAML
"$WEIR" gateway http --config "$RUN_DIR/gateway.yaml" > "$RUN_DIR/gateway.log" 2>&1 &
GW_PID=$!
for _ in $(seq 1 200); do port_open "$BASE" && break; sleep 0.1; done
port_open "$BASE" || die "the gateway did not listen: $(tail -3 "$RUN_DIR/gateway.log")"
ulimit -n 20000 2>/dev/null || true
URL=http://127.0.0.1:$BASE/topics/$TOPIC

gateway_run() {  # gateway_run ROUND NAME TOOL-ARGS...: records the tool's figures and CPU/record
  local round=$1 name=$2 line before after
  shift 2
  before=$(cpu_ticks "$GW_PID")
  line=$("$TOOL" "$@" 2>>"$RUN_DIR/tool.log") || { log "$name failed: $(tail -1 "$RUN_DIR/tool.log")"; return; }
  after=$(cpu_ticks "$GW_PID")
  echo "$round $name $line" >> "$RUN_DIR/raw.txt"
  for key in rate records_per_s p50_ms p99_ms lost failed; do
    local v
    v=$(field "$key" " $line")
    [[ -n $v ]] && record "$round" "$name.$key" "$v"
  done
  local records
  records=$(field records_per_s " $line")
  if [[ -n $records && $records -gt 0 ]]; then
    record "$round" "$name.cpu_us" "$(awk -v t=$((after - before)) -v r="$records" -v s="$SECONDS_" -v h="$CLK_TCK" \
      'BEGIN {printf "%.2f", t / h * 1e6 / (r * s)}')"
  fi
}

kafka_produce() {  # kafka_produce ROUND NAME RECORDS [PROPERTY=VALUE...]: ProducerPerformance, acks=all
  local n=$1 name=$2 count=$3 line
  shift 3
  line=$("$KAFKA" run org.apache.kafka.tools.ProducerPerformance --topic $TOPIC --num-records "$count" \
    --record-size "$SIZE" --throughput -1 --command-property bootstrap.servers=127.0.0.1:9092 acks=all "$@" \
    2>>"$RUN_DIR/tool.log" | tail -1)
  echo "$n $name $line" >> "$RUN_DIR/raw.txt"
  record "$n" "$name.records_per_s" "$(sed -n 's/.*, \([0-9.]*\) records\/sec.*/\1/p' <<< "$line")"
}
java_produce() {  # the Java client as it comes, and with librdkafka's batching (the gateway's client)
  kafka_produce "$1" kafka_produce "$2"
  kafka_produce "$1" kafka_produce_batched "$2" batch.size=1048576 linger.ms=2
}

log "warm-up"
"$TOOL" http-produce -url "$URL" -conc 8 -records 100 -seconds 2 >/dev/null 2>&1 || true
for round in $(seq 1 "$ROUNDS"); do
  log "round $round/$ROUNDS"
  # As many records as the gateway writes in SECONDS_ (about), so both runs last alike.
  batch_records=$((SECONDS_ * 150000))
  if ((round % 2 == 1)); then
    gateway_run "$round" produce_batch http-produce -url "$URL" -conc 8 -records 100 -size "$SIZE" -seconds "$SECONDS_"
    java_produce "$round" "$batch_records"
  else
    java_produce "$round" "$batch_records"
    gateway_run "$round" produce_batch http-produce -url "$URL" -conc 8 -records 100 -size "$SIZE" -seconds "$SECONDS_"
  fi
  gateway_run "$round" produce_one http-produce -url "$URL" -conc 16 -records 1 -size "$SIZE" -seconds "$SECONDS_"
  gateway_run "$round" latency sse-lat -url "$URL" -streams 1 -rate "$RATE" -seconds "$SECONDS_" -warmup "$WARMUP" -size "$SIZE"
  line=$(java_latency 2>>"$RUN_DIR/tool.log" | tail -1)
  echo "$round java_latency $line" >> "$RUN_DIR/raw.txt"
  for key in p50_ms p99_ms lost; do record "$round" "java_latency.$key" "$(field "$key" " $line")"; done
  gateway_run "$round" fanout sse-lat -url "$URL" -streams "$STREAMS" -rate 100 -seconds "$SECONDS_" -warmup "$WARMUP" -size "$SIZE"
done
RSS_KB=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$GW_PID/status")
grep -q '"level":"\(WARN\|ERROR\)"' "$RUN_DIR/gateway.log" && log "the gateway logged warnings: see $RUN_DIR/gateway.log"

python3 - "$DATA" "$COMMIT" "$ROUNDS" "$SECONDS_" "$SIZE" "$RATE" "$STREAMS" "$BROKERS/RF $RF" "$RSS_KB" <<'PY' | tee "$RESULTS/gateway-http-latest.txt"
import collections, statistics, sys
data, commit, rounds, seconds, size, rate, streams, brokers, rss = sys.argv[1:]
values = collections.defaultdict(list)
for line in open(data):
    _, key, value = line.rstrip("\n").split("\t")
    if value:
        values[key].append(float(value))
med = lambda key: statistics.median(values[key]) if values[key] else float("nan")
print(f"HTTP gateway vs the Java client: commit {commit}, {rounds} rounds (medians) of {seconds} s, "
      f"{size} B values, acks=all, Kafka brokers: {brokers} (replication factor)")
print(f"{'workload':<44}{'java':>12}{'gateway':>12}{'gateway/java':>14}")
def row(label, java, gateway):
    j, g = (med(java) if java else float("nan")), med(gateway)
    ratio = g / j if java and j else float("nan")
    print(f"{label:<44}{j:>12.3f}{g:>12.3f}{ratio:>14.3f}")
row("produce, 100 records/request, records/s", "kafka_produce.records_per_s", "produce_batch.records_per_s")
row("  vs Java with batch.size 1 MiB, linger 2 ms", "kafka_produce_batched.records_per_s", "produce_batch.records_per_s")
row("produce, 100 records/request, request p99 ms", None, "produce_batch.p99_ms")
row("produce, 1 record/request, requests/s", None, "produce_one.rate")
row("produce, 1 record/request, p50 ms", None, "produce_one.p50_ms")
row("produce, 1 record/request, p99 ms", None, "produce_one.p99_ms")
row(f"latency at {rate}/s, p50 ms (SSE vs consumer)", "java_latency.p50_ms", "latency.p50_ms")
row(f"latency at {rate}/s, p99 ms (SSE vs consumer)", "java_latency.p99_ms", "latency.p99_ms")
row(f"fan-out to {streams} streams at 100/s, p50 ms", None, "fanout.p50_ms")
row(f"fan-out to {streams} streams at 100/s, p99 ms", None, "fanout.p99_ms")
row("fan-out deliveries lost", None, "fanout.lost")
row("gateway CPU us/record, 100 records/request", None, "produce_batch.cpu_us")
row("gateway CPU us/record, 1 record/request", None, "produce_one.cpu_us")
print(f"gateway peak RSS: {int(rss) / 1024:.1f} MB")
PY
