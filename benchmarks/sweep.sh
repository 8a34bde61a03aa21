#!/bin/sh
# Reproduces benchmarks/README.md: builds cnctl and cnbench-peers, runs every
# scenario, writes the JSON lines to benchmarks/results/, the charts beside
# them and the Markdown tables to benchmarks/results/tables.md.
# Run it as root from the repository root on an otherwise idle machine:
#
#	sh benchmarks/sweep.sh
#
# DURATION (default 3s) sets each throughput and latency run's length.
set -eu
cd "$(dirname "$0")/.."
out=benchmarks/results
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
d=${DURATION:-3s}

go build -o "$bin/cnctl" ./cmd/cnctl
(cd benchmarks/peers && go build -o "$bin/cnbench-peers" ./cmd/cnbench-peers)
mkdir -p "$out"
: >"$out/throughput.jsonl"
: >"$out/other.jsonl"

bench() { # file, args...
	f=$1
	shift
	echo "cnctl bench $*" >&2
	"$bin/cnctl" bench "$@" -json >>"$f"
}

# The headline: live (the default method), sender at full rate alongside.
for m in unicast multicast; do
	for h in 1 4 16; do
		bench "$out/throughput.jsonl" throughput -method live -mode "$m" -handlers "$h" -payload 64 -duration "$d"
	done
done
# Second rows: the receive path alone (drain), by handlers and payload size.
for h in 1 4 16; do
	bench "$out/throughput.jsonl" throughput -method drain -handlers "$h" -payload 64 -duration "$d"
done
for p in 16 256 1024 4096 16384; do
	bench "$out/throughput.jsonl" throughput -method drain -handlers 1 -payload "$p" -duration "$d"
done
# The runtime alone, on the in-memory transport: plain Handler and batch path.
for h in 1 16; do
	bench "$out/throughput.jsonl" throughput -method drain -handlers "$h" -payload 64 -transport memory -duration "$d"
	bench "$out/throughput.jsonl" throughput -method drain -handlers "$h" -payload 64 -transport memory -batch -duration "$d"
done
bench "$out/other.jsonl" latency -duration "$d"
bench "$out/other.jsonl" latency -inflight 8 -duration "$d"
bench "$out/other.jsonl" overload -handlers 4 -duration 10s
bench "$out/other.jsonl" overload -handlers 4 -mode multicast -duration 10s
bench "$out/other.jsonl" proc -procs 3000 -peers "$bin/cnbench-peers"

"$bin/cnbench-peers" plot -dir "$out" "$out/throughput.jsonl"
"$bin/cnbench-peers" table "$out/throughput.jsonl" "$out/other.jsonl" >"$out/tables.md"
echo "wrote $out" >&2
