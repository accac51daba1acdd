#!/usr/bin/env bash
# bench/schemas.sh - what do schema validation and record transformation cost a producer?
# (issue 13)
#
# Two `weir proxy` (release build) in front of the test cluster `main` (started if needed):
# `bare` with no event policy at all, `rules` with a JSON Schema rule on one topic
# (`checked`), a transform adding three lineage headers on another (`lineage`), and none on a
# third (`plain`). A registry (scripts/registry.sh) holds the schema. Kafka's
# ProducerPerformance sends the same RECORDS records to each of
#
#   bare/plain     the sidecar as it is without the features
#   rules/plain    a topic no rule covers, through a sidecar whose rules cover others
#   rules/checked  every record judged against the JSON Schema
#   rules/lineage  every batch rewritten with three headers more per record
#
# in rotating order for ROUNDS rounds. Records are ~1 KiB JSON documents in the registry wire
# format (magic byte, schema id), each valid against the schema, 1,000 different ones taken
# at random (ProducerPerformance --payload-file). acks=1, linger.ms=5, batch.size 16 KiB, no
# compression, 6 partitions, replication factor 1.
#
# Prints per run the producer's MB/s and the sidecar's CPU time per record (utime+stime from
# /proc), then medians, the ratios to bare/plain (issue 13's target: rules/checked >= 0.80)
# and each policy's CPU cost per record (rules/checked or rules/lineage minus rules/plain).
#
#   bench/schemas.sh      ROUNDS=3 RECORDS=500000 [WEIR=PATH]
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
scripts/registry.sh start >&2
REGISTRY=$(scripts/registry.sh url)
BOOTSTRAP=$("$KAFKA" bootstrap --mesh)
bootstrap_yaml=$(sed 's/[^,]*/"&"/g' <<< "$BOOTSTRAP")

dir=$(mktemp -d /tmp/weir-bench-schemas.XXXXXX)
plain=schema-bench-plain-$$ checked=schema-bench-checked-$$ lineage=schema-bench-lineage-$$
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  for t in "$plain" "$checked" "$lineage"; do
    "$KAFKA" run org.apache.kafka.tools.TopicCommand --bootstrap-server "${BOOTSTRAP%%,*}" --delete --topic "$t" >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT

# The schema: bench/order-schema.json (weir-schema's judge_cost example judges by it too).
schema=$(<"$ROOT/bench/order-schema.json")
body=$(python3 -c 'import json, sys; print(json.dumps({"schemaType": "JSON", "schema": sys.argv[1]}))' "$schema")
id=$(curl -fsS -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' -d "$body" \
  "$REGISTRY/subjects/$checked-value/versions" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
# The id's bytes go into a text payload file: each must be ASCII and not a line break.
python3 - "$id" "$dir/payloads" <<'PYEOF'
import json, random, sys
schema_id, out = int(sys.argv[1]), sys.argv[2]
head = bytes([0]) + schema_id.to_bytes(4, "big")
if any(b >= 0x80 or b in (10, 13) for b in head):
    sys.exit(f"schema id {schema_id} has a byte a text payload file cannot hold; restart the registry")
rng = random.Random(13)
with open(out, "wb") as f:
    for i in range(1000):
        doc = {"id": i + 1, "customer": f"customer-{rng.randrange(10**6)}", "status": rng.choice(["NEW", "PAID", "SHIPPED"]),
               "lines": [{"sku": f"sku-{rng.randrange(10**5)}", "qty": rng.randrange(1, 9), "price": round(rng.random() * 100, 2)}
                         for _ in range(rng.randrange(2, 6))], "note": ""}
        text = json.dumps(doc, separators=(",", ":"))
        doc["note"] = "n" * max(0, 1024 - 5 - len(text))
        f.write(head + json.dumps(doc, separators=(",", ":")).encode() + b"\n")
PYEOF

start_sidecar() {  # start_sidecar NAME PORT EXTRA_YAML: starts one, waits until ready
  local name=$1 port=$2
  cat > "$dir/$name.yaml" <<EOF
listen: 127.0.0.1:$port
admin: 127.0.0.1:$((port + 99))
bootstrap: [$bootstrap_yaml]
broker_ports: {base: $((port + 1)), count: 10}
upstream:
  resolve: {"*.weir.invalid": 127.0.0.1}
log: {level: warn}
$3
EOF
  "$WEIR" proxy --config "$dir/$name.yaml" > "$dir/$name.log" 2>&1 &
  pids+=($!)
  eval "${name}_pid=$!"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((port + 99))/readyz" >/dev/null && return; sleep 0.1; done
  echo "sidecar $name did not get ready: $(tail -5 "$dir/$name.log")" >&2; exit 1
}
start_sidecar bare 26300 ""
start_sidecar rules 26400 "schema_registry: {url: '$REGISTRY'}
schema_validation:
  - {name: orders, topics: ['$checked'], value: json_schema}
transforms:
  - {name: lineage, topics: ['$lineage'], produce: {add_headers: {weir-producer: '{principal}', weir-client: '{client_id}', weir-at: '{time}'}}}"

for t in "$plain" "$checked" "$lineage"; do
  "$KAFKA" run org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:26300 --create --topic "$t" \
    --partitions 6 --replication-factor 1 >/dev/null 2>&1
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime+stime, clock ticks
tick=$(getconf CLK_TCK)

run() {  # run CONFIG TOPIC: one producer run; appends "config topic MB/s us-per-record" to results
  local config=$1 topic=$2 port pid before after out=$dir/run.out
  if [[ $config == bare ]]; then port=26300 pid=$bare_pid; else port=26400 pid=$rules_pid; fi
  sync
  before=$(cpu "$pid")
  "$KAFKA" run org.apache.kafka.tools.ProducerPerformance --bootstrap-server "127.0.0.1:$port" --topic "$topic" \
    --num-records "$RECORDS" --payload-file "$dir/payloads" --throughput -1 \
    --command-property acks=1 linger.ms=5 > "$out" 2>&1
  after=$(cpu "$pid")
  local mbs; mbs=$(grep 'records sent' "$out" | tail -1 | sed 's/.*records\/sec (\([0-9.]*\) MB\/sec).*/\1/')
  local failed; failed=$(grep -ci 'exception' "$out" || true)
  [[ $failed == 0 ]] || { echo "$config/$topic: the producer saw errors:"; grep -i exception "$out" | head -3; exit 1; }
  local us; us=$(awk -v a="$after" -v b="$before" -v t="$tick" -v n="$RECORDS" 'BEGIN {printf "%.2f", (a - b) / t / n * 1e6}')
  echo "$config ${topic%%-$$} $mbs $us" | sed 's/schema-bench-//' >> "$dir/results"
  echo "  $config/${topic#schema-bench-}: $mbs MB/s, sidecar CPU $us us/record"
}

echo "schema validation: $RECORDS records of ~1 KiB per run, $ROUNDS rounds, $(nproc) cores, $(date -u +%FT%TZ)"
# Warm-up, unmeasured: JIT of broker and tools, the registry lookup, page cache.
run bare "$plain" >/dev/null; run rules "$checked" >/dev/null; : > "$dir/results"
configs=("bare $plain" "rules $plain" "rules $checked" "rules $lineage")
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  for k in 0 1 2 3; do
    run ${configs[$(((k + round) % 4))]}
  done
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
stat() { awk -v c="$1" -v t="$2" -v f="$3" '$1 == c && $2 == t {print $f}' "$dir/results" | median; }
base=$(stat bare plain 3)
for pair in "bare plain" "rules plain" "rules checked" "rules lineage"; do
  set -- $pair
  mbs=$(stat "$1" "$2" 3) us=$(stat "$1" "$2" 4)
  printf '%-14s %8.1f MB/s  %.3f of bare/plain  sidecar CPU %6.2f us/record\n' "$1/$2" "$mbs" \
    "$(awk -v a="$mbs" -v b="$base" 'BEGIN {print a / b}')" "$us"
done
printf 'validation cost: %.2f us of sidecar CPU per record (rules/checked - rules/plain)\n' \
  "$(awk -v a="$(stat rules checked 4)" -v b="$(stat rules plain 4)" 'BEGIN {print a - b}')"
printf 'transformation cost: %.2f us of sidecar CPU per record (rules/lineage - rules/plain)\n' \
  "$(awk -v a="$(stat rules lineage 4)" -v b="$(stat rules plain 4)" 'BEGIN {print a - b}')"
echo "records judged valid: $(curl -s http://127.0.0.1:26499/metrics | awk '$1 ~ /^weir_kafka_schema_records_total[{].*verdict="valid"/ {print $2}')"
