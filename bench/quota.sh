#!/usr/bin/env bash
# bench/quota.sh - do quotas hold their rate with real clients? (issue 12)
#
# One `weir proxy` (release build) in front of the test cluster `main` (started if needed,
# 3 brokers), with one quota rule: client ids `limited-producer` and `limited-consumer` may
# produce and fetch RATE bytes/s each (default 5000000). Then, for SECONDS each (default 30):
#
#   1. Kafka's ProducerPerformance as `limited-producer`, unthrottled by itself (--throughput -1)
#   2. Kafka's ConsumerPerformance as `limited-consumer`, reading what 1 wrote
#   3. ProducerPerformance as `free-producer` (no quota) for the same number of records,
#      beside a producer the quota holds to RATE, and beside one that holds itself to RATE:
#      does the quota slow the unlimited client?
#
# The achieved rate is the sidecar's own count of Produce request / Fetch response bytes (what
# the quota meters, as Kafka's quotas meter request and response sizes), sampled every 0.5 s
# and taken from the first sample that moved to the last one that moved (JVM start-up and the
# tail excluded), printed as a ratio to RATE; the Java producer's produce-throttle-time-avg
# too. The unlimited producer's rate is ProducerPerformance's own.
#
#   bench/quota.sh            RATE=5000000 SHARE=0.2 SECONDS_PER_RUN=30 [WEIR=PATH] [ONLY=requests]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RATE=${RATE:-5000000}
SHARE=${SHARE:-0.2}
SECS=${SECONDS_PER_RUN:-30}
RECORD=1024
KAFKA=$ROOT/scripts/kafka.sh
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# WEIR=PATH measures that binary instead of building one.
[[ -n ${WEIR:-} ]] || cargo build --release -p weir --bin weir >&2
WEIR=${WEIR:-$TARGET/release/weir}
"$KAFKA" status >/dev/null 2>&1 || "$KAFKA" start --brokers 3 >&2
BOOTSTRAP=$("$KAFKA" bootstrap --mesh)

dir=$(mktemp -d /tmp/weir-bench-quota.XXXXXX)
listen=127.0.0.1:26100 admin=127.0.0.1:26199
bootstrap_yaml=$(sed 's/[^,]*/"&"/g' <<< "$BOOTSTRAP")
cat > "$dir/weir.yaml" <<EOF
listen: $listen
admin: $admin
bootstrap: [$bootstrap_yaml]
broker_ports: {base: 26101, count: 10}
upstream:
  resolve: {"*.weir.invalid": 127.0.0.1}
log: {level: warn}
quotas:
  - name: bench
    principals: ["*"]
    client_ids: [limited-producer, limited-consumer]
    produce_bytes_per_second: $RATE
    fetch_bytes_per_second: $RATE
  - name: bench-requests
    principals: ["*"]
    client_ids: [limited-requester]
    request_percentage: $SHARE
EOF
"$WEIR" proxy --config "$dir/weir.yaml" > "$dir/weir.log" 2>&1 &
weir=$!
trap 'kill $weir 2>/dev/null; wait $weir 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "http://$admin/readyz" >/dev/null && break; sleep 0.1; done

counter() {  # counter NAME API: a counter of the sidecar's /metrics, for one api
  labelled "$1" "api=\"$2\""
}
labelled() {  # labelled NAME LABEL: a metric of the sidecar's /metrics whose labels hold LABEL
  curl -s "http://$admin/metrics" | awk -v n="$1" -v a="$2" '$1 ~ "^"n"[{]" && index($1, a) {print $2; f=1} END {if (!f) print 0}'
}
now() { date +%s.%N; }
topic=quota-bench-$$
"$KAFKA" run org.apache.kafka.tools.TopicCommand --bootstrap-server "$listen" --create --topic "$topic" \
  --partitions 6 --replication-factor 3 >/dev/null 2>&1
records=$((RATE * SECS / RECORD))
perf_producer() {  # perf_producer CLIENT_ID RECORDS OUT
  "$KAFKA" run org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$listen" --topic "$topic" \
    --num-records "$2" --record-size "$RECORD" --throughput -1 --print-metrics \
    --command-property acks=all linger.ms=5 client.id="$1" > "$3" 2>/dev/null
}
ratio() { awk -v b="$1" -v t="$2" -v r="$RATE" 'BEGIN {printf "%.0f B/s = %.3f of the quota", b / t, b / t / r}'; }

sampler() {  # sampler NAME LABEL FILE: "seconds value" every 0.5 s until killed
  while :; do echo "$(now) $(labelled "$1" "$2")" >> "$3"; sleep 0.5; done
}
steady() {  # steady FILE: bytes/s between the first and the last sample that moved
  awk 'NR == 1 {b0 = $2} {t[NR] = $1; b[NR] = $2}
       END {
         for (i = 2; i <= NR; i++) if (b[i] > b[i-1]) { if (!first) first = i - 1; last = i }
         if (!first) { print 0; exit }
         printf "%.6f %.1f\n", (b[last] - b[first]) / (t[last] - t[first]), t[last] - t[first]
       }' "$1"
}
phase() {  # phase NAME API -- COMMAND...: runs COMMAND while sampling; prints "rate seconds"
  local name=$1 api=$2; shift 3
  labelled_phase "$name" "api=\"$api\"" -- "$@"
}
labelled_phase() {  # labelled_phase NAME LABEL -- COMMAND...: as phase, for any label
  local name=$1 label=$2; shift 3
  sampler "$name" "$label" "$dir/samples" & local s=$!
  "$@"
  kill "$s"; wait "$s" 2>/dev/null || true
  steady "$dir/samples"; rm -f "$dir/samples"
}
of_quota() { awk -v b="$1" -v r="$RATE" 'BEGIN {printf "%.0f B/s = %.3f of the quota", b, b / r}'; }

if [[ ${ONLY:-} != requests ]]; then
echo "quota $RATE B/s per client id; $records records of $RECORD B (~${SECS} s at the quota); $(nproc) cores, $(date -u +%FT%TZ)"
read -r rate secs < <(phase weir_kafka_request_bytes_total Produce -- perf_producer limited-producer "$records" "$dir/produce.out")
echo "limited producer: Produce request bytes over ${secs} s: $(of_quota "$rate")"
echo "  its produce-throttle-time-avg: $(awk '$1 ~ /producer-metrics:produce-throttle-time-avg/ {print $NF " ms"}' "$dir/produce.out")"

perf_consumer() {
  "$KAFKA" run org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$listen" --topic "$topic" \
    --num-records "$records" --group "quota-bench-$$" --timeout 60000 --hide-header \
    --command-property client.id=limited-consumer > "$dir/consume.out" 2>/dev/null
}
read -r rate secs < <(phase weir_kafka_response_bytes_total Fetch -- perf_consumer)
echo "limited consumer: Fetch response bytes over ${secs} s: $(of_quota "$rate")"

# Beside a producer held to RATE by the sidecar's quota, and beside one that holds itself to
# RATE (ProducerPerformance --throughput, a client id no quota names): the same load on the
# machine, so the difference is what the quota machinery costs the unlimited client.
beside() {  # beside CLIENT_ID THROUGHPUT OUT: the free producer's MB/s beside CLIENT_ID
  "$KAFKA" run org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$listen" --topic "$topic" \
    --num-records $((records * 4)) --record-size "$RECORD" --throughput "$2" \
    --command-property acks=all linger.ms=5 client.id="$1" > /dev/null 2>&1 &
  local other=$!
  sleep 5
  perf_producer free-producer "$records" "$3"
  pkill -f "client.id=$1" 2>/dev/null || true; wait "$other" 2>/dev/null || true
  grep 'records sent' "$3" | tail -1 | sed 's/.*records\/sec (\([0-9.]*\) MB\/sec).*/\1/'
}
self_held=$(beside self-held-producer $((RATE / RECORD)) "$dir/free-self.out")
quota_held=$(beside limited-producer -1 "$dir/free-quota.out")
echo "unlimited producer ($records records): beside a producer held to the rate by itself $self_held MB/s," \
  "beside one held by the quota $quota_held MB/s ($(awk -v a="$self_held" -v b="$quota_held" 'BEGIN {printf "%.2f", b / a}'))"
echo "throttled responses: Produce $(counter weir_kafka_throttled_responses_total Produce), Fetch $(counter weir_kafka_throttled_responses_total Fetch)"
fi

requester() {  # requester CLIENT_ID: one 10-byte record per request for SECONDS
  timeout "$SECS" "$KAFKA" run org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$listen" \
    --topic "$topic" --num-records 100000000 --record-size 10 --throughput -1 \
    --command-property acks=1 linger.ms=0 max.in.flight.requests.per.connection=1 client.id="$1" \
    > /dev/null 2>&1 || true
}
share() { awk -v s="$1" -v q="$SHARE" 'BEGIN {printf "%.2f %% of a thread = %.3f of the %s %% share", s * 100, s * 100 / q, q}'; }
read -r free secs < <(labelled_phase weir_kafka_proxy_latency_seconds_sum 'api="Produce"' -- requester free-requester)
echo "request quota: an unlimited one-request-at-a-time producer took $(share "$free") over ${secs} s"
read -r held secs < <(labelled_phase weir_kafka_quota_request_seconds_total 'quota="bench-requests"' -- requester limited-requester)
echo "request quota: the same producer under the quota took $(share "$held") over ${secs} s;" \
  "throttled: $(labelled weir_kafka_quota_throttled_requests_total 'quota="bench-requests"')"
