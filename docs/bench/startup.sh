#!/usr/bin/env bash
# Prints the start-up time of `medvault --help` (goal < 10 ms) side by side
# with the BRIEF's reference, a cobra program with go-libp2p linked in
# (docs/bench/startup-ref; "6.4 ms" on the machine the BRIEF was written on),
# and an empty Go program (this machine's floor for any Go binary).
# medvault is timed as `go build` makes it and as the README builds it
# (CGO_ENABLED=0: linked statically, no dynamic loader at start).
#
#   bash docs/bench/startup.sh [ROUNDS]     (default 51)
#
# Each round runs every binary once, in turn, so a slow moment of the machine
# falls on all of them; each figure is the median of its ROUNDS runs, timed
# with bash's clock (forking date around each run added ~2 ms).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-51}
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medvault-startup.XXXXXX")
trap 'rm -rf "$work"' EXIT
. docs/bench/lib.sh # median

go build -o "$work/medvault" ./cmd/medvault
CGO_ENABLED=0 go build -o "$work/medvault-static" ./cmd/medvault
go build -o "$work/startup-ref" ./docs/bench/startup-ref
mkdir "$work/empty"
printf 'package main\n\nfunc main() {}\n' >"$work/empty/main.go"
(cd "$work/empty" && printf 'module empty\n\ngo 1.26\n' >go.mod && go build -o "$work/empty-go" .)

names="medvault medvault-static startup-ref empty-go"
# Start after the builds' writes are on disk: writeback took ~3 ms from
# each run otherwise.
sync
for _ in $(seq "$rounds"); do
	for n in $names; do
		s=$EPOCHREALTIME
		"$work/$n" --help >/dev/null
		e=$EPOCHREALTIME
		echo "$n $s $e"
	done
done >"$work/times"
for n in $names; do
	awk -v n="$n" '$1 == n {printf "%d\n", ($3 - $2) * 1e6}' "$work/times" | median |
		awk -v n="$n" '{printf "%-28s %6.1f ms\n", n " --help:", $1 / 1000}'
done
echo "(goal: medvault < 10 ms; medians of $rounds rounds)"
