#!/usr/bin/env bash
# bench/hop.sh - what does one proxy hop cost a consumer, whatever the proxy does?
#
#   bench/hop.sh [--rounds N] [--records N] [--no-build]
#
# Produces N records of 1 KiB once (6 partitions), then reads them all with Kafka's
# ConsumerPerformance, alternating four paths per round:
#   direct  the broker's PLAINTEXT listener
#   copy    bench/relay.py --mode copy   (a zero-work relay moving bytes through user space)
#   weir    the sidecar
#   splice  bench/relay.py --mode splice (a zero-work relay with splice(2): no copy at all)
# and prints each run's fetch throughput (MB/s as ConsumerPerformance reports it), the
# medians, and every path's ratio to direct. The relays know nothing of Kafka; they reach
# the broker's RELAY listener, which scripts/kafka.sh advertises at the relay's port.
# Default: 6 rounds of 2,000,000 records (about 6 minutes). Uses cluster `bench` (base port
# 9492; started and stopped here unless already running) and the ports bench/run.sh uses.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA=$ROOT/scripts/kafka.sh
WEIR=${WEIR_BENCH_BIN:-$ROOT/target/release/weir}
ROUNDS=6 RECORDS=2000000 BUILD=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    --records) RECORDS=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
log() { printf '%s hop.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"
exec 8> "$RESULTS/.lock"
flock -n 8 || { log "another benchmark is running (lock $RESULTS/.lock)"; exit 1; }
RUN_DIR=$RESULTS/hop-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN_DIR"

if ((BUILD)); then (cd "$ROOT" && cargo build --release -q -p weir) >&2; fi
STARTED=0 WEIR_PID="" RELAY_PID=""
cleanup() {
  if [[ -n $RELAY_PID ]]; then kill "$RELAY_PID" 2>/dev/null || true; fi
  if [[ -n $WEIR_PID ]]; then kill "$WEIR_PID" 2>/dev/null || true; fi
  if ((STARTED)); then "$KAFKA" stop --cluster bench >&2 || true; fi
}
trap cleanup EXIT
if ! "$KAFKA" status --cluster bench >/dev/null 2>&1; then
  STARTED=1
  "$KAFKA" start --cluster bench --brokers 1 --base-port 9492 >&2 8>&-
fi
cat > "$RUN_DIR/weir.yaml" <<EOF
listen: 127.0.0.1:29092
bootstrap: ["127.0.0.1:9493"]
admin: 127.0.0.1:29901
broker_ports: {base: 29093, count: 10}
upstream:
  resolve: {"*.weir.invalid": 127.0.0.1}
log: {format: text, level: warn}
EOF
"$WEIR" proxy --config "$RUN_DIR/weir.yaml" > "$RUN_DIR/weir.log" 2>&1 8>&- &
WEIR_PID=$!
until curl -fsS -o /dev/null http://127.0.0.1:29901/readyz 2>/dev/null; do
  kill -0 "$WEIR_PID" 2>/dev/null || { cat "$RUN_DIR/weir.log" >&2; exit 1; }
  sleep 0.2
done

TOPIC=hop-$(date +%s)
log "producing $RECORDS records of 1 KiB into $TOPIC"
"$KAFKA" run org.apache.kafka.tools.ProducerPerformance --bootstrap-server 127.0.0.1:9492 --topic "$TOPIC" \
  --num-records "$RECORDS" --record-size 1024 --throughput -1 --command-property acks=1 linger.ms=5 \
  > "$RUN_DIR/produce.log" 2>&1

relay() {  # relay MODE: (re)start the relay in front of the RELAY listener
  if [[ -n $RELAY_PID ]]; then
    kill "$RELAY_PID" 2>/dev/null || true
    while kill -0 "$RELAY_PID" 2>/dev/null; do sleep 0.1; done
  fi
  python3 "$ROOT/bench/relay.py" --mode "$1" 127.0.0.1:9500=127.0.0.1:9499 > /dev/null 2>> "$RUN_DIR/relay.log" 8>&- &
  RELAY_PID=$!
  until (: <> /dev/tcp/127.0.0.1/9500) 2>/dev/null; do sleep 0.1; done
}
MBS=""
consume() {  # consume PATH: sets MBS, the fetch MB/s of one full read
  local bs=127.0.0.1:9492 line
  case $1 in
    weir) bs=127.0.0.1:29092 ;;
    copy | splice) relay "$1"; bs=127.0.0.1:9500 ;;
  esac
  line=$("$KAFKA" run org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$bs" --topic "$TOPIC" \
    --num-records "$RECORDS" --group "hop-$1-$RANDOM$RANDOM" --timeout 60000 --hide-header 2>/dev/null \
    | grep -E '^[0-9]{4}-' | tail -n 1)
  IFS=',' read -r -a f <<< "${line//, /,}"
  [[ ${f[4]:-} == "$RECORDS" ]] || { log "$1: consumed ${f[4]:-nothing}, expected $RECORDS"; exit 1; }
  MBS=${f[8]}
}

PATHS=(direct copy weir splice)
log "warm-up: one read per path"
for p in "${PATHS[@]}"; do consume "$p"; done
for ((r = 1; r <= ROUNDS; r++)); do
  for p in "${PATHS[@]}"; do
    consume "$p"
    printf '%s\t%s\t%s\n' "$r" "$p" "$MBS" >> "$RUN_DIR/data.tsv"
    log "round $r $p: $MBS MB/s"
  done
done
{
  echo "consumer fetch throughput, $ROUNDS rounds of $RECORDS x 1 KiB (MB/s as ConsumerPerformance reports)"
  awk -F'\t' '
    { v[$2] = v[$2] " " $3 }
    function median(list,   a, n, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
      d = median(v["direct"])
      printf "%-8s %10s %8s   %s\n", "path", "median", "/direct", "runs"
      split("direct copy weir splice", order, " ")
      for (k = 1; k <= 4; k++) { p = order[k]; m = median(v[p]); printf "%-8s %10.1f %8.3f  %s\n", p, m, m / d, v[p] }
      printf "weir / copy relay %.3f, weir / splice relay %.3f\n", median(v["weir"]) / median(v["copy"]), median(v["weir"]) / median(v["splice"])
    }' "$RUN_DIR/data.tsv"
} | tee "$RUN_DIR/summary.txt"
