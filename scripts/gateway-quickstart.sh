#!/usr/bin/env bash
# scripts/gateway-quickstart.sh - the gateways in one command: a real single-broker Kafka on
# loopback (scripts/kafka.sh), the topic `sensors.temp`, and in front of it `weir gateway mqtt`
# (examples/gateway/mqtt.yaml) and `weir gateway http` (examples/gateway/http.yaml).
#
#   MQTT clients connect to 127.0.0.1:11885, HTTP clients to 127.0.0.1:18090 (no credentials
#   in this example); metrics, health, readiness at http://127.0.0.1:9905 (MQTT) and :9906
#   (HTTP) /{metrics,healthz,readyz}
#
# Ctrl-C stops the gateways, then the Kafka broker this script started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release -p weir
started=0
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start --brokers 1
  started=1
fi
http_pid=""
cleanup() {
  if [[ -n $http_pid ]]; then kill "$http_pid" 2>/dev/null && wait "$http_pid" 2>/dev/null; fi
  if ((started)); then scripts/kafka.sh stop; fi
}
trap cleanup EXIT
scripts/kafka.sh run org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 \
  --create --if-not-exists --topic sensors.temp --partitions 3 >/dev/null

weir=${CARGO_TARGET_DIR:-target}/release/weir
"$weir" gateway http --config examples/gateway/http.yaml &
http_pid=$!

cat >&2 <<'MSG'
weir: MQTT gateway on 127.0.0.1:11885 and HTTP gateway on 127.0.0.1:18090 in front of Kafka at
127.0.0.1:9092. Try, in another shell:
  mosquitto_sub -p 11885 -t 'sensors/+/temp' -v &
  curl -sN http://127.0.0.1:18090/topics/sensors.temp/events &
  mosquitto_pub -p 11885 -t sensors/7/temp -q 1 -m 21.5
  curl -s -X POST http://127.0.0.1:18090/topics/sensors.temp -H 'Content-Type: application/json' \
    --data '{"records": [{"key": 8, "value": 19.0}]}'
  scripts/kafka.sh run org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server 127.0.0.1:9092 \
    --topic sensors.temp --from-beginning --formatter-property print.key=true --formatter-property print.headers=true
MSG
# Not exec: the trap must run after the gateway exits to stop Kafka.
"$weir" gateway mqtt --config examples/gateway/mqtt.yaml "$@"
