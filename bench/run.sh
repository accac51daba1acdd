#!/usr/bin/env bash
# bench/run.sh - what does the Weir sidecar cost? Runs one workload against Kafka directly,
# through a zero-work TCP relay (HAProxy) and through `weir proxy`, alternating (direct, relay,
# proxy, direct, ...) for N rounds in a single run, then prints medians, the sidecar's ratios to
# direct and to the relay, and the targets beside them.
#
#   bench/run.sh [--quick] [--rounds N] [--brokers N] [--records N] [--record-size BYTES]
#                [--acks 0|1|all] [--batch-size BYTES] [--latency-rate R] [--latency-seconds S]
#                [--secure [--direct-tls] | --policies [--safeguards]] [--no-relay] [--latency-only]
#                [--no-build]
#
#   default: 3 rounds, 1 broker, 1,000,000 records of 1 KiB, latency 30 s at 1000 records/s
#   --quick: 1 round, 200,000 records, latency 10 s (a smoke test, about 2 minutes)
#   --latency-only: only the latency runs, so that many rounds fit in a run and no throughput
#      run (and its disk write-back) lands between two latency runs; e.g. --latency-only
#      --rounds 9 --latency-rate 5000 --latency-seconds 20 takes about 15 minutes.
#   --secure: the sidecar terminates mTLS (client certificates from the cluster's test CA)
#      and enforces a 100-rule authorization policy; proxied clients speak TLS to it, direct
#      ones plaintext to the broker, so the ratios price TLS and authorization together.
#      Target: >= 0.85 of direct throughput.
#   --policies: plaintext, but the sidecar enforces the same 100-rule policy on a fixed
#      principal and meters every client under a quota rule too high to throttle, so the
#      ratios price the filter chain's policies alone (issue 12's target: >= 0.95 of the run
#      without them).
#   --safeguards: with --policies, also a produce safeguard on every topic that every batch
#      passes (compression any codec, batch size under 100 MB), so that each Produce request
#      is read for its batch headers: the price of issue 13's safeguards on a guarded topic.
#   --direct-tls: with --secure, direct clients use the brokers' own mTLS listener (TLSDIRECT)
#      with the same client certificate, so the ratios price the sidecar over Kafka's TLS.
#   --acks, --batch-size: the producers' acks (default 1; the latency producer too) and
#      batch.size (default Kafka's, 16 KiB). The comparison with other proxies (issue 10) uses
#      --acks all --batch-size 65536 --records 2000000 --latency-rate 5000.
#   relay (always, unless --no-relay): HAProxy in TCP mode, one frontend per broker, the
#      proxy anyone can install (Debian's haproxy; the script installs it with apt-get when it
#      is missing and it runs as root). It does no work beyond the hop, so the sidecar's ratio
#      to it is what the sidecar costs beyond being a proxy at all. It relays plaintext to the
#      brokers' RELAY listener (advertised at the relay's ports), also in --secure runs.
#
# WHAT. Each mode (direct / relay / proxy, in an order that rotates between rounds) of each
# round runs, on fresh 6-partition topics:
#   1. producer throughput: Kafka's ProducerPerformance, RECORDS records of RECORD_SIZE bytes,
#      unthrottled, acks=1 (--acks), linger.ms=5, batch.size Kafka's 16 KiB (--batch-size), no
#      compression.
#   2. consumer throughput: Kafka's ConsumerPerformance reading exactly those records back.
#      Reported rates are its fetch.* columns, i.e. without the group-join time.
#   3. end-to-end latency: bench/BenchTool.java `latency`, an open-loop producer at a FIXED
#      rate (default 1000 records/s of RECORD_SIZE bytes, acks as above, linger.ms=0) and a consumer
#      in the same JVM; latency = consumer receipt - producer send (same clock), i.e. real
#      produce->broker->consume latency. The first warm-up seconds are not counted.
# Direct runs bootstrap from the brokers' PLAINTEXT listener; proxied runs from the sidecar,
# which reaches the brokers' MESH listener (whose advertised names only it can resolve). One
# sidecar serves every proxied run.
#
# RESOURCES. Around every run the script reads CPU time (utime+stime, /proc/PID/stat) of the
# sidecar and the broker(s), and the whole machine's busy time (/proc/stat), and reports CPU
# seconds per GB (1e9 bytes) of record payload. "rest" is the machine's busy CPU minus the
# broker(s), the sidecar and the load generator (this script's reaped children, cutime+cstime):
# kernel threads (write-back, softirq) and any other process; if it is large, something else
# competed with the run. Sidecar memory: RSS once ready and idle (VmRSS), peak over the whole
# run (VmHWM, /proc/PID/status).
#
# FAIRNESS. Before round 1 an unmeasured warm-up produces and consumes max(2 x RECORDS, 1M)
# records directly and via the sidecar: a cold broker spends as much CPU in its JIT compiler
# as in serving, and on 2 CPUs it takes a few GB of traffic to settle. Between rounds the
# round's topics are deleted (at once: the script sets log.segment.delete.delay.ms=0 on the
# cluster instead of Kafka's 60 s, which would land in a later run) and `sync` runs before
# every producer run, so no run pays for an earlier one's file deletion or write-back.
#
# HOW. It builds target/release/weir when its sources are newer (skip with --no-build),
# starts its own Kafka cluster `bench` (base port 9492, scripts/kafka.sh) unless one is already
# running, and stops whatever it started on exit. Results go to stdout and to
# bench/results/latest.txt; raw tool output of every run to bench/results/<run id>/.
#
# Environment: WEIR_BENCH_BIN (a prebuilt weir binary to measure instead; implies
# --no-build), WEIR_BENCH_LISTEN (sidecar listen, default 127.0.0.1:29092; per-broker ports
# follow it), WEIR_BENCH_ADMIN (default 127.0.0.1:29901), WEIR_KAFKA_TOOL_OPTS (tool JVMs,
# default -Xmx1g), and scripts/kafka.sh's own variables.
#
# Everything shares the machine: broker(s), sidecar and the load-generating JVMs compete for
# the same cores, so on a small box these figures are relative (proxy vs direct under the
# same conditions), not what either would do with cores of its own.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA=$ROOT/scripts/kafka.sh
WEIR=${WEIR_BENCH_BIN:-$ROOT/target/release/weir}
CLUSTER=bench
BASE_PORT=9492

ROUNDS=3 BROKERS=1 RECORDS=1000000 RECORD_SIZE=1024 LAT_RATE=1000 LAT_SECONDS=30 LAT_WARMUP=5
QUICK=0 BUILD=1 SECURE=0 POLICIES=0 SAFEGUARDS=0 DIRECT_TLS=0 RELAY=1 ACKS=1 BATCH_SIZE="" LATENCY_ONLY=0
PARTITIONS=6
LISTEN=${WEIR_BENCH_LISTEN:-127.0.0.1:29092}
ADMIN=${WEIR_BENCH_ADMIN:-127.0.0.1:29901}
# Targets (printed beside the results).
T_RATIO=0.95 T_ADDED_P99_MS=0.5 T_IDLE_RSS_MB=20
# Against the relay (issue 10): throughput at least the relay's; p50 within +0.2 ms, p99 within
# +1 ms of the relay's.
T_RELAY_RATIO=1.0 T_RELAY_P50_MS=0.2 T_RELAY_P99_MS=1.0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
opt_rounds="" opt_records="" opt_lat_seconds=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1; shift ;;
    --rounds) opt_rounds=${2:?}; shift 2 ;;
    --brokers) BROKERS=${2:?}; shift 2 ;;
    --records) opt_records=${2:?}; shift 2 ;;
    --record-size) RECORD_SIZE=${2:?}; shift 2 ;;
    --latency-rate) LAT_RATE=${2:?}; shift 2 ;;
    --latency-seconds) opt_lat_seconds=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --secure) SECURE=1; T_RATIO=0.85; shift ;;
    --policies) POLICIES=1; shift ;;
    --safeguards) SAFEGUARDS=1; shift ;;
    --direct-tls) DIRECT_TLS=1; shift ;;
    --no-relay) RELAY=0; shift ;;
    --latency-only) LATENCY_ONLY=1; shift ;;
    --acks) ACKS=${2:?}; shift 2 ;;
    --batch-size) BATCH_SIZE=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown option $1" >&2; usage ;;
  esac
done
if ((QUICK)); then ROUNDS=1 RECORDS=200000 LAT_SECONDS=10 LAT_WARMUP=3; fi
ROUNDS=${opt_rounds:-$ROUNDS} RECORDS=${opt_records:-$RECORDS} LAT_SECONDS=${opt_lat_seconds:-$LAT_SECONDS}
for v in ROUNDS BROKERS RECORDS RECORD_SIZE LAT_RATE LAT_SECONDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: $v must be a positive integer" >&2; exit 2; }
done
((BROKERS <= 9)) || { echo "run.sh: --brokers must be 1..9" >&2; exit 2; }
[[ $ACKS == 0 || $ACKS == 1 || $ACKS == all || $ACKS == -1 ]] || { echo "run.sh: --acks takes 0, 1 or all" >&2; exit 2; }
[[ -z $BATCH_SIZE || $BATCH_SIZE =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --batch-size must be a positive integer" >&2; exit 2; }
MODES=(direct proxy)
((RELAY)) && MODES=(direct relay proxy)
PRODUCER_PROPS=("acks=$ACKS" "linger.ms=5")
[[ -n $BATCH_SIZE ]] && PRODUCER_PROPS+=("batch.size=$BATCH_SIZE")
RF=$((BROKERS < 3 ? BROKERS : 3))

RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"
# One benchmark at a time on this machine: two would share the cluster, the ports and the CPUs.
# (fd 8 is closed for the long-lived processes started below, so they never hold the lock.)
exec 8> "$RESULTS/.lock"
flock -n 8 || { echo "run.sh: another bench/run.sh is running (lock $RESULTS/.lock)" >&2; exit 1; }
RUN_ID=$(date +%Y%m%d-%H%M%S)
RUN_DIR=$RESULTS/$RUN_ID
mkdir -p "$RUN_DIR"
DATA=$RUN_DIR/data.tsv   # round mode key value
: > "$DATA"
T_START=$SECONDS

log() { printf '%s run.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$DATA"; }

# ------------------------------------------------------------------ process accounting
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {  # cpu_ticks PID... : utime+stime in clock ticks, summed
  local pid stat f total=0
  for pid in "$@"; do
    stat=$(< "/proc/$pid/stat") || return 1
    read -r -a f <<< "${stat##*) }"  # after "(comm) " comes field 3; utime is 14, stime 15
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
child_ticks() {  # CPU ticks of this script's finished children (the load generators): cutime+cstime
  local stat f
  stat=$(< "/proc/$$/stat")
  read -r -a f <<< "${stat##*) }"
  echo $((f[13] + f[14]))
}
weir_counts() {  # "requests fetch_responses fetch_response_bytes" so far, from the sidecar's /metrics
  curl -fsS "http://$ADMIN/metrics" 2>/dev/null | awk '
    /^weir_kafka_requests_total\{/ {r += $2}
    /^weir_kafka_responses_total\{api="Fetch"\}/ {fc = $2}
    /^weir_kafka_response_bytes_total\{api="Fetch"\}/ {fb = $2}
    END {printf "%.0f %.0f %.0f\n", r, fc, fb}'
}
machine_ticks() {  # "busy total" clock ticks of all CPUs, from /proc/stat
  local _ user nice system idle iowait irq softirq steal
  read -r _ user nice system idle iowait irq softirq steal _ < /proc/stat
  echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + irq + softirq + steal + idle + iowait))"
}
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }  # status_kb PID VmRSS

# ------------------------------------------------------------------ cleanup
WEIR_PID="" RELAY_PID="" STARTED_CLUSTER=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $RELAY_PID ]] && kill "$RELAY_PID" 2>/dev/null
  if [[ -n $WEIR_PID ]] && kill -0 "$WEIR_PID" 2>/dev/null; then
    log "stopping the sidecar (pid $WEIR_PID)"
    kill -TERM "$WEIR_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$WEIR_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$WEIR_PID" 2>/dev/null || true
  fi
  if ((STARTED_CLUSTER)); then
    log "stopping Kafka cluster $CLUSTER"
    "$KAFKA" stop --cluster "$CLUSTER" >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (: <>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# ------------------------------------------------------------------ build
[[ -n ${WEIR_BENCH_BIN:-} ]] && BUILD=0
if ((BUILD)); then
  if [[ ! -x $WEIR ]] || [[ -n $(find "$ROOT/crates" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$WEIR" \
      \( -path '*/src/*.rs' -o -name 'Cargo.toml' -o -name 'Cargo.lock' \) -print -quit) ]]; then
    log "building the release binary (cargo build --release -p weir)"
    (cd "$ROOT" && cargo build --release -p weir) >&2
  fi
fi
[[ -x $WEIR ]] || die "$WEIR is missing (run without --no-build)"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]] && COMMIT+=" + uncommitted changes in crates/"

# ------------------------------------------------------------------ cluster
if "$KAFKA" status --cluster "$CLUSTER" >/dev/null 2>&1; then
  log "Kafka cluster $CLUSTER is already running; using it (and leaving it running)"
  BROKERS=$(sed -n 's/^BROKERS=//p' "${WEIR_KAFKA_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/kafka}/$CLUSTER/cluster.env")
  RF=$((BROKERS < 3 ? BROKERS : 3))
else
  log "starting Kafka cluster $CLUSTER ($BROKERS broker(s), base port $BASE_PORT)"
  STARTED_CLUSTER=1
  "$KAFKA" start --cluster "$CLUSTER" --brokers "$BROKERS" --base-port "$BASE_PORT" >&2 8>&-
fi
DIRECT_BOOTSTRAP=$("$KAFKA" bootstrap --cluster "$CLUSTER")
mesh=()
for ((i = 1; i <= BROKERS; i++)); do mesh+=("\"127.0.0.1:$((BASE_PORT + 10 * (i - 1) + 1))\""); done
mapfile -t BROKER_PIDS < <("$KAFKA" status --cluster "$CLUSTER" | sed -n 's/.* pid=\([0-9]*\) .*/\1/p')
((${#BROKER_PIDS[@]} == BROKERS)) || die "could not find the broker pids"

CP=$("$KAFKA" classpath)
JAVA=${WEIR_KAFKA_JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/}java}
JAVAC=${JAVA%java}javac
TOOL_OPTS=${WEIR_KAFKA_TOOL_OPTS:--Xmx1g}
mkdir -p "$RUN_DIR/classes"
"$JAVAC" -nowarn -cp "$CP" -d "$RUN_DIR/classes" "$ROOT/bench/BenchTool.java" >&2 || die "cannot compile bench/BenchTool.java"
bench_tool() {  # BenchTool on the Kafka classpath (quiet Kafka logging)
  # shellcheck disable=SC2086
  "$JAVA" $TOOL_OPTS ${TOOL_EXTRA:-} -cp "$RUN_DIR/classes:$CP" -Dlog4j2.configurationFile="$ROOT/kafka/log4j2-tools.properties" BenchTool "$@"
}

# Fresh topics for every run: the consumer reads exactly what its producer wrote.
topic() { echo "bench-$RUN_ID-r$1-$2-$3"; }  # topic ROUND MODE tp|lat
all_topics=("$(topic 0 warm tp)")
for ((r = 1; r <= ROUNDS; r++)); do
  for m in "${MODES[@]}"; do all_topics+=("$(topic "$r" "$m" tp)" "$(topic "$r" "$m" lat)"); done
done
log "creating ${#all_topics[@]} topics ($PARTITIONS partitions, replication $RF)"
bench_tool create-topics "$DIRECT_BOOTSTRAP" "$PARTITIONS" "$RF" "${all_topics[@]}"
# Brokers delete a deleted topic's files 60 s later by default, which would land in the middle
# of a later measured run (and bill its CPU and I/O to it); make them delete at once instead.
bench_tool set-broker-default "$DIRECT_BOOTSTRAP" log.segment.delete.delay.ms=0
KAFKA_DATA_DIRS=("${WEIR_KAFKA_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/kafka}/$CLUSTER"/node-*/data)
# drop_topics TOPIC... : delete them and wait until their files are gone, then flush the disk.
drop_topics() {
  bench_tool delete-topics "$DIRECT_BOOTSTRAP" "$@" || { log "warning: could not delete topics $*"; return 0; }
  local t0=$SECONDS t left
  while :; do
    left=""
    for t in "$@"; do  # partition dirs are TOPIC-N, renamed TOPIC-N.UUID-delete until removed
      # (find fails when a directory vanishes under it, which is what is being waited for.)
      left+=$(find "${KAFKA_DATA_DIRS[@]}" -maxdepth 1 -name "$t-*" -print -quit 2>/dev/null || true)
    done
    [[ -z $left ]] && break
    ((SECONDS - t0 < 60)) || { log "warning: files of deleted topics still there after 60s: $left"; break; }
    sleep 0.5
  done
  sync
}

# ------------------------------------------------------------------ sidecar
for a in "$LISTEN" "$ADMIN"; do port_open "$a" && die "$a is already in use"; done
LISTEN_HOST=${LISTEN%:*} LISTEN_PORT=${LISTEN##*:}
cat > "$RUN_DIR/weir.yaml" <<EOF
# Written by bench/run.sh
listen: $LISTEN
bootstrap: [$(IFS=,; echo "${mesh[*]}")]
admin: $ADMIN
broker_ports: {base: $((LISTEN_PORT + 1)), count: 10}
upstream:
  resolve: {"*.weir.invalid": 127.0.0.1}
log: {format: text, level: warn}
EOF
# Client settings for the proxied runs; empty unless --secure.
PROXY_CLIENT_CONFIG=$RUN_DIR/proxy-client.properties
: > "$PROXY_CLIENT_CONFIG"
# write_policy PRINCIPAL: 100 rules, 97 for other teams' principals and topics, 3 that grant
# this benchmark's client (PRINCIPAL, a pattern) its topics and groups.
write_policy() {
  {
    echo "rules:"
    for ((i = 1; i <= 97; i++)); do
      printf -- "- {effect: allow, principals: ['spiffe://weir.bench/ns/team-%d/*'], resources: ['topic:team-%d.*', 'group:team-%d-*'], operations: [read, write]}\n" "$i" "$i" "$i"
    done
    echo "- {effect: allow, principals: ['$1'], resources: ['topic:bench-*'], operations: [read, write, describe]}"
    echo "- {effect: allow, principals: ['$1'], resources: ['group:bench-*'], operations: [read, describe]}"
    echo "- {effect: deny, principals: ['*'], resources: ['topic:*.pii'], operations: [all]}"
  } > "$RUN_DIR/policy.yaml"
}
((SECURE && POLICIES)) && die "--secure already enforces the policy; --policies is its plaintext form"
if ((POLICIES)); then
  write_policy bench-client
  # 10 GB/s each way: metered on every request, never reached here.
  cat >> "$RUN_DIR/weir.yaml" <<EOF
fixed_principal: bench-client
authorization: {policy: $RUN_DIR/policy.yaml}
quotas:
  - {name: bench, principals: ['*'], produce_bytes_per_second: 10000000000, fetch_bytes_per_second: 10000000000}
EOF
  if ((SAFEGUARDS)); then
    cat >> "$RUN_DIR/weir.yaml" <<EOF
produce_safeguards:
  - {name: bench, topics: ['*'], compression: [none, gzip, snappy, lz4, zstd], max_batch_bytes: 100000000}
EOF
  fi
fi
if ((SAFEGUARDS && !POLICIES)); then die "--safeguards goes with --policies"; fi
if ((SECURE)); then
  PKI=${WEIR_KAFKA_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/kafka}/$CLUSTER/tls
  [[ -f $PKI/ca.pem && -f $PKI/client.pem ]] || die "no test PKI in $PKI (made by scripts/kafka.sh start)"
  # The client's principal: the first DNS name of the cluster's client certificate.
  write_policy "*.$CLUSTER.weir.invalid"
  cat >> "$RUN_DIR/weir.yaml" <<EOF
tls: {cert: $PKI/broker.crt, key: $PKI/broker.key, client_ca: $PKI/ca.pem}
authorization: {policy: $RUN_DIR/policy.yaml}
EOF
  cat > "$PROXY_CLIENT_CONFIG" <<EOF
security.protocol=SSL
ssl.truststore.type=PEM
ssl.truststore.location=$PKI/ca.pem
ssl.keystore.type=PEM
ssl.keystore.location=$PKI/client.pem
EOF
fi
# Where direct runs bootstrap (admin operations always use the plaintext listener).
DIRECT_RUN_BOOTSTRAP=$DIRECT_BOOTSTRAP
# client_config MODE: the tools' option for that mode's client settings.
client_config() {
  if [[ -s $PROXY_CLIENT_CONFIG && ($1 == proxy || ($1 == direct && $DIRECT_TLS == 1)) ]]; then echo "--command-config $PROXY_CLIENT_CONFIG"; fi
}
if ((DIRECT_TLS)); then
  ((SECURE)) || die "--direct-tls needs --secure"
  tls_direct=()
  for ((i = 1; i <= BROKERS; i++)); do tls_direct+=("127.0.0.1:$((BASE_PORT + 10 * (i - 1) + 5))"); done
  DIRECT_RUN_BOOTSTRAP=$(IFS=,; echo "${tls_direct[*]}")
fi
RELAY_BOOTSTRAP=""
if ((RELAY)); then
  if ! command -v haproxy >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      log "installing haproxy (Debian) for the relay runs"
      { apt-get install -y -qq haproxy || { apt-get update -qq && apt-get install -y -qq haproxy; }; } >&2 ||
        die "could not install haproxy; run with --no-relay to skip the relay"
    else
      die "the relay runs need haproxy (apt-get install haproxy), or run with --no-relay"
    fi
  fi
  relayed=()
  {
    echo "# Written by bench/run.sh: a zero-work TCP relay, one frontend per broker."
    echo "global"
    echo "  maxconn 4096"
    echo "defaults"
    echo "  mode tcp"
    echo "  timeout connect 5s"
    echo "  timeout client 1h"
    echo "  timeout server 1h"
    for ((i = 1; i <= BROKERS; i++)); do
      echo "listen broker-$i"
      echo "  bind 127.0.0.1:$((BASE_PORT + 10 * (i - 1) + 8))"
      echo "  server broker-$i 127.0.0.1:$((BASE_PORT + 10 * (i - 1) + 7))"
      relayed+=("127.0.0.1:$((BASE_PORT + 10 * (i - 1) + 8))")
    done
  } > "$RUN_DIR/haproxy.cfg"
  haproxy -db -f "$RUN_DIR/haproxy.cfg" > "$RUN_DIR/haproxy.log" 2>&1 8>&- &
  RELAY_PID=$!
  t0=$SECONDS
  until port_open "${relayed[0]}"; do
    kill -0 "$RELAY_PID" 2>/dev/null || { cat "$RUN_DIR/haproxy.log" >&2; die "haproxy exited"; }
    ((SECONDS - t0 < 10)) || die "haproxy was not listening after 10s"
    sleep 0.1
  done
  RELAY_BOOTSTRAP=$(IFS=,; echo "${relayed[*]}")
  log "relay runs go through $(haproxy -v | head -n 1 | cut -d' ' -f1-3) (pid $RELAY_PID)"
fi
for ((i = 0; i < 10; i++)); do port_open "$LISTEN_HOST:$((LISTEN_PORT + 1 + i))" && die "port $((LISTEN_PORT + 1 + i)) is in use"; done
"$WEIR" proxy --config "$RUN_DIR/weir.yaml" > "$RUN_DIR/weir.log" 2>&1 8>&- &
WEIR_PID=$!
t0=$SECONDS
until curl -fsS -o /dev/null "http://$ADMIN/readyz" 2>/dev/null; do
  kill -0 "$WEIR_PID" 2>/dev/null || { cat "$RUN_DIR/weir.log" >&2; die "the sidecar exited"; }
  ((SECONDS - t0 < 30)) || die "the sidecar was not ready after 30s"
  sleep 0.1
done
sleep 1
IDLE_RSS_KB=$(status_kb "$WEIR_PID" VmRSS)
log "sidecar ready (pid $WEIR_PID), idle RSS $((IDLE_RSS_KB * 1024 / 1000000)) MB"
PROXY_BOOTSTRAP=$LISTEN
bootstrap_of() {  # bootstrap_of MODE
  case $1 in direct) echo "$DIRECT_RUN_BOOTSTRAP" ;; relay) echo "$RELAY_BOOTSTRAP" ;; proxy) echo "$PROXY_BOOTSTRAP" ;; esac
}

# ------------------------------------------------------------------ one run of each phase
PAYLOAD_GB=$(awk -v n="$RECORDS" -v s="$RECORD_SIZE" 'BEGIN {printf "%.6f", n * s / 1e9}')
LOADS=()
# phase ROUND MODE NAME COMMAND... : runs COMMAND with its output in the run dir and measures
# the sidecar's, the brokers' and the whole machine's CPU ticks around it; sets PHASE_OUT,
# PHASE_WALL, PHASE_WEIR_S, PHASE_BROKER_S, PHASE_MACHINE_S (busy CPU seconds, all processes),
# PHASE_BUSY_PCT (share of the machine's CPUs that was busy) and PHASE_OTHER_S (CPU seconds of
# everything but the broker(s), the sidecar and the load generator: kernel threads, other users).
phase() {
  local r=$1 m=$2 name=$3; shift 3
  PHASE_OUT=$RUN_DIR/r$r-$m-$name.log
  LOADS+=("r$r $m $name: $(loadavg)")
  local w0=0 w1=0 b0 b1 t0 t1 m0 m1 c0 c1
  local q0=(0 0 0) q1=(0 0 0)
  # The hop between client and broker: the sidecar or the relay.
  local hop=""
  [[ $m == proxy ]] && hop=$WEIR_PID
  [[ $m == relay ]] && hop=$RELAY_PID
  [[ $m == proxy ]] && read -r -a q0 <<< "$(weir_counts)"
  [[ -n $hop ]] && w0=$(cpu_ticks "$hop")
  b0=$(cpu_ticks "${BROKER_PIDS[@]}")
  read -r -a m0 <<< "$(machine_ticks)"
  c0=$(child_ticks)
  t0=$(date +%s.%N)
  "$@" > "$PHASE_OUT" 2>&1 || { tail -n 30 "$PHASE_OUT" >&2; die "round $r $m $name failed (log $PHASE_OUT)"; }
  t1=$(date +%s.%N)
  [[ -n $hop ]] && w1=$(cpu_ticks "$hop")
  [[ $m == proxy ]] && read -r -a q1 <<< "$(weir_counts)"
  b1=$(cpu_ticks "${BROKER_PIDS[@]}")
  read -r -a m1 <<< "$(machine_ticks)"
  c1=$(child_ticks)
  PHASE_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
  PHASE_WEIR_S=$(awk -v d=$((w1 - w0)) -v h="$CLK_TCK" 'BEGIN {printf "%.2f", d / h}')
  record "$r" "$m" "broker_pct_$name" "$(awk -v d=$((b1 - b0)) -v h="$CLK_TCK" -v w="$PHASE_WALL" 'BEGIN {printf "%.1f", 100 * d / h / w}')"
  if [[ $m == proxy ]]; then
    record "$r" "$m" "weir_pct_$name" "$(awk -v s="$PHASE_WEIR_S" -v w="$PHASE_WALL" 'BEGIN {printf "%.1f", 100 * s / w}')"
    record "$r" "$m" "weir_us_per_req_$name" "$(awk -v s="$PHASE_WEIR_S" -v n=$((q1[0] - q0[0])) 'BEGIN {printf "%.1f", (n > 0 ? 1e6 * s / n : 0)}')"
    record "$r" "$m" "weir_reqs_$name" $((q1[0] - q0[0]))
    record "$r" "$m" "fetch_kib_$name" "$(awk -v b=$((q1[2] - q0[2])) -v n=$((q1[1] - q0[1])) 'BEGIN {printf "%.1f", (n > 0 ? b / n / 1024 : 0)}')"
  fi
  PHASE_BROKER_S=$(awk -v d=$((b1 - b0)) -v h="$CLK_TCK" 'BEGIN {printf "%.2f", d / h}')
  PHASE_MACHINE_S=$(awk -v d=$((m1[0] - m0[0])) -v h="$CLK_TCK" 'BEGIN {printf "%.2f", d / h}')
  PHASE_OTHER_S=$(awk -v d=$(((m1[0] - m0[0]) - (b1 - b0) - (w1 - w0) - (c1 - c0))) -v h="$CLK_TCK" \
    'BEGIN {printf "%.2f", (d > 0 ? d : 0) / h}')
  PHASE_REST_PCT=$(awk -v o="$PHASE_OTHER_S" -v m="$PHASE_MACHINE_S" 'BEGIN {printf "%.1f", (m > 0 ? 100 * o / m : 0)}')
  record "$r" "$m" "rest_pct_$name" "$PHASE_REST_PCT"
  PHASE_BUSY_PCT=$(awk -v b=$((m1[0] - m0[0])) -v t=$((m1[1] - m0[1])) 'BEGIN {printf "%.1f", (t > 0 ? 100 * b / t : 0)}')
}
metric() { awk -v m="$2:" 'index($1, m) == 1 {v = $NF} END {print (v == "" ? "nan" : v)}' "$1"; }  # metric LOG NAME
per_gb() { awk -v s="$1" -v g="$PAYLOAD_GB" 'BEGIN {printf "%.3f", s / g}'; }

run_mode() {  # run_mode ROUND MODE BOOTSTRAP
  local r=$1 m=$2 bs=$3 line
  local tp; tp=$(topic "$r" "$m" tp)

  sync  # leave no dirty pages from earlier runs to be written back during this one
  ((LATENCY_ONLY)) || throughput_runs "$r" "$m" "$bs" "$tp"
  latency_run "$r" "$m" "$bs"
}

throughput_runs() {  # throughput_runs ROUND MODE BOOTSTRAP TOPIC
  local r=$1 m=$2 bs=$3 tp=$4 line
  log "round $r/$ROUNDS $m: producing $RECORDS x $RECORD_SIZE B"
  phase "$r" "$m" produce "$KAFKA" run org.apache.kafka.tools.ProducerPerformance \
    --bootstrap-server "$bs" --topic "$tp" --num-records "$RECORDS" --record-size "$RECORD_SIZE" \
    --throughput -1 --command-property "${PRODUCER_PROPS[@]}" client.id="bench-$m" --print-metrics $(client_config "$m")
  line=$(grep 'records sent' "$PHASE_OUT" | tail -n 1)
  [[ $line == "$RECORDS records sent"* ]] || die "unexpected ProducerPerformance output: $line"
  record "$r" "$m" prod_rps "$(sed 's/.* records sent, \([0-9.]*\) records\/sec.*/\1/' <<< "$line")"
  record "$r" "$m" prod_mibs "$(sed 's/.*records\/sec (\([0-9.]*\) MB\/sec).*/\1/' <<< "$line")"
  # The producer's own view (its metrics are averaged over its last ~60 s, i.e. the run).
  record "$r" "$m" prod_batch_bytes "$(metric "$PHASE_OUT" producer-metrics:batch-size-avg)"
  record "$r" "$m" prod_records_per_req "$(metric "$PHASE_OUT" producer-metrics:records-per-request-avg)"
  record "$r" "$m" broker_cpu_prod "$(per_gb "$PHASE_BROKER_S")"
  record "$r" "$m" machine_cpu_prod "$(per_gb "$PHASE_MACHINE_S")"
  record "$r" "$m" machine_busy_prod "$PHASE_BUSY_PCT"
  record "$r" "$m" other_cpu_prod "$(per_gb "$PHASE_OTHER_S")"
  [[ $m == proxy ]] && record "$r" "$m" weir_cpu_prod "$(per_gb "$PHASE_WEIR_S")"
  [[ $m == relay ]] && record "$r" "$m" relay_cpu_prod "$(per_gb "$PHASE_WEIR_S")"

  log "round $r/$ROUNDS $m: consuming them"
  phase "$r" "$m" consume "$KAFKA" run org.apache.kafka.tools.ConsumerPerformance \
    --bootstrap-server "$bs" --topic "$tp" --num-records "$RECORDS" --group "bench-$RUN_ID-r$r-$m" \
    --timeout 60000 --hide-header --command-property client.id="bench-$m" $(client_config "$m")
  # start, end, MB, MB/s, records, records/s, rebalance ms, fetch ms, fetch MB/s, fetch records/s
  line=$(grep -E '^[0-9]{4}-' "$PHASE_OUT" | tail -n 1)
  IFS=',' read -r -a f <<< "$(sed 's/, /,/g' <<< "$line")"
  ((${#f[@]} >= 10)) || die "unexpected ConsumerPerformance output: $line"
  [[ ${f[4]} == "$RECORDS" ]] || die "round $r $m consumed ${f[4]} records, expected $RECORDS"
  record "$r" "$m" cons_mibs "${f[8]}"
  record "$r" "$m" cons_rps "${f[9]}"
  record "$r" "$m" cons_rebalance_ms "${f[6]}"
  record "$r" "$m" broker_cpu_cons "$(per_gb "$PHASE_BROKER_S")"
  record "$r" "$m" machine_cpu_cons "$(per_gb "$PHASE_MACHINE_S")"
  record "$r" "$m" machine_busy_cons "$PHASE_BUSY_PCT"
  record "$r" "$m" other_cpu_cons "$(per_gb "$PHASE_OTHER_S")"
  [[ $m == proxy ]] && record "$r" "$m" weir_cpu_cons "$(per_gb "$PHASE_WEIR_S")"
  [[ $m == relay ]] && record "$r" "$m" relay_cpu_cons "$(per_gb "$PHASE_WEIR_S")"
  return 0  # not the status of the test above, which set -e would take for a failure
}

latency_run() {  # latency_run ROUND MODE BOOTSTRAP
  local r=$1 m=$2 bs=$3 line
  log "round $r/$ROUNDS $m: latency at $LAT_RATE records/s for ${LAT_SECONDS}s (+${LAT_WARMUP}s warm-up)"
  local jvm_extra="-Dweir.bench.acks=$ACKS"
  [[ $m == proxy || ($m == direct && $DIRECT_TLS == 1) ]] && jvm_extra+=" -Dweir.client.config=$PROXY_CLIENT_CONFIG"
  TOOL_EXTRA=$jvm_extra phase "$r" "$m" latency bench_tool latency "$bs" "$(topic "$r" "$m" lat)" "$LAT_RATE" "$LAT_SECONDS" "$LAT_WARMUP" "$RECORD_SIZE"
  line=$(grep '^latency ' "$PHASE_OUT" | tail -n 1)
  [[ -n $line ]] || die "no latency result in $PHASE_OUT"
  local k v lost=""
  for kv in $line; do
    k=${kv%%=*} v=${kv#*=}
    case $k in
      p50_ms | p99_ms | p999_ms | max_ms) record "$r" "$m" "lat_$k" "$v" ;;
      lost) lost=$v ;;
    esac
  done
  [[ $lost == 0 ]] || log "warning: round $r $m latency run lost $lost records ($line)"
  return 0
}

# Warm-up, not measured: JIT-compile the broker's and the sidecar's paths and fault in the
# page cache, so the first measured run (always a direct one) is not the cold one.
WARM=$((RECORDS > 500000 ? 2 * RECORDS : 1000000))
log "warm-up: $WARM records each way, ${MODES[*]} (not measured)"
for mode in "${MODES[@]}"; do
  bs=$(bootstrap_of "$mode")
  # shellcheck disable=SC2046
  "$KAFKA" run org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$bs" --topic "$(topic 0 warm tp)" \
    --num-records "$WARM" --record-size "$RECORD_SIZE" --throughput -1 --command-property "${PRODUCER_PROPS[@]}" $(client_config "$mode") \
    > "$RUN_DIR/warmup.log" 2>&1 || { tail -n 30 "$RUN_DIR/warmup.log" >&2; die "warm-up produce failed"; }
done
for mode in "${MODES[@]}"; do
  bs=$(bootstrap_of "$mode")
  # shellcheck disable=SC2046
  "$KAFKA" run org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$bs" --topic "$(topic 0 warm tp)" \
    --num-records $((${#MODES[@]} * WARM)) --group "bench-$RUN_ID-warm-$RANDOM" --timeout 60000 $(client_config "$mode") \
    >> "$RUN_DIR/warmup.log" 2>&1 || { tail -n 30 "$RUN_DIR/warmup.log" >&2; die "warm-up consume failed"; }
done
drop_topics "$(topic 0 warm tp)"

log "load average before the first run: $(loadavg)"
for ((r = 1; r <= ROUNDS; r++)); do
  round_topics=()
  # The order rotates between rounds, so no target always runs first (or after the same one).
  for ((k = 0; k < ${#MODES[@]}; k++)); do
    mode=${MODES[(k + r - 1) % ${#MODES[@]}]}
    run_mode "$r" "$mode" "$(bootstrap_of "$mode")"
    round_topics+=("$(topic "$r" "$mode" tp)" "$(topic "$r" "$mode" lat)")
  done
  drop_topics "${round_topics[@]}"
done
PEAK_RSS_KB=$(status_kb "$WEIR_PID" VmHWM)
END_RSS_KB=$(status_kb "$WEIR_PID" VmRSS)
curl -fsS "http://$ADMIN/metrics" > "$RUN_DIR/weir-metrics.txt" 2>/dev/null || true
LOAD_AFTER=$(loadavg)
ELAPSED=$((SECONDS - T_START))

# ------------------------------------------------------------------ report
report() {
  local what=full
  ((QUICK)) && what=quick
  ((LATENCY_ONLY)) && what=latency-only
  echo "Weir sidecar benchmark, run $RUN_ID ($what mode, $ROUNDS round(s), ${ELAPSED}s)"
  echo "binary: $WEIR (built $(date -r "$WEIR" '+%F %T')); repository at $COMMIT when the run started"
  if ((SECURE)); then
    echo "secure: the sidecar terminates mTLS and enforces a 100-rule policy; proxied clients use TLS, direct ones $( ((DIRECT_TLS)) && echo "mTLS to the brokers' TLSDIRECT listener" || echo plaintext)"
  fi
  if ((POLICIES)); then
    echo "policies: plaintext; the sidecar enforces a 100-rule policy on a fixed principal and meters every client under a quota rule too high to throttle"
    if ((SAFEGUARDS)); then echo "safeguards: a produce safeguard on every topic reads every batch header (all pass)"; fi
  fi
  if ((RELAY)); then
    echo "relay: $(haproxy -v | head -n 1 | cut -d' ' -f1-3) in TCP mode, plaintext, one frontend per broker (a zero-work hop); p/r is the sidecar's ratio to it"
  fi
  echo "Kafka cluster '$CLUSTER': $BROKERS broker(s) on loopback; $(nproc) CPUs shared by broker(s), sidecar and load generators"
  echo "throughput: $RECORDS records x $RECORD_SIZE B per run, $PARTITIONS partitions, ${PRODUCER_PROPS[*]} (ProducerPerformance, ConsumerPerformance)"
  echo "latency: bench/BenchTool.java, produce->consume at a fixed $LAT_RATE records/s x $RECORD_SIZE B, acks=$ACKS linger.ms=0, ${LAT_SECONDS}s measured after ${LAT_WARMUP}s warm-up"
  echo "warm-up before round 1 (not measured): $WARM records produced and consumed each way; topics deleted and disk synced between rounds"
  echo "load average (1/5/15 min): before $(cut -d: -f2- <<< "${LOADS[0]}" | sed 's/^ //'), after $LOAD_AFTER"
  echo
  awk -F'\t' -v rounds="$ROUNDS" -v t_ratio="$T_RATIO" -v t_p99="$T_ADDED_P99_MS" -v t_rss="$T_IDLE_RSS_MB" \
      -v t_rratio="$T_RELAY_RATIO" -v t_rp50="$T_RELAY_P50_MS" -v t_rp99="$T_RELAY_P99_MS" -v relay="$RELAY" \
      -v idle_kb="$IDLE_RSS_KB" -v peak_kb="$PEAK_RSS_KB" -v end_kb="$END_RSS_KB" -v lat_only="$LATENCY_ONLY" '
    function median(key, mode,   n, i, j, t, a) {
      n = 0
      for (i = 1; i <= rounds; i++) if ((i SUBSEP mode SUBSEP key) in v) a[++n] = v[i, mode, key] + 0
      if (n == 0) return ""
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ratio_range(key, base,   i, lo, hi, x) {  # min-max of the per-round proxy/base
      lo = ""; hi = ""
      for (i = 1; i <= rounds; i++) if ((i SUBSEP "proxy" SUBSEP key) in v && v[i, base, key] > 0) {
        x = v[i, "proxy", key] / v[i, base, key]
        if (lo == "" || x < lo) lo = x; if (hi == "" || x > hi) hi = x
      }
      return lo == "" ? "-" : (rounds > 1 ? sprintf("%.2f-%.2f", lo, hi) : sprintf("%.2f", lo))
    }
    function worst_ratio(key, base,   i, lo, x) {  # the lowest per-round proxy/base
      lo = ""
      for (i = 1; i <= rounds; i++) if ((i SUBSEP "proxy" SUBSEP key) in v && v[i, base, key] > 0) {
        x = v[i, "proxy", key] / v[i, base, key]; if (lo == "" || x < lo) lo = x
      }
      return lo
    }
    function worst_added(key, base,   i, hi, x) {  # the largest per-round proxy - base
      hi = ""
      for (i = 1; i <= rounds; i++) if ((i SUBSEP "proxy" SUBSEP key) in v && (i SUBSEP base SUBSEP key) in v) {
        x = v[i, "proxy", key] - v[i, base, key]; if (hi == "" || x > hi) hi = x
      }
      return hi
    }
    function cell(x, fmt) { return x == "" ? "-" : sprintf(fmt, x) }
    function header() {
      printf "%-28s %10s %10s %10s %7s %7s %11s %11s  %s\n", "median of rounds", "direct", "relay", "proxy",
        "p/d", "p/r", "p/d rounds", "p/r rounds", "targets"
    }
    function row(label, key, fmt,   d, r, p, verdict) {
      d = median(key, "direct"); r = median(key, "relay"); p = median(key, "proxy")
      verdict = sprintf("p/d >= %s %s", t_ratio, (d > 0 && p / d >= t_ratio ? "MET" : "MISSED"))
      if (relay) verdict = verdict sprintf("; p/r >= %s in every round %s", t_rratio,
        (worst_ratio(key, "relay") >= t_rratio ? "MET" : "MISSED"))
      printf "%-28s %10s %10s %10s %7s %7s %11s %11s  %s\n", label, cell(d, fmt), cell(r, fmt), cell(p, fmt),
        (d > 0 ? sprintf("%.3f", p / d) : "-"), (r > 0 ? sprintf("%.3f", p / r) : "-"),
        ratio_range(key, "direct"), ratio_range(key, "relay"), verdict
    }
    function lrow(label, key,   d, r, p, target) {
      d = median(key, "direct"); r = median(key, "relay"); p = median(key, "proxy")
      target = ""
      if (key == "lat_p99_ms") target = sprintf("p-d <= +%s ms %s", t_p99, (p - d <= t_p99 ? "MET" : "MISSED"))
      if (relay && key == "lat_p50_ms") target = sprintf("p-r <= +%s ms in every round %s", t_rp50, (worst_added(key, "relay") <= t_rp50 ? "MET" : "MISSED"))
      if (relay && key == "lat_p99_ms") target = target sprintf("; p-r <= +%s ms in every round %s", t_rp99, (worst_added(key, "relay") <= t_rp99 ? "MET" : "MISSED"))
      printf "%-28s %10.3f %10s %10.3f %7s %7s %11s %11s  %s\n", label, d, cell(r, "%.3f"), p,
        sprintf("%+.3f", p - d), (r != "" ? sprintf("%+.3f", p - r) : "-"), "", "", target
    }
    function cpu_row(label, mode, what,   w) {
      # CPU of the hop: the sidecar or the relay.
      w = mode == "proxy" ? median("weir_cpu_" what, mode) : (mode == "relay" ? median("relay_cpu_" what, mode) : "")
      printf "%-28s %10.2f %10s %10.2f %10.2f %9.0f%%\n", label, median("broker_cpu_" what, mode), cell(w, "%.2f"),
        median("machine_cpu_" what, mode), median("other_cpu_" what, mode), median("machine_busy_" what, mode)
    }
    function rest(i, mode,   x, k, n) {  # largest rest share among the runs of round i, mode
      x = 0; split("produce consume latency", k, " ")
      for (n = 1; n <= 3; n++) if (v[i, mode, "rest_pct_" k[n]] + 0 > x) x = v[i, mode, "rest_pct_" k[n]] + 0
      return x
    }
    function srow(label, value, target, verdict) {
      printf "%-28s %10s %10s %10s %7s %7s %11s %11s  %s %s\n", label, "", "", value, "", "", "", "", target, verdict
    }
    function three(i, key, fmt) {  # direct / relay / proxy of round i
      return sprintf(fmt " / " fmt " / " fmt, v[i, "direct", key], v[i, "relay", key], v[i, "proxy", key])
    }
    { v[$1, $2, $3] = $4 }
    END {
      header()
      if (!lat_only) {
        row("producer MiB/s", "prod_mibs", "%.1f")
        row("producer records/s", "prod_rps", "%.0f")
        row("consumer MiB/s", "cons_mibs", "%.1f")
        row("consumer records/s", "cons_rps", "%.0f")
        printf "%-28s %10s %10s %10s\n", "  producer batch size avg (B)", cell(median("prod_batch_bytes", "direct"), "%.0f"),
          cell(median("prod_batch_bytes", "relay"), "%.0f"), cell(median("prod_batch_bytes", "proxy"), "%.0f")
        printf "%-28s %10s %10s %10s\n", "  producer records/request", cell(median("prod_records_per_req", "direct"), "%.1f"),
          cell(median("prod_records_per_req", "relay"), "%.1f"), cell(median("prod_records_per_req", "proxy"), "%.1f")
      }
      printf "%-28s %10s %10s %10s %7s %7s\n", "end-to-end latency (ms)", "", "", "", "p-d", "p-r"
      lrow("  p50", "lat_p50_ms"); lrow("  p99", "lat_p99_ms"); lrow("  p99.9", "lat_p999_ms"); lrow("  max", "lat_max_ms")
      if (!lat_only) {
        printf "%-28s %10s %10s %10s %10s %10s\n", "CPU s per GB (1e9 B) payload", "broker(s)", "hop", "whole box", "rest", "box busy"
        cpu_row("  producing, direct", "direct", "prod")
        if (relay) cpu_row("  producing, via relay", "relay", "prod")
        cpu_row("  producing, via proxy", "proxy", "prod")
        cpu_row("  consuming, direct", "direct", "cons")
        if (relay) cpu_row("  consuming, via relay", "relay", "cons")
        cpu_row("  consuming, via proxy", "proxy", "cons")
      }
      printf "%-28s %10s %10s %10s\n", "sidecar, per run type", "produce", "consume", "latency"
      printf "%-28s %10.1f %10.1f %10.1f\n", "  CPU us per request", median("weir_us_per_req_produce", "proxy"),
        median("weir_us_per_req_consume", "proxy"), median("weir_us_per_req_latency", "proxy")
      printf "%-28s %10.0f %10.0f %10.0f\n", "  requests per run", median("weir_reqs_produce", "proxy"),
        median("weir_reqs_consume", "proxy"), median("weir_reqs_latency", "proxy")
      printf "%-28s %9.1f%% %9.1f%% %9.1f%%\n", "  CPU, % of one core", median("weir_pct_produce", "proxy"),
        median("weir_pct_consume", "proxy"), median("weir_pct_latency", "proxy")
      printf "%-28s %10s %10.1f %10s\n", "  avg Fetch response (KiB)", "", median("fetch_kib_consume", "proxy"), ""
      printf "%-28s %10s %10s %10s\n", "broker CPU in latency run", "direct", "relay", "proxy"
      printf "%-28s %9.1f%% %10s %9.1f%%\n", "  % of one core", median("broker_pct_latency", "direct"),
        cell(median("broker_pct_latency", "relay"), "%.1f%%"), median("broker_pct_latency", "proxy")
      srow("sidecar RSS idle (MB)", sprintf("%.1f", idle_kb * 1.024 / 1000), "< " t_rss " MB", (idle_kb * 1024 < t_rss * 1e6 ? "MET" : "MISSED"))
      srow("sidecar RSS peak (MB)", sprintf("%.1f", peak_kb * 1.024 / 1000), "", "")
      srow("sidecar RSS at end (MB)", sprintf("%.1f", end_kb * 1.024 / 1000), "", "")
      print ""
      print "per round (direct / relay / proxy); \"rest\" = largest share of busy CPU not used by broker, hop or load generator"
      printf "  %-5s %-22s %-24s %-26s %-18s %s\n", "round", "producer MiB/s", "consumer MiB/s", "e2e p50 ms", "e2e p99 ms",
        "sidecar CPU s/GB p/c"
      worst = 0
      for (i = 1; i <= rounds; i++) {
        for (m = 1; m <= 3; m++) { mode = m == 1 ? "direct" : (m == 2 ? "relay" : "proxy"); x = rest(i, mode); if (x > worst) worst = x }
        if (lat_only)
          printf "  %-5d %-22s %-24s %-26s %-18s\n", i, "-", "-", three(i, "lat_p50_ms", "%.3f"), three(i, "lat_p99_ms", "%.1f")
        else
          printf "  %-5d %-22s %-24s %-26s %-18s %.2f / %.2f\n", i, three(i, "prod_mibs", "%.1f"), three(i, "cons_mibs", "%.1f"),
            three(i, "lat_p50_ms", "%.3f"), three(i, "lat_p99_ms", "%.1f"), v[i, "proxy", "weir_cpu_prod"], v[i, "proxy", "weir_cpu_cons"]
      }
      printf "  rest %% (largest of any run): %.0f\n", worst
      if (worst > 15)
        printf "WARNING: up to %.0f%% of the busy CPU in some runs went to other work (see \"rest\"): other processes\n" \
          "competed with this benchmark; compare such rounds with care or rerun on a quiet machine.\n", worst
    }' "$DATA"
  echo
  echo "the sidecar's own histograms, whole run (time inside the sidecar excludes waiting for the broker):"
  awk '
    /^weir_kafka_(proxy|upstream)_latency_seconds_(sum|count)\{api="(Produce|Fetch)"\}/ {
      split($1, a, "\""); api = a[2]; n = $1; sub(/\{.*/, "", n); v[api, n] = $2
    }
    END {
      for (i = 1; i <= 2; i++) {
        api = i == 1 ? "Produce" : "Fetch"
        c = v[api, "weir_kafka_proxy_latency_seconds_count"]
        if (c > 0) printf "  %-8s %9d requests, avg %7.1f us inside the sidecar, avg %7.3f ms at the broker\n", api, c,
          1e6 * v[api, "weir_kafka_proxy_latency_seconds_sum"] / c,
          1e3 * v[api, "weir_kafka_upstream_latency_seconds_sum"] / v[api, "weir_kafka_upstream_latency_seconds_count"]
      }
    }' "$RUN_DIR/weir-metrics.txt" 2>/dev/null || true
  echo
  echo "load average at the start of each run:"
  printf '  %s\n' "${LOADS[@]}"
  echo "raw output: bench/results/$RUN_ID/"
}
report | tee "$RUN_DIR/results.txt" > "$RESULTS/latest.txt"
cat "$RESULTS/latest.txt"
