#!/usr/bin/env bash
# scripts/kafka.sh - run a real Apache Kafka on this machine for Weir's tests,
# CI, benchmarks and README examples. Kafka jars come from Maven Central via
# kafka/pom.xml (cached in ~/.m2); every node is a KRaft broker+controller.
#
#   scripts/kafka.sh start [--brokers N] [--cluster NAME] [--base-port P]
#   scripts/kafka.sh stop [--cluster NAME]
#   scripts/kafka.sh stop-broker I [--cluster NAME]
#   scripts/kafka.sh start-broker I [--cluster NAME]
#   scripts/kafka.sh pause-broker I [--cluster NAME]   (SIGSTOP: connections open, nothing answered)
#   scripts/kafka.sh resume-broker I [--cluster NAME]  (SIGCONT)
#   scripts/kafka.sh status [--cluster NAME]     (exit 0 only if all nodes are up)
#   scripts/kafka.sh bootstrap [--cluster NAME] [--brokers N] [--mesh]
#   scripts/kafka.sh classpath
#   scripts/kafka.sh run CLASS [ARGS...]         (a Kafka tool, logs to stderr)
#
# Port contract: cluster `main` has base port 9092, `edge` 9292, others need
# --base-port. Node i (1..N) listens on 127.0.0.1 at
#   base+10*(i-1)    PLAINTEXT  (advertised as 127.0.0.1, inter-broker)
#   base+10*(i-1)+1  MESH       (advertised as broker-<i>.<cluster>.weir.invalid)
#   base+10*(i-1)+2  CONTROLLER
#   base+10*(i-1)+3  SASL       (SASL_PLAINTEXT, PLAIN and SCRAM-SHA-512, user weir /
#                               password weir-secret; advertised like MESH)
#   base+10*(i-1)+4  TLS        (SSL with required client certificates; advertised like
#                               MESH; test PKI in <state>/tls: ca.pem, broker.*, client.*)
#   base+10*(i-1)+5  TLSDIRECT  (the same SSL, advertised as 127.0.0.1: clients reach the
#                               brokers over TLS without the sidecar, as a baseline)
#   base+10*(i-1)+6  SASLSSL    (SASL_SSL: the SASL user above over TLS with the test PKI,
#                               no client certificate; advertised like MESH; sessions last
#                               4 s, so clients must re-authenticate, KIP-368)
#   base+10*(i-1)+7  RELAY      (PLAINTEXT advertised as 127.0.0.1:base+10*(i-1)+8, where
#                               nothing listens unless a TCP relay is started there:
#                               bench/run.sh starts HAProxy, bench/hop.sh bench/relay.py,
#                               as a zero-work proxy hop to compare the sidecar with)
#
# Environment:
#   WEIR_KAFKA_STATE          state root; cluster NAME lives in $WEIR_KAFKA_STATE/NAME
#                             (default ${XDG_CACHE_HOME:-$HOME/.cache}/weir/kafka)
#   WEIR_KAFKA_HEAP_OPTS      broker heap (default "-Xms256m -Xmx512m")
#   WEIR_KAFKA_JVM_OPTS       extra broker JVM options
#   WEIR_KAFKA_TOOL_OPTS      JVM options for `run` (default "-Xmx1g")
#   WEIR_KAFKA_JAVA           java binary (default $JAVA_HOME/bin/java, then java)
#   WEIR_KAFKA_START_TIMEOUT  seconds to wait for a healthy cluster (default 90)
#   WEIR_KAFKA_STOP_TIMEOUT   seconds before SIGKILL on stop (default 30)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
POM=$ROOT/kafka/pom.xml
STATE_ROOT=${WEIR_KAFKA_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/kafka}
HEAP=${WEIR_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
START_TIMEOUT=${WEIR_KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${WEIR_KAFKA_STOP_TIMEOUT:-30}
QUORUMLESS_GRACE=10  # seconds a node may take to stop once its controller quorum is gone
if [[ -n ${WEIR_KAFKA_JAVA:-} ]]; then JAVA=$WEIR_KAFKA_JAVA
elif [[ -n ${JAVA_HOME:-} && -x ${JAVA_HOME}/bin/java ]]; then JAVA=$JAVA_HOME/bin/java
else JAVA=java; fi

# The SASL listener's one user (PLAIN and SCRAM-SHA-512), for SASL passthrough tests.
SASL_USER=weir
SASL_PASSWORD=weir-secret
# Session lifetime on the SASLSSL listener: short, so that re-authentication (KIP-368) happens
# within a test.
SASLSSL_REAUTH_MS=4000

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- classpath
# Resolved by Maven once and cached, keyed by the pom's hash.
classpath() {
  local cache=$STATE_ROOT/classpath.txt key
  key=$(sha256sum "$POM" | cut -d' ' -f1)
  if [[ -s $cache && $(cat "$cache.key" 2>/dev/null) == "$key" ]] && all_jars_exist "$cache"; then
    cat "$cache"; return
  fi
  mkdir -p "$STATE_ROOT"
  local tmp; tmp=$(mktemp "$STATE_ROOT/classpath.XXXXXX")
  log "resolving Kafka classpath with Maven (kafka/pom.xml)..."
  local out
  if ! out=$(mvn -B -q -f "$POM" dependency:build-classpath -Dmdep.outputFile="$tmp" 2>&1); then
    echo "$out" >&2; rm -f "$tmp"; die "mvn could not resolve kafka/pom.xml"
  fi
  echo "$key" > "$cache.key.tmp"
  mv "$tmp" "$cache"; mv "$cache.key.tmp" "$cache.key"
  cat "$cache"
}
all_jars_exist() {
  local jar
  IFS=: read -ra jars < "$1"
  for jar in "${jars[@]}"; do [[ -f $jar ]] || return 1; done
}

# Run a Kafka main class on the Kafka classpath with quiet logging on stderr.
# Our own short checks use a small C1-only JVM; `run` (benchmarks) a normal one.
run_tool() {
  local cp; cp=$(classpath)
  # shellcheck disable=SC2086 # option lists
  ${TOOL_TIMEOUT:+timeout "$TOOL_TIMEOUT"} "$JAVA" ${TOOL_OPTS:--Xmx256m -XX:TieredStopAtLevel=1} -cp "$cp" \
    -Dlog4j2.configurationFile="$ROOT/kafka/log4j2-tools.properties" "$@"
}

check_java() {
  local v
  v=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p') ||
    die "cannot run java ($JAVA)"
  [[ ${v%%.*} -ge 17 ]] 2>/dev/null || die "Kafka brokers need Java 17+, $JAVA is Java ${v:-unknown}"
}

# ---------------------------------------------------------------- layout
port() { echo $((BASE_PORT + 10 * ($1 - 1) + $2)); }   # port NODE OFFSET
node_dir() { echo "$CDIR/node-$1"; }
plaintext_bootstrap() {
  local i out=()
  for ((i = 1; i <= BROKERS; i++)); do out+=("127.0.0.1:$(port "$i" 0)"); done
  (IFS=,; echo "${out[*]}")
}
mesh_bootstrap() {
  local i out=()
  for ((i = 1; i <= BROKERS; i++)); do out+=("broker-$i.$CLUSTER.weir.invalid:$(port "$i" 1)"); done
  (IFS=,; echo "${out[*]}")
}
port_open() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Pid of node I if it is our broker process (guards against pid reuse).
node_pid() {
  local f; f=$(node_dir "$1")/pid
  [[ -f $f ]] || return 1
  local pid; pid=$(<"$f")
  [[ -r /proc/$pid/cmdline ]] || return 1
  { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "kafka.Kafka $(node_dir "$1")/server.properties" || return 1
  echo "$pid"
}
# The launched process is alive (its pid may still be the launching subshell, before `exec`
# makes it the broker's JVM, so the cmdline check of node_pid does not apply yet).
node_alive() { local f; f=$(node_dir "$1")/pid; [[ -f $f ]] && kill -0 "$(<"$f")" 2>/dev/null; }
any_running() { local i; for ((i = 1; i <= BROKERS; i++)); do node_pid "$i" >/dev/null && return 0; done; return 1; }

# Kafka-style random id: 16 random bytes, URL-safe base64 without padding.
random_uuid() {
  local id
  while :; do
    id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    [[ $id != -* ]] && { echo "$id"; return; }
  done
}

write_config() {  # write_config NODE
  local i=$1 dir; dir=$(node_dir "$1")
  local rf=$((BROKERS < 3 ? BROKERS : 3)) isr=$((BROKERS < 2 ? BROKERS : 2))
  local min_isr=$((BROKERS == 1 ? 1 : 2)) voters=() j
  for ((j = 1; j <= BROKERS; j++)); do voters+=("127.0.0.1:$(port "$j" 2)"); done
  mkdir -p "$dir/data"
  cat > "$dir/server.properties" <<EOF
# Generated by scripts/kafka.sh for cluster $CLUSTER, node $i of $BROKERS.
process.roles=broker,controller
node.id=$i
listeners=PLAINTEXT://127.0.0.1:$(port "$i" 0),MESH://127.0.0.1:$(port "$i" 1),CONTROLLER://127.0.0.1:$(port "$i" 2),SASL://127.0.0.1:$(port "$i" 3),TLS://127.0.0.1:$(port "$i" 4),TLSDIRECT://127.0.0.1:$(port "$i" 5),SASLSSL://127.0.0.1:$(port "$i" 6),RELAY://127.0.0.1:$(port "$i" 7)
advertised.listeners=PLAINTEXT://127.0.0.1:$(port "$i" 0),MESH://broker-$i.$CLUSTER.weir.invalid:$(port "$i" 1),CONTROLLER://127.0.0.1:$(port "$i" 2),SASL://broker-$i.$CLUSTER.weir.invalid:$(port "$i" 3),TLS://broker-$i.$CLUSTER.weir.invalid:$(port "$i" 4),TLSDIRECT://127.0.0.1:$(port "$i" 5),SASLSSL://broker-$i.$CLUSTER.weir.invalid:$(port "$i" 6),RELAY://127.0.0.1:$(port "$i" 8)
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,MESH:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT,TLS:SSL,TLSDIRECT:SSL,SASLSSL:SASL_SSL,RELAY:PLAINTEXT
listener.name.tls.ssl.keystore.type=PEM
listener.name.tls.ssl.keystore.location=$CDIR/tls/broker.pem
listener.name.tls.ssl.truststore.type=PEM
listener.name.tls.ssl.truststore.location=$CDIR/tls/ca.pem
listener.name.tls.ssl.client.auth=required
listener.name.tlsdirect.ssl.keystore.type=PEM
listener.name.tlsdirect.ssl.keystore.location=$CDIR/tls/broker.pem
listener.name.tlsdirect.ssl.truststore.type=PEM
listener.name.tlsdirect.ssl.truststore.location=$CDIR/tls/ca.pem
listener.name.tlsdirect.ssl.client.auth=required
listener.name.saslssl.ssl.keystore.type=PEM
listener.name.saslssl.ssl.keystore.location=$CDIR/tls/broker.pem
listener.name.saslssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.saslssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
listener.name.saslssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.saslssl.scram-sha-512.connections.max.reauth.ms=$SASLSSL_REAUTH_MS
listener.name.saslssl.plain.connections.max.reauth.ms=$SASLSSL_REAUTH_MS
listener.name.sasl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
listener.name.sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=$(IFS=,; echo "${voters[*]}")
log.dirs=$dir/data
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
controlled.shutdown.enable=true
EOF
}

# A throwaway CA, a broker certificate for every `*.<cluster>.weir.invalid` name and 127.0.0.1,
# and a client certificate for whoever connects to the TLS listener (the sidecar in tests).
make_test_pki() {  # make_test_pki DIR
  local dir=$1 name
  mkdir -p "$dir"
  ( cd "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
      -days 3650 -subj "/CN=Weir test CA for cluster $CLUSTER" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    for name in broker client; do
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$name.key" -out "$name.csr" \
        -subj "/CN=$name.$CLUSTER.weir.invalid" 2>/dev/null
      printf 'subjectAltName=DNS:*.%s.weir.invalid,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$CLUSTER" > "$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null
      cat "$name.key" "$name.crt" > "$name.pem"
    done ) || die "cannot create the test PKI in $dir (is openssl installed?)"
}

# ---------------------------------------------------------------- cluster env
# Sets CLUSTER, CDIR, BASE_PORT and BROKERS from options and the state dir.
load_cluster() {
  CDIR=$STATE_ROOT/$CLUSTER
  local saved_brokers="" saved_base=""
  if [[ -f $CDIR/cluster.env ]]; then
    saved_brokers=$(sed -n 's/^BROKERS=//p' "$CDIR/cluster.env")
    saved_base=$(sed -n 's/^BASE_PORT=//p' "$CDIR/cluster.env")
  fi
  if [[ -z $OPT_BASE ]]; then
    case $CLUSTER in
      main) OPT_BASE=9092 ;;
      edge) OPT_BASE=9292 ;;
      *) OPT_BASE=$saved_base ;;
    esac
  fi
  [[ -n $OPT_BASE ]] || die "cluster '$CLUSTER' needs --base-port"
  BASE_PORT=$OPT_BASE
  BROKERS=${saved_brokers:-${OPT_BROKERS:-1}}
}

save_cluster_env() {
  mkdir -p "$CDIR"
  printf 'BROKERS=%s\nBASE_PORT=%s\nCLUSTER_ID=%s\n' "$BROKERS" "$BASE_PORT" "$1" > "$CDIR/cluster.env"
}

# ---------------------------------------------------------------- processes
launch_node() {  # launch_node I (data dir must be formatted)
  local i=$1 dir cp; dir=$(node_dir "$1"); cp=$(classpath)
  # shellcheck disable=SC2086 # HEAP and WEIR_KAFKA_JVM_OPTS are word lists
  ( cd "$dir" && exec setsid "$JAVA" $HEAP ${WEIR_KAFKA_JVM_OPTS:-} -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true -Dlog4j2.configurationFile="$ROOT/kafka/log4j2-broker.properties" \
      -Dweir.kafka.log.file="$dir/server.log" -cp "$cp" \
      kafka.Kafka "$dir/server.properties" ) </dev/null >"$dir/stdout.log" 2>&1 9>&- &
  echo $! > "$dir/pid"
  log "started node $i of cluster $CLUSTER (pid $!, log $dir/server.log)"
}

stop_nodes() {  # stop_nodes I... : SIGTERM them all, wait, SIGKILL stragglers
  local i j alive lost_at="" deadline=$((SECONDS + STOP_TIMEOUT))
  local -A pids=()
  for i in "$@"; do
    if pids[$i]=$(node_pid "$i"); then kill -TERM "${pids[$i]}" 2>/dev/null || true; else unset "pids[$i]"; fi
  done
  while ((${#pids[@]} > 0)); do
    for i in "${!pids[@]}"; do
      kill -0 "${pids[$i]}" 2>/dev/null || { log "stopped node $i of cluster $CLUSTER"; unset "pids[$i]"; }
    done
    ((${#pids[@]} > 0)) || break
    # Once most controllers are gone, a node still in its controlled shutdown waits for a
    # quorum that will not come back (up to 5 minutes): give it a short grace, then kill it.
    alive=0
    for ((j = 1; j <= BROKERS; j++)); do node_pid "$j" >/dev/null && alive=$((alive + 1)); done
    if ((alive <= BROKERS / 2)) && [[ -z $lost_at ]]; then lost_at=$SECONDS; fi
    if ((SECONDS >= deadline)) || { [[ -n $lost_at ]] && ((SECONDS - lost_at >= QUORUMLESS_GRACE)); }; then
      for i in "${!pids[@]}"; do
        log "node $i (pid ${pids[$i]}) did not stop in time; killing it"
        kill -KILL "${pids[$i]}" 2>/dev/null || true
      done
      deadline=$((SECONDS + 1000)) lost_at=""
    fi
    sleep 0.2
  done
  for i in "$@"; do rm -f "$(node_dir "$i")/pid"; done
}

show_failure() {  # show_failure I... : print log tails, stop what we launched
  local i dir
  for i in "$@"; do
    dir=$(node_dir "$i")
    log "---- node $i: tail of $dir/server.log"
    tail -n 40 "$dir/server.log" >&2 2>/dev/null || true
    if [[ -s $dir/stdout.log ]]; then log "---- node $i: tail of $dir/stdout.log"; tail -n 20 "$dir/stdout.log" >&2; fi
  done
  stop_nodes "$@"
}

# Number of brokers that answer and are registered, as seen by a real client.
registered_brokers() {
  TOOL_TIMEOUT=30 run_tool org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$(plaintext_bootstrap)" 2>/dev/null \
    | grep -o '(id: [0-9]*' | sort -u | wc -l
}

cluster_healthy() {  # all nodes alive, all ports open, all brokers registered
  local i
  for ((i = 1; i <= BROKERS; i++)); do
    node_pid "$i" >/dev/null || return 1
    port_open "$(port "$i" 0)" && port_open "$(port "$i" 1)" && port_open "$(port "$i" 2)" && port_open "$(port "$i" 3)" \
      && port_open "$(port "$i" 4)" && port_open "$(port "$i" 5)" && port_open "$(port "$i" 6)" && port_open "$(port "$i" 7)" || return 1
  done
  [[ $(registered_brokers) -eq $BROKERS ]]
}

wait_healthy() {  # wait_healthy I... : the nodes launched by this call
  local i deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    for i in "$@"; do
      node_alive "$i" || { log "node $i exited during startup"; show_failure "$@"; exit 1; }
    done
    if cluster_healthy; then return 0; fi
    sleep 0.5
  done
  log "cluster $CLUSTER not healthy after ${START_TIMEOUT}s"
  show_failure "$@"
  exit 1
}

# After a node restart: wait until it has caught up (no under-replicated partitions).
wait_in_sync() {
  local out deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if out=$(TOOL_TIMEOUT=30 run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(plaintext_bootstrap)" \
      --describe --under-replicated-partitions 2>/dev/null) && [[ -z $out ]]; then return 0; fi
    sleep 0.5
  done
  die "cluster $CLUSTER still has under-replicated partitions after ${START_TIMEOUT}s"
}

check_ports_free() {
  local i off p
  for ((i = 1; i <= BROKERS; i++)); do
    for off in 0 1 2 3 4 5 6; do
      p=$(port "$i" "$off")
      port_open "$p" && die "port $p is already in use by a process this script did not start"
    done
  done
  return 0
}

# ---------------------------------------------------------------- commands
cmd_start() {
  local t0=$SECONDS i missing=()
  if any_running; then
    [[ -z $OPT_BROKERS || $OPT_BROKERS == "$BROKERS" ]] ||
      die "cluster $CLUSTER is running with $BROKERS broker(s); stop it before starting it with $OPT_BROKERS"
    for ((i = 1; i <= BROKERS; i++)); do node_pid "$i" >/dev/null || missing+=("$i"); done
    if ((${#missing[@]} == 0)) && cluster_healthy; then
      log "cluster $CLUSTER is already running and healthy ($BROKERS broker(s)): $(plaintext_bootstrap)"
      return 0
    fi
    for i in "${missing[@]}"; do launch_node "$i"; done
    wait_healthy "${missing[@]}"
    wait_in_sync
    log "cluster $CLUSTER healthy again after $((SECONDS - t0))s"
    return 0
  fi
  BROKERS=${OPT_BROKERS:-1}
  [[ $BROKERS =~ ^[1-9]$ ]] || die "--brokers must be 1..9"
  check_java
  check_ports_free
  rm -rf "$CDIR"
  make_test_pki "$CDIR/tls"
  local cid dirs=() voters=() fmt_args=() pids=()
  cid=$(random_uuid)
  save_cluster_env "$cid"
  classpath >/dev/null
  for ((i = 1; i <= BROKERS; i++)); do
    write_config "$i"
    dirs[i]=$(random_uuid)
    voters+=("$i@127.0.0.1:$(port "$i" 2):${dirs[i]}")
  done
  if ((BROKERS == 1)); then fmt_args=(--standalone)
  else fmt_args=(--initial-controllers "$(IFS=,; echo "${voters[*]}")"); fi
  # Format all nodes in parallel (one short JVM each).
  for ((i = 1; i <= BROKERS; i++)); do
    run_tool kafka.tools.StorageTool format --config "$(node_dir "$i")/server.properties" \
      --cluster-id "$cid" "${fmt_args[@]}" \
      --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]" > "$(node_dir "$i")/format.log" 2>&1 &
    pids+=($!)
  done
  for ((i = 1; i <= BROKERS; i++)); do
    wait "${pids[i - 1]}" || { cat "$(node_dir "$i")/format.log" >&2; die "formatting node $i failed"; }
  done
  log "formatted $BROKERS node(s), cluster id $cid ($((SECONDS - t0))s)"
  local all=()
  for ((i = 1; i <= BROKERS; i++)); do launch_node "$i"; all+=("$i"); done
  wait_healthy "${all[@]}"
  log "cluster $CLUSTER is up with $BROKERS broker(s) in $((SECONDS - t0))s: $(plaintext_bootstrap)"
}

cmd_stop() {
  local i all=()
  for ((i = 1; i <= BROKERS; i++)); do all+=("$i"); done
  any_running || { log "cluster $CLUSTER is not running"; return 0; }
  stop_nodes "${all[@]}"
}

node_arg() {
  [[ $NODE =~ ^[0-9]+$ ]] && ((NODE >= 1 && NODE <= BROKERS)) ||
    die "node must be 1..$BROKERS for cluster $CLUSTER"
  [[ -f $(node_dir "$NODE")/server.properties ]] || die "cluster $CLUSTER was never started"
}

cmd_stop_broker() {
  node_arg
  node_pid "$NODE" >/dev/null || { log "node $NODE of cluster $CLUSTER is not running"; return 0; }
  stop_nodes "$NODE"
}

cmd_start_broker() {
  node_arg
  if node_pid "$NODE" >/dev/null; then log "node $NODE of cluster $CLUSTER is already running"; return 0; fi
  local t0=$SECONDS
  check_java
  launch_node "$NODE"
  wait_healthy "$NODE"
  wait_in_sync
  log "node $NODE of cluster $CLUSTER is back after $((SECONDS - t0))s"
}

cmd_status() {
  local i pid up=0
  for ((i = 1; i <= BROKERS; i++)); do
    if pid=$(node_pid "$i"); then
      up=$((up + 1))
      echo "node $i running pid=$pid plaintext=127.0.0.1:$(port "$i" 0) mesh=broker-$i.$CLUSTER.weir.invalid:$(port "$i" 1) controller=127.0.0.1:$(port "$i" 2) sasl=broker-$i.$CLUSTER.weir.invalid:$(port "$i" 3) log=$(node_dir "$i")/server.log"
    else
      echo "node $i stopped"
    fi
  done
  echo "cluster=$CLUSTER brokers=$BROKERS running=$up bootstrap=$(plaintext_bootstrap)"
  ((up == BROKERS))
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

CMD=${1:-}; [[ -n $CMD ]] || usage; shift
CLUSTER=main OPT_BROKERS="" OPT_BASE="" NODE="" MESH=0
case $CMD in
  classpath) classpath; exit 0 ;;
  run) [[ $# -ge 1 ]] || usage; TOOL_OPTS=${WEIR_KAFKA_TOOL_OPTS:--Xmx1g} run_tool "$@"; exit ;;
  stop-broker | start-broker | pause-broker | resume-broker) NODE=${1:-}; [[ -n $NODE ]] || usage; shift ;;
esac
while [[ $# -gt 0 ]]; do
  case $1 in
    --brokers) OPT_BROKERS=${2:?}; shift 2 ;;
    --cluster) CLUSTER=${2:?}; shift 2 ;;
    --base-port) OPT_BASE=${2:?}; shift 2 ;;
    --mesh) MESH=1; shift ;;
    *) usage ;;
  esac
done
[[ $CLUSTER =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]] || die "cluster name must be a DNS label: $CLUSTER"
load_cluster
case $CMD in  # one changing command per cluster at a time (tests may race to start it)
  start | stop | stop-broker | start-broker)
    mkdir -p "$STATE_ROOT"; exec 9>"$STATE_ROOT/$CLUSTER.lock"; flock 9 ;;
esac
case $CMD in
  start) cmd_start ;;
  stop) cmd_stop ;;
  stop-broker) cmd_stop_broker ;;
  start-broker) cmd_start_broker ;;
  pause-broker) node_arg; kill -STOP "$(node_pid "$NODE")" && log "paused node $NODE of cluster $CLUSTER" ;;
  resume-broker) node_arg; kill -CONT "$(node_pid "$NODE")" && log "resumed node $NODE of cluster $CLUSTER" ;;
  status) cmd_status ;;
  bootstrap)
    [[ -z $OPT_BROKERS ]] || BROKERS=$OPT_BROKERS
    if ((MESH)); then mesh_bootstrap; else plaintext_bootstrap; fi ;;
  *) usage ;;
esac
