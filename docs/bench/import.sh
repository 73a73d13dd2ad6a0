#!/usr/bin/env bash
# Prints the time and peak anonymous memory (RssAnon) of `medvault import`
# of generated FHIR NDJSON files of each size given, each into a fresh
# vault: memory should not grow with the number of resources.
#
#   bash docs/bench/import.sh [RESOURCES...]      (default: 100000 400000)
#
# Uses a scratch directory under ${BENCH_DIR:-/var/tmp}; the files are
# ~670 bytes per resource.
set -euo pipefail
cd "$(dirname "$0")/../.."
. docs/bench/lib.sh # measure
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 400000)
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medvault-import.XXXXXX")
trap 'rm -rf "$work"' EXIT
go build -o "$work/medvault" ./cmd/medvault
printf 'bench\n' >"$work/pass"
export MEDVAULT_PASSPHRASE_FILE=$work/pass MEDVAULT_INSECURE_TEST_SCRYPT_WORK_FACTOR=10
printf '%-12s %10s %14s\n' resources ms "peak RssAnon"
for n in "${sizes[@]}"; do
	MEDVAULT_GEN_N=$n MEDVAULT_GEN_OUT=$work/in.ndjson go test ./vault/fhir -run '^TestWriteGenerated$' -count=1 >/dev/null
	export MEDVAULT_HOME=$work/home
	rm -rf "$MEDVAULT_HOME"
	"$work/medvault" init >/dev/null 2>&1
	read -r ms kib < <(measure "$work/medvault" import "$work/in.ndjson")
	printf '%-12s %10s %10s MiB\n' "$n" "$ms" "$((kib / 1024))"
done
