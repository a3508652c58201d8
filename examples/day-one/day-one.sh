#!/usr/bin/env bash
# day-one.sh replays, through accessctl, what a worker, a manager, the
# portals team and a portal backend do on the first day of real use
# (issue 15's list): against a running engine (make run) whose data
# directory is DATA_DIR, at ACCESSLEDGER_SERVER. It prints each command
# and its answer; a refusal is printed, not fatal.
#
#   make run DATA_DIR=/tmp/day-one ADDR=127.0.0.1:18080 &
#   DATA_DIR=/tmp/day-one ACCESSLEDGER_SERVER=http://127.0.0.1:18080 examples/day-one/day-one.sh
set -uo pipefail

DATA_DIR=${DATA_DIR:-./data}
export ACCESSLEDGER_SERVER=${ACCESSLEDGER_SERVER:-http://127.0.0.1:8080}
ACCESSCTL=${ACCESSCTL:-go run ./cmd/accessctl}
ACCESSD=${ACCESSD:-go run ./cmd/accessd}
TOKENS=$(mktemp -d)
trap 'rm -rf "$TOKENS"' EXIT
SUFFIX=${SUFFIX:-$(date +%s)}

token() { # role sub
	(umask 077 && $ACCESSD token --data-dir "$DATA_DIR" --role "$1" --sub "$2" >"$TOKENS/$2")
}
token worker worker-ann
token worker worker-bob
token manager manager-meg
token portals_team portals-pat
token service portal-backend
token auditor auditor-al
token dpo dpo-dee

# as SUB VERB...: run accessctl as SUB, printing the command and the answer.
as() {
	local who=$1
	shift
	echo "\$ accessctl $* # as $who"
	$ACCESSCTL --token-file "$TOKENS/$who" "$@" 2>&1
	echo
}
# json SUB FIELD VERB...: as, quietly, answering the first value of FIELD in
# the JSON answer.
json() {
	local who=$1 field=$2 value
	shift 2
	value=$($ACCESSCTL --token-file "$TOKENS/$who" --output json "$@" | grep -o "\"$field\": \"[^\"]*\"" | head -1 | cut -d'"' -f4)
	printf '$ accessctl %s # as %s\n%s  %s\n\n' "$*" "$who" "$field" "$value" >&2
	echo "$value"
}
section() { printf '\n## %s\n\n' "$*"; }

REF="NCC-2024-$SUFFIX"
CARER="carer.$SUFFIX@example.org"
PARENT="parent.$SUFFIX@example.org"

section "A reference names one child (R17); a worker finds it, its placements and the caseload"
as worker-ann register-child --reference "$REF"
as worker-bob register-child --reference "${REF,,}"
CHILD=$(json worker-ann child_id child --reference "$REF")
as worker-ann child --reference "$REF"
as manager-meg caseload --worker worker-ann

section "Accounts: invite, activate, enrol a phone, find (R9, R11)"
CARER_ID=$(json worker-ann account_id invite --email "$CARER" --kind foster_carer)
as portal-backend activate --account "$CARER_ID" --identity-subject "idp|carer-$SUFFIX" --email "$CARER"
PARENT_ID=$(json worker-ann account_id invite --email "$PARENT" --kind parent)
as portal-backend activate --account "$PARENT_ID" --identity-subject "idp|parent-$SUFFIX" --email "$PARENT"
POS=$(json portal-backend position enrol-phone --account "$CARER_ID" --phone "+44 7700 900456")
as portals-pat accounts --email "$CARER" --min-position "$POS"

section "A mistaken invitation (R18): named on re-invite, cancelled, invited again"
WRONG="wrong.$SUFFIX@example.org"
WRONG_ID=$(json worker-ann account_id invite --email "$WRONG" --kind parent)
as worker-ann invite --email "$WRONG" --kind parent
as worker-ann cancel-invitation --account "$WRONG_ID" --reason "sent to the wrong address"
as worker-ann invite --email "$WRONG" --kind guardian

section "Placements: place now, end now, by the id the child's record lists (R2, R3)"
P1=$(json worker-ann placement_id place --child "$CHILD" --carer "$CARER_ID" --started-at "$(date -u -d '-30 days' +%FT%TZ)")
as worker-ann end-placement --child "$CHILD" --placement "$P1" --reason "moved to a new carer"
as worker-ann child --child "$CHILD"

section "R6 edge: a planned placement of the same carer does not end the grace period; it can be cancelled (R18)"
P2=$(json worker-ann placement_id place --child "$CHILD" --carer "$CARER_ID" --started-at "$(date -u -d '+3 days' +%FT%TZ)")
as portal-backend check --account "$CARER_ID" --child "$CHILD" --permission view
as worker-ann end-grace --child "$CHILD" --placement "$P1" --reason "safeguarding concern"
as worker-ann cancel-placement --child "$CHILD" --placement "$P2" --reason "the carer withdrew"
as worker-ann child --child "$CHILD"

section "Accepted before although wrong: now refused"
as worker-ann grant --child "$CHILD" --account "$CARER_ID" --relationship parent --permissions view --reason "mistake"
as worker-ann place --child "$CHILD" --carer "$CARER_ID" --started-at "9999-12-30T00:00:00Z"
as worker-bob register-child --reference "NCC-$SUFFIX-ZWSP$(printf '\u200b')"

section "Unknown ids: 404, not an empty answer"
as auditor-al history --child 00000000-0000-4000-8000-000000000001
as portal-backend check --account 00000000-0000-4000-8000-000000000002 --child "$CHILD" --permission view

section "Grants, a closed account reopened (R18): no access comes back by itself"
as worker-ann grant --child "$CHILD" --account "$PARENT_ID" --relationship parent --permissions view --reason "contact agreed at the review"
as portals-pat close-account --account "$PARENT_ID" --reason "closed by mistake"
as portals-pat reopen-account --account "$PARENT_ID" --reason "the wrong account was closed"
as portal-backend check --account "$PARENT_ID" --child "$CHILD" --permission view
as worker-ann grant --child "$CHILD" --account "$PARENT_ID" --relationship parent --permissions view --reason "contact restored"
as portal-backend check --account "$PARENT_ID" --child "$CHILD" --permission view

section "An email changed (R18): requested by a worker, applied by the portals team; the old one is free"
NEWMAIL="parent.moved.$SUFFIX@example.org"
as worker-ann request-email-change --account "$PARENT_ID" --email "$NEWMAIL" --reason "the parent has a new address"
POS=$(json portals-pat position change-email --account "$PARENT_ID" --email "$NEWMAIL")
as portals-pat accounts --email "$NEWMAIL" --min-position "$POS"
as portals-pat accounts --email "$PARENT" --min-position "$POS"
as worker-ann invite --email "$PARENT" --kind guardian

section "The policy as events (R25)"
as manager-meg set-policy --grace-period 2s --reason "demo: a short grace period"
as worker-ann policy
P3=$(json worker-ann placement_id place --child "$CHILD" --carer "$CARER_ID")
as worker-ann end-placement --child "$CHILD" --placement "$P3" --reason "respite ended"
sleep 5 # the grace period runs out; the process manager records it
as manager-meg set-policy --grace-period 168h --reason "back to the FAQ's seven days"

section "History says why: events, actors, reasons (R15)"
POS=$(json worker-ann position child --child "$CHILD")
as auditor-al history --child "$CHILD" --min-position "$POS"
as auditor-al history --account "$PARENT_ID" --min-position "$POS"

section "Records moved over from an older system keep their real dates (R24)"
IMPORT=$(mktemp --suffix=.jsonl)
cat >"$IMPORT" <<EOF
{"kind":"child","reference":"OLD-$SUFFIX","worker_id":"worker-ann","registered_at":"2019-04-01T09:00:00Z"}
{"kind":"account","email":"old.carer.$SUFFIX@example.org","account_kind":"foster_carer","invited_at":"2019-03-01T09:00:00Z","activated_at":"2019-03-02T09:00:00Z","identity_subject":"idp|old-$SUFFIX"}
{"kind":"placement","legacy_id":"PL-$SUFFIX","child_reference":"OLD-$SUFFIX","carer_email":"old.carer.$SUFFIX@example.org","started_at":"2019-04-02T09:00:00Z","ended_at":"2021-06-30T17:00:00Z","reason":"placement from the old system"}
EOF
echo "\$ accessd import --file import.jsonl --dry-run"
$ACCESSD import --data-dir "$DATA_DIR" --file "$IMPORT" --dry-run 2>&1
echo "\$ accessd import --file import.jsonl"
$ACCESSD import --data-dir "$DATA_DIR" --file "$IMPORT" 2>&1 | tee "$TOKENS/import.out" | grep -v '^import: '
POS=$(sed -n 's/^position: *\([0-9.]*\).*/\1/p' "$TOKENS/import.out")
echo "\$ accessd import --file import.jsonl   # again"
$ACCESSD import --data-dir "$DATA_DIR" --file "$IMPORT" 2>&1 | grep appended
rm -f "$IMPORT"
OLD=$(json worker-ann child_id child --reference "OLD-$SUFFIX")
OLD_CARER=$(json portals-pat account_id accounts --email "old.carer.$SUFFIX@example.org" --min-position "$POS")
as portal-backend check --account "$OLD_CARER" --child "$OLD" --permission record --at 2020-01-01T12:00:00Z --min-position "$POS"
as portal-backend check --account "$OLD_CARER" --child "$OLD" --permission view --at 2021-07-03T12:00:00Z --min-position "$POS"
as auditor-al history --child "$OLD" --min-position "$POS"

section "Hygiene"
echo "\$ accessd token --role worker --sub worker-ann --ttl 876000h"
$ACCESSD token --data-dir "$DATA_DIR" --role worker --sub worker-ann --ttl 876000h 2>&1 | head -2
as portal-backend watch --after 0 --count 3
