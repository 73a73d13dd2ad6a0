#!/usr/bin/env bash
# Prints medvault add/get throughput and peak anonymous memory (RssAnon)
# side by side with the age CLI on the same file, medians of RUNS runs, what
# bbolt alone takes to store as many bytes the way add does (the ceiling for
# add), and the start-up time of `medvault --help` (startup.sh). As root it also times
# get and age -d cold, with nothing in the page cache (as after a reboot).
#
#   bash docs/bench/add-get.sh [SIZE_MIB] [RUNS]     (defaults: 1024 3)
#
# Needs the age CLI (Debian package "age"; installed if missing and root).
# Uses a scratch directory under ${BENCH_DIR:-/var/tmp}; needs ~4x SIZE free.
# Run as root, it drops the machine's page cache before each measured
# command (settle, in lib.sh), so other programs' cached files are read
# from disk again afterwards; as another user it only syncs.
set -euo pipefail
cd "$(dirname "$0")/../.."
size_mib=${1:-1024}
runs=${2:-3}
if ! command -v age >/dev/null; then
	if [ "$(id -u)" = 0 ]; then apt-get install -y -qq age >/dev/null; else echo "install age first" >&2; exit 1; fi
fi
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medvault-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
go build -o "$work/medvault" ./cmd/medvault
mv=$work/medvault
export MEDVAULT_INSECURE_TEST_SCRYPT_WORK_FACTOR=10
printf 'bench\n' >"$work/pass"
export MEDVAULT_PASSPHRASE_FILE=$work/pass
age-keygen -o "$work/key.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/key.txt")
head -c $((size_mib << 20)) /dev/urandom >"$work/in.bin"

. docs/bench/lib.sh # measure, median

declare -A ms kib
ops="age-enc mv-add age-dec mv-get"
for op in $ops age-dec-cold mv-get-cold; do ms[$op]=""; kib[$op]=""; done
# Each round adds into a vault of its own and gets from it, as age -e and
# age -d each write and read a file of their own, so the page cache before
# each command holds as much (settle reads back only the measured command's
# input). With all rounds' records in one vault, get started with three
# times the bytes cached that age -d did, and on this VM a 1 GiB dd after
# reading back that much took 1.7-3.0 s instead of 0.3: its pages came from
# memory the balloon had given back to the host (lib.sh). Even so, the
# command that ran right after the other one's output was deleted paid
# 1.5-2 s more system time on some days (get after age -d: 2.3 s, get after
# get: 0.8 s), so the two decryptions run in the order age, get, get, age:
# each is measured twice a round, once in each position.
for r in $(seq "$runs"); do
	rm -f "$work/out.age"
	export PREREAD=$work/in.bin
	read -r t k < <(measure age -e -r "$recipient" -o "$work/out.age" "$work/in.bin"); ms[age-enc]+="$t "; kib[age-enc]+="$k "
	rm -rf "$work/home"
	export MEDVAULT_HOME=$work/home
	"$mv" init >/dev/null 2>&1
	read -r t k < <(measure "$mv" add "$work/in.bin" --category imaging); ms[mv-add]+="$t "; kib[mv-add]+="$k "
	id=$("$mv" list --json | awk -F'"' '/"id"/ {print $4}')
	for op in age-dec mv-get mv-get age-dec; do
		rm -f "$work/out.bin"
		if [ "$op" = age-dec ]; then
			export PREREAD=$work/out.age
			read -r t k < <(measure age -d -i "$work/key.txt" -o "$work/out.bin" "$work/out.age")
		else
			export PREREAD=$MEDVAULT_HOME/vault.db
			read -r t k < <(measure "$mv" get "$id" -o "$work/out.bin")
			cmp -s "$work/out.bin" "$work/in.bin" || { echo "round trip mismatch" >&2; exit 1; }
		fi
		ms[$op]+="$t "
		kib[$op]+="$k "
	done
	rm -f "$work/out.bin"
done
# Cold, as after a reboot (root only: settle then drops the page cache and
# reads nothing back): the record, and age's input file, come from the disk.
if [ -w /proc/sys/vm/drop_caches ]; then
	export PREREAD=
	for _ in $(seq "$runs"); do
		rm -f "$work/out.bin"
		read -r t k < <(measure "$mv" get "$id" -o "$work/out.bin"); ms[mv-get-cold]+="$t "; kib[mv-get-cold]+="$k "
		rm -f "$work/out.bin"
		read -r t k < <(measure age -d -i "$work/key.txt" -o "$work/out.bin" "$work/out.age"); ms[age-dec-cold]+="$t "; kib[age-dec-cold]+="$k "
	done
	rm -f "$work/out.bin"
	ops+=" age-dec-cold mv-get-cold"
fi

mbps() { awk -v s="$size_mib" -v t="$1" 'BEGIN {printf "%.0f", s * 1.048576 / (t / 1000)}'; }
printf '%-28s %10s %10s %14s\n' "operation ($size_mib MiB, median of $runs)" "ms" "MB/s" "peak RssAnon"
for op in $ops; do
	t=$(echo "${ms[$op]}" | tr ' ' '\n' | grep . | median)
	k=$(echo "${kib[$op]}" | tr ' ' '\n' | grep . | median)
	printf '%-28s %10s %10s %10s MiB\n' "$op" "$t" "$(mbps "$t")" "$((k / 1024))"
done
add=$(echo "${ms[mv-add]}" | tr ' ' '\n' | grep . | median); enc=$(echo "${ms[age-enc]}" | tr ' ' '\n' | grep . | median)
get=$(echo "${ms[mv-get]}" | tr ' ' '\n' | grep . | median); dec=$(echo "${ms[age-dec]}" | tr ' ' '\n' | grep . | median)
echo "(age-dec and mv-get: medians of $((2 * runs)), two a round in the order age, get, get, age)"
awk -v a="$add" -v e="$enc" -v g="$get" -v d="$dec" 'BEGIN {printf "add/age-enc throughput ratio: %.2f (goal >= 0.70)\nget/age-dec throughput ratio: %.2f (goal >= 0.90)\n", e/a, d/g}'
echo "note: medvault add fsyncs every transaction; age -e does not sync. age -e + sync:"
rm -f "$work/out.age"
export PREREAD=$work/in.bin
read -r t _ < <(measure sh -c "age -e -r $recipient -o $work/out.age $work/in.bin && sync $work/out.age")
printf '%-28s %10s %10s\n' "age-enc+sync" "$t" "$(mbps "$t")"
# What bbolt alone allows: the same bytes stored as add's committer stores
# them (256 KiB values, 8 MiB transactions, fsync), from values made
# beforehand: no reading, encryption or hashing (BenchmarkStoreFloor).
go test -c -o "$work/vault.test" ./vault
floor=""
for _ in $(seq "$runs"); do
	settle
	floor+="$(MEDVAULT_BENCH_SIZE=$((size_mib << 20)) TMPDIR=$work "$work/vault.test" -test.run '^$' -test.bench StoreFloor -test.benchtime 1x |
		awk '/^BenchmarkStoreFloor/ {printf "%d ", $3 / 1e6}')"
done
t=$(echo "$floor" | tr ' ' '\n' | grep . | median)
printf '%-28s %10s %10s   (bbolt alone: the ceiling for add)\n' "bbolt-store" "$t" "$(mbps "$t")"

# Start-up, side by side with the BRIEF's reference (startup.sh).
bash docs/bench/startup.sh 21
