#!/bin/sh
# A local walkthrough of medvault in a throwaway directory: create a vault,
# add records, list, read, label, delete. Needs only Go.
set -eu
cd "$(dirname "$0")/.."
go build -o "${TMPDIR:-/tmp}/medvault-walkthrough" ./cmd/medvault
mv=${TMPDIR:-/tmp}/medvault-walkthrough
work=$(mktemp -d)
trap 'rm -rf "$work" "$mv"' EXIT
export MEDVAULT_HOME="$work/home"
# A throwaway vault: low scrypt cost (the variable's name says it is for tests).
export MEDVAULT_INSECURE_TEST_SCRYPT_WORK_FACTOR=10
printf 'walkthrough passphrase\n' > "$work/pass"
export MEDVAULT_PASSPHRASE_FILE="$work/pass"

# quote prints its argument as a shell would need it typed: in single
# quotes unless it is only safe characters.
quote() {
	case $1 in
	'' | *[!A-Za-z0-9_./:=+,@%-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
	*) printf '%s' "$1" ;;
	esac
}
# run prints the command line, quoted, then runs it. The line goes to
# standard error, so it shows even when the output is captured ($(run ...))
# or thrown away (run ... >/dev/null).
run() {
	{
		printf '\n$ medvault'
		for a in "$@"; do printf ' %s' "$(quote "$a")"; done
		printf '\n'
	} >&2
	"$mv" "$@"
}

run init --name "Ada Lovelace"
printf 'HbA1c 6.1 %%; fasting glucose 5.9 mmol/L\n' > "$work/a1c.txt"
printf 'Discussed low mood and sleep.\n' > "$work/note.txt"
id=$(run add "$work/a1c.txt" --category labs --title "HbA1c" --date 2026-01-15 | tail -n 1)
run add "$work/note.txt" --category notes --title "Therapy note" --label MH >/dev/null
run list
run show "$id"
run get "$id"
run label "$id" +GDIS
run rm "$id" --yes
run list
