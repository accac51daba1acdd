#!/usr/bin/env bash
# bench/records.sh - what do the policies that change records cost a producer and a consumer?
# (issue 13: envelope encryption, transformation on fetch, tracing)
#
# Sidecars (release build) in front of the test cluster `main` (started if needed), each
# with one policy on the topic it is given, fixed principal `User:bench`:
#
#   plain    no event policy
#   sealed   encryption (local key file), the principal in decrypt_for: sealed on produce,
#            opened on fetch
#   masked   a fetch transform: one JSON field replaced, one hashed, a header removed, and a
#            drop_if that holds for no record (every record read, judged and written again)
#   traced   traces with sample_ratio 1 (every batch starts a trace, every record gets a
#            traceparent) and spans sent to Jaeger (scripts/jaeger.sh, started if needed)
#
# Per round, Kafka's ProducerPerformance sends RECORDS ~1 KiB JSON documents (1,000
# different ones, --payload-file) through each (acks=1, linger.ms=5, batch.size 16 KiB, no
# compression, 6 partitions, RF 1), then ConsumerPerformance reads RECORDS back through each
# (a new group, from the earliest offset). Orders rotate per round.
#
# Prints per run MB/s and the sidecar's CPU time per record (utime+stime from /proc), then
# medians and the ratios to plain (issue 13's target for encryption: >= 0.80 both ways).
#
#   bench/records.sh      ROUNDS=3 RECORDS=300000 [CONFIGS="plain sealed masked traced"] [WEIR=PATH]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
RECORDS=${RECORDS:-300000}
CONFIGS=${CONFIGS:-plain sealed masked traced}
KAFKA=$ROOT/scripts/kafka.sh
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ -n ${WEIR:-} ]] || cargo build --release -p weir --bin weir >&2
WEIR=${WEIR:-$TARGET/release/weir}
"$KAFKA" status >/dev/null 2>&1 || "$KAFKA" start --brokers 3 >&2
BOOTSTRAP=$("$KAFKA" bootstrap --mesh)
bootstrap_yaml=$(sed 's/[^,]*/"&"/g' <<< "$BOOTSTRAP")
if [[ " $CONFIGS " == *" traced "* ]]; then
  scripts/jaeger.sh start >&2
  OTLP=$(scripts/jaeger.sh url)
fi

dir=$(mktemp -d /tmp/weir-bench-records.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  for config in $CONFIGS; do
    "$KAFKA" run org.apache.kafka.tools.TopicCommand --bootstrap-server "${BOOTSTRAP%%,*}" --delete \
      --topic "records-bench-$config-$$" >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT

key=$(head -c 32 /dev/urandom | base64)
printf '{"current": "bench", "keys": {"bench": "%s"}}' "$key" > "$dir/keys.json"
chmod 600 "$dir/keys.json"
python3 - "$dir/payloads" <<'PYEOF'
import json, random, sys
rng = random.Random(13)
with open(sys.argv[1], "w") as f:
    for i in range(1000):
        doc = {"id": i + 1, "email": f"user{rng.randrange(10**6)}@example.com", "region": rng.choice(["eu", "us"]),
               "card": {"number": f"4111-{rng.randrange(10**8)}", "cvc": f"{rng.randrange(1000):03d}"},
               "lines": [{"sku": f"sku-{rng.randrange(10**5)}", "qty": rng.randrange(1, 9)} for _ in range(rng.randrange(2, 6))],
               "note": ""}
        doc["note"] = "n" * max(0, 1024 - len(json.dumps(doc, separators=(",", ":"))))
        f.write(json.dumps(doc, separators=(",", ":")) + "\n")
PYEOF

policy() {  # the YAML of a config's policy on topic $2
  local t=$2
  case $1 in
    plain) ;;
    sealed) printf '%s\n' "kms: {local: {key_file: '$dir/keys.json'}}" "encryption:" \
      "  - {name: bench, topics: ['$t'], decrypt_for: ['User:bench']}" ;;
    masked) printf '%s\n' "transforms:" \
      "  - name: bench" "    topics: ['$t']" "    fetch:" "      remove_headers: [secret]" \
      "      mask: [{path: '\$.card.number', replace: '****'}, {path: '\$.email', hash: true}]" \
      "      drop_if: 'json(\"\$.region\") == \"mars\"'" ;;
    traced) printf '%s\n' "otlp: {endpoint: '$OTLP', service_name: bench-$$}" \
      "traces: {topics: ['$t'], sample_ratio: 1.0}" ;;
  esac
}

port=26500
for config in $CONFIGS; do
  topic=records-bench-$config-$$
  cat > "$dir/$config.yaml" <<YAML
listen: 127.0.0.1:$port
admin: 127.0.0.1:$((port + 99))
bootstrap: [$bootstrap_yaml]
broker_ports: {base: $((port + 1)), count: 10}
upstream:
  resolve: {"*.weir.invalid": 127.0.0.1}
log: {level: warn}
fixed_principal: 'User:bench'
$(policy "$config" "$topic")
YAML
  "$WEIR" proxy --config "$dir/$config.yaml" > "$dir/$config.log" 2>&1 &
  pids+=($!)
  eval "${config}_pid=$! ${config}_port=$port"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((port + 99))/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$((port + 99))/readyz" >/dev/null || { echo "sidecar $config did not get ready: $(tail -5 "$dir/$config.log")" >&2; exit 1; }
  "$KAFKA" run org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --create --topic "$topic" \
    --partitions 6 --replication-factor 1 >/dev/null 2>&1
  port=$((port + 100))
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime+stime, clock ticks
tick=$(getconf CLK_TCK)
group=0

run() {  # run produce|consume CONFIG: one run; appends "what config MB/s us-per-record"
  local what=$1 config=$2 out=$dir/run.out mbs pid port topic before after
  pid=$(eval echo "\$${config}_pid") port=$(eval echo "\$${config}_port") topic=records-bench-$config-$$
  sync
  before=$(cpu "$pid")
  if [[ $what == produce ]]; then
    "$KAFKA" run org.apache.kafka.tools.ProducerPerformance --bootstrap-server "127.0.0.1:$port" --topic "$topic" \
      --num-records "$RECORDS" --payload-file "$dir/payloads" --throughput -1 \
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

read -ra configs <<< "$CONFIGS"
echo "record policies: $RECORDS records of ~1 KiB per run, $ROUNDS rounds, ${configs[*]}, $(nproc) cores, $(date -u +%FT%TZ)"
# Warm-up, unmeasured: JIT of broker and tools, page cache, the first data key.
for config in "${configs[@]}"; do run produce "$config" >/dev/null; done
: > "$dir/results"
n=${#configs[@]}
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  for what in produce consume; do
    for k in $(seq 0 $((n - 1))); do run "$what" "${configs[$(((k + round) % n))]}"; done
  done
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
stat() { awk -v w="$1" -v c="$2" -v f="$3" '$1 == w && $2 == c {print $f}' "$dir/results" | median; }
for what in produce consume; do
  base=$(stat "$what" plain 3) base_us=$(stat "$what" plain 4)
  for config in "${configs[@]}"; do
    mbs=$(stat "$what" "$config" 3) us=$(stat "$what" "$config" 4)
    printf '%-8s %-7s %8.1f MB/s  %.3f of plain  sidecar CPU %5.2f us/record (%+.2f)\n' "$what" "$config" "$mbs" \
      "$(awk -v a="$mbs" -v b="$base" 'BEGIN {print a / b}')" "$us" "$(awk -v a="$us" -v b="$base_us" 'BEGIN {print a - b}')"
  done
done
