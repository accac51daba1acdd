#!/usr/bin/env bash
# bench/control.sh - what `weir control` costs as the mesh grows: for each fleet size N it
# starts a fresh control plane, connects N simulated sidecars (the real control client, each
# with its own certificate and mutual-TLS stream, ACKing every snapshot; see
# crates/weir-control/examples/fleet.rs), applies policy changes and prints, per change, the
# time from `apply` to the last sidecar's ACK-ready snapshot (p50, p99, max over the sidecars),
# and the control plane's RSS and CPU.
#
#   bench/control.sh [N ...]      default: 100 1000 5000; CHANGES=K changes each (default 5)
#   WEIR=PATH bench/control.sh    another `weir` binary (a paired A/B against an older build)
#   PIN=1 bench/control.sh ...    the control plane on CPU 0, the fleet on CPU 1 (taskset), so
#                                 that neither takes the other's core
#
# Everything runs on this machine (unpinned, the fleet and the control plane share its cores).
# No Kafka is needed: the fleet's workload names a cluster no sidecar connects to.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SIZES=("${@:-100 1000 5000}")
read -r -a SIZES <<< "${SIZES[*]}"
CHANGES=${CHANGES:-5}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# Two commands: naming an example builds only that target, not the `weir` binary.
cargo build --release -p weir --bin weir >&2
cargo build --release -p weir-control --example fleet >&2
WEIR=${WEIR:-$TARGET/release/weir}
FLEET=$TARGET/release/examples/fleet

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
ticks=$(getconf CLK_TCK)

control_cpu=() fleet_cpu=()
if [[ ${PIN:-0} == 1 ]]; then
  control_cpu=(taskset -c 0) fleet_cpu=(taskset -c 1)
fi

printf '%-8s %-10s %-12s %-12s %-12s %-14s %-14s %-8s %s\n' sidecars connect_s "p50 ms" "p99 ms" "max ms" "RSS MB" "peak MB" "CPU s" "bytes/sidecar/change"
for n in "${SIZES[@]}"; do
  dir=$(mktemp -d /tmp/weir-bench-control.XXXXXX)
  "${control_cpu[@]}" "$WEIR" control --data-dir "$dir" --api 127.0.0.1:25080 --listen 127.0.0.1:25012 --log-level warn > "$dir/control.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:25080/healthz >/dev/null 2>&1 && break; sleep 0.1; done
  c0=$(cpu "$pid")
  out=$("${fleet_cpu[@]}" "$FLEET" --api 127.0.0.1:25080 --control 127.0.0.1:25012 --data-dir "$dir" --sidecars "$n" --changes "$CHANGES")
  c1=$(cpu "$pid")
  echo "$out" > "$dir/fleet.out"
  connect=$(echo "$out" | sed -n 's/^connected .* seconds=\([0-9.]*\).*/\1/p')
  # Medians over the changes.
  med() { echo "$out" | sed -n "s/^change .* $1=\([0-9.]*\).*/\1/p" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  printf '%-8s %-10s %-12s %-12s %-12s %-14s %-14s %-8s %s\n' "$n" "$connect" "$(med p50_ms)" "$(med p99_ms)" "$(med max_ms)" \
    "$(awk -v k="$(rss "$pid")" 'BEGIN {printf "%.1f", k / 1024}')" "$(awk -v k="$(hwm "$pid")" 'BEGIN {printf "%.1f", k / 1024}')" \
    "$(awk -v t=$((c1 - c0)) -v h="$ticks" 'BEGIN {printf "%.1f", t / h}')" "$(med bytes_per_sidecar)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
done
echo "(p50/p99/max: medians over $CHANGES changes of the time from apply to each sidecar holding the new snapshot; RSS after the changes, peak over the run; CPU: the control plane's, connecting included; bytes: median per change of what the control plane's sidecar connections sent, TLS and framing included, per sidecar)"
