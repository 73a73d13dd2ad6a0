#!/usr/bin/env bash
# Times `medvault add` of one file for several builds in alternation, with
# `age -e` of the same file beside them, and prints each one's runs sorted
# and their median. Every add goes into a fresh vault, and every command
# starts from the same page cache (settle, in lib.sh). On a VM whose speed
# drifts from minute to minute, alternating is what makes two builds
# comparable; add-get.sh measures one build.
#
#   bash docs/bench/add-alternate.sh [-n RUNS] [-s SIZE_MIB] BINARY...
#
# Build the binaries first, e.g. `go build -o /tmp/mv-new ./cmd/medvault`
# in each tree. Needs the age CLI. Uses ${BENCH_DIR:-/var/tmp}.
set -euo pipefail
runs=5 size_mib=1024
while getopts n:s: o; do
	case $o in
	n) runs=$OPTARG ;;
	s) size_mib=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-n RUNS] [-s SIZE_MIB] BINARY..." >&2; exit 2; }
command -v age >/dev/null || { echo "install age first (Debian package age)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" # measure, median

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medvault-alt.XXXXXX")
trap 'rm -rf "$work"' EXIT
head -c $((size_mib << 20)) /dev/urandom >"$work/in.bin"
printf 'bench\n' >"$work/pass"
export MEDVAULT_PASSPHRASE_FILE=$work/pass MEDVAULT_INSECURE_TEST_SCRYPT_WORK_FACTOR=10
export PREREAD=$work/in.bin
age-keygen -o "$work/key.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/key.txt")

# Each run takes the builds in another order: on the development VM the
# add right after age -e measured slower than the next, which favoured
# whichever build came later (1844 against 1283 ms in one fixed order,
# 1685 against 1550 with the order rotated).
declare -A ms
bins=("$@")
for i in $(seq 0 $((runs - 1))); do
	rm -f "$work/out.age"
	read -r t _ < <(measure age -e -r "$recipient" -o "$work/out.age" "$work/in.bin")
	ms[age -e]+="$t "
	rm -f "$work/out.age"
	for j in $(seq 0 $((${#bins[@]} - 1))); do
		b=${bins[$(((i + j) % ${#bins[@]}))]}
		export MEDVAULT_HOME=$work/home
		rm -rf "$MEDVAULT_HOME"
		"$b" init >/dev/null 2>&1
		read -r t _ < <(measure "$b" add "$work/in.bin" --category imaging)
		ms[$b]+="$t "
	done
done
printf '%-40s %8s   %s\n' "add of $size_mib MiB, $runs runs" "median" "runs (ms, sorted)"
for k in "age -e" "$@"; do
	sorted=$(echo "${ms[$k]}" | tr ' ' '\n' | grep . | sort -n | tr '\n' ' ')
	printf '%-40s %8s   %s\n' "$k" "$(echo "$sorted" | tr ' ' '\n' | grep . | median)" "$sorted"
done
