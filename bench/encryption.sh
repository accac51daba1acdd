#!/usr/bin/env bash
# bench/encryption.sh - what does envelope encryption cost a producer and a consumer? (issue 13)
#
# Two `weir proxy` (release build) in front of the test cluster `main` (started if needed):
# `plain` with no event policy, `sealed` with an encryption rule (local key file) covering
# the topic it is given, whose principal (fixed) reads plaintext. Per round, Kafka's
# ProducerPerformance sends RECORDS records of 1 KiB through each (acks=1, linger.ms=5,
# batch.size 16 KiB, no compression, 6 partitions, RF 1), then ConsumerPerformance reads
# RECORDS records back through each (a new group from the earliest offset): the sealed ones
# are opened on the way. Orders rotate per round.
#
# Prints per run MB/s and the sidecar's CPU time per record (utime+stime from /proc), then
# the medians and the ratios sealed/plain (issue 13's target: >= 0.80 for both).
#
#   bench/encryption.sh      ROUNDS=3 RECORDS=500000 [WEIR=PATH]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
RECORDS=${RECORDS:-500000}
KAFKA=$ROOT/scripts/kafka.sh
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ -n ${WEIR:-} ]] || cargo build --release -p weir --bin weir >&2
WEIR=${WEIR:-$TARGET/release/weir}
"$KAFKA" status >/dev/null 2>&1 || "$KAFKA" start --brokers 3 >&2
BOOTSTRAP=$("$KAFKA" bootstrap --mesh)
bootstrap_yaml=$(sed 's/[^,]*/"&"/g' <<< "$BOOTSTRAP")

dir=$(mktemp -d /tmp/weir-bench-encryption.XXXXXX)
plain=encryption-bench-plain-$$ sealed=encryption-bench-sealed-$$
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  for t in "$plain" "$sealed"; do
    "$KAFKA" run org.apache.kafka.tools.TopicCommand --bootstrap-server "${BOOTSTRAP%%,*}" --delete --topic "$t" >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT

key=$(head -c 32 /dev/urandom | base64)
printf '{"current": "bench", "keys": {"bench": "%s"}}' "$key" > "$dir/keys.json"
chmod 600 "$dir/keys.json"

start_sidecar() {  # start_sidecar NAME PORT EXTRA_YAML: starts one, waits until ready
  local name=$1 port=$2
  cat > "$dir/$name.yaml" <<YAML
listen: 127.0.0.1:$port
admin: 127.0.0.1:$((port + 99))
bootstrap: [$bootstrap_yaml]
broker_ports: {base: $((port + 1)), count: 10}
upstream:
  resolve: {"*.weir.invalid": 127.0.0.1}
log: {level: warn}
fixed_principal: 'User:bench'
$3
YAML
  "$WEIR" proxy --config "$dir/$name.yaml" > "$dir/$name.log" 2>&1 &
  pids+=($!)
  eval "${name}_pid=$!"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((port + 99))/readyz" >/dev/null && return; sleep 0.1; done
  echo "sidecar $name did not get ready: $(tail -5 "$dir/$name.log")" >&2; exit 1
}
start_sidecar plain 26500 ""
start_sidecar sealed 26600 "kms: {local: {key_file: '$dir/keys.json'}}
encryption:
  - {name: bench, topics: ['$sealed'], decrypt_for: ['User:bench']}"

for t in "$plain" "$sealed"; do
  "$KAFKA" run org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:26500 --create --topic "$t" \
    --partitions 6 --replication-factor 1 >/dev/null 2>&1
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime+stime, clock ticks
tick=$(getconf CLK_TCK)
group=0

run() {  # run produce|consume plain|sealed: one run; appends "what config MB/s us-per-record"
  local what=$1 config=$2 port pid topic before after out=$dir/run.out mbs
  if [[ $config == plain ]]; then port=26500 pid=$plain_pid topic=$plain; else port=26600 pid=$sealed_pid topic=$sealed; fi
  sync
  before=$(cpu "$pid")
  if [[ $what == produce ]]; then
    "$KAFKA" run org.apache.kafka.tools.ProducerPerformance --bootstrap-server "127.0.0.1:$port" --topic "$topic" \
      --num-records "$RECORDS" --record-size 1024 --throughput -1 \
      --command-property acks=1 linger.ms=5 > "$out" 2>&1
    mbs=$(grep 'records sent' "$out" | tail -1 | sed 's/.*records\/sec (\([0-9.]*\) MB\/sec).*/\1/')
  else
    group=$((group + 1))
    "$KAFKA" run org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "127.0.0.1:$port" --topic "$topic" \
      --messages "$RECORDS" --group "bench-$$-$group" --timeout 60000 > "$out" 2>&1
    # A header line (start.time, end.time, data.consumed.in.MB, MB.sec, ...), then the figures.
    mbs=$(awk -F', ' '/^start.time/ {getline; print $4}' "$out")
  fi
  after=$(cpu "$pid")
  local failed; failed=$(grep -ci 'exception' "$out" || true)
  [[ $failed == 0 && -n $mbs ]] || { echo "$what/$config failed:"; head -5 "$out"; exit 1; }
  local us; us=$(awk -v a="$after" -v b="$before" -v t="$tick" -v n="$RECORDS" 'BEGIN {printf "%.2f", (a - b) / t / n * 1e6}')
  echo "$what $config $mbs $us" >> "$dir/results"
  echo "  $what/$config: $mbs MB/s, sidecar CPU $us us/record"
}

echo "encryption: $RECORDS records of 1 KiB per run, $ROUNDS rounds, $(nproc) cores, $(date -u +%FT%TZ)"
# Warm-up, unmeasured: JIT of broker and tools, page cache, the first data key.
run produce plain >/dev/null; run produce sealed >/dev/null; : > "$dir/results"
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  if (( round % 2 )); then order="plain sealed"; else order="sealed plain"; fi
  for config in $order; do run produce "$config"; done
  for config in $order; do run consume "$config"; done
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
stat() { awk -v w="$1" -v c="$2" -v f="$3" '$1 == w && $2 == c {print $f}' "$dir/results" | median; }
for what in produce consume; do
  p=$(stat "$what" plain 3) s=$(stat "$what" sealed 3)
  printf '%-8s plain %8.1f MB/s (%5.2f us/record)  sealed %8.1f MB/s (%5.2f us/record)  sealed/plain %.3f\n' \
    "$what" "$p" "$(stat "$what" plain 4)" "$s" "$(stat "$what" sealed 4)" "$(awk -v a="$s" -v b="$p" 'BEGIN {print a / b}')"
done
echo "sealed: $(curl -s http://127.0.0.1:26699/metrics | awk '$1 ~ /^weir_kafka_sealed_records_total/ {print $2}') opened: $(curl -s http://127.0.0.1:26699/metrics | awk '$1 ~ /^weir_kafka_opened_records_total/ {print $2}')"
