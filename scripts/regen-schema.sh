#!/usr/bin/env bash
# scripts/regen-schema.sh - write crates/weir-wire/src/schema/generated.rs from the JSON
# message specs inside the kafka-clients jar of the Kafka that kafka/pom.xml pins (the same
# jar the tests run against; Maven fetches it into ~/.m2).
#
#   scripts/regen-schema.sh            regenerate the file
#   scripts/regen-schema.sh --check    fail if the checked-in file differs (CI runs this)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

jar=$(scripts/kafka.sh classpath | tr ':' '\n' | grep -E '/kafka-clients-[0-9][^/]*\.jar$' | head -n1)
[[ -f $jar ]] || { echo "regen-schema.sh: no kafka-clients jar on the Kafka classpath" >&2; exit 1; }
version=$(basename "$jar" .jar); version=${version#kafka-clients-}

specs=$(mktemp -d); trap 'rm -rf "$specs"' EXIT
# The JDK that runs Kafka has `jar`; unzip is not always installed.
(cd "$specs" && jar xf "$jar" common/message)
cargo run -q -p weir-wire-gen -- --specs "$specs/common/message" --kafka-version "$version" \
  --out crates/weir-wire/src/schema/generated.rs "$@"
