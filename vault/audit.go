package vault

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// Audit summarises the ledger for the vault's owner: who other than the
// owner accessed what, every refusal, and patterns worth a look.
type Audit struct {
	Entries   int64
	Actors    []ActorAudit // other people, most recent first
	Denials   []ledger.Entry
	Anomalies []string
}

// ActorAudit is one other person's activity.
type ActorAudit struct {
	Actor    identity.ID
	Served   int // requests served
	Records  int // distinct records served, however many requests asked for them
	Denied   int
	First    time.Time
	Last     time.Time
	Purposes []string
}

// ServeHeld is the reason of a serve entry, outcome ok, that names the
// records a request admitted but the node did not send because the
// provider already held them (share's unsentHeld).
const ServeHeld = "held"

// AuditDenialBurst is how many refusals from one actor within an hour
// count as an anomaly.
const AuditDenialBurst = 3

// Audit reads the whole ledger and summarises it.
func (v *Vault) Audit() (*Audit, error) {
	a := &Audit{}
	byActor := map[identity.ID]*ActorAudit{}
	recent := map[identity.ID][]time.Time{}
	owner := v.id.ID()
	flagged := map[identity.ID]bool{}
	// served counts, per actor and record, the requests that sent it: a
	// record the provider asks for again is one record, and a record a
	// request admitted but did not send (a failed serve entry names it)
	// counts only if another request sent it.
	served := map[identity.ID]map[string]int{}
	err := v.Entries(0, func(i int64, e *ledger.Entry) error {
		a.Entries++
		if e.Action == ledger.ActionKeep {
			// Something a patient's node sent a provider, kept: the
			// patient is named, but accessed nothing of this vault.
			return nil
		}
		actor, err := identity.IDFromBytes(e.Actor)
		if err != nil || actor == owner {
			if e.Outcome == ledger.OutcomeDenied {
				a.Denials = append(a.Denials, *e)
			}
			return nil
		}
		aa := byActor[actor]
		if aa == nil {
			aa = &ActorAudit{Actor: actor, First: e.Time}
			byActor[actor] = aa
		}
		aa.Last = e.Time
		if e.Purpose != "" && !slices.Contains(aa.Purposes, e.Purpose) {
			aa.Purposes = append(aa.Purposes, e.Purpose)
		}
		switch {
		case e.Outcome == ledger.OutcomeDenied:
			aa.Denied++
			a.Denials = append(a.Denials, *e)
			ts := append(recent[actor], e.Time)
			for len(ts) > 0 && e.Time.Sub(ts[0]) > time.Hour {
				ts = ts[1:]
			}
			recent[actor] = ts
			if len(ts) >= AuditDenialBurst && !flagged[actor] {
				flagged[actor] = true
				a.Anomalies = append(a.Anomalies, fmt.Sprintf("%s was refused %d times within an hour (last: %s, %s)",
					actor, len(ts), e.Time.UTC().Format(time.RFC3339), e.Reason))
			}
		case e.Action == ledger.ActionServe:
			// A failed entry names records the request admitted but the
			// node did not send (withdrawn, damaged, the grant ended, the
			// transfer was cut), and an ok entry with reason "held" those
			// it did not send again because the provider held them: the
			// served entry before it counted them.
			step := -1
			if e.Outcome != ledger.OutcomeFailed && e.Reason != ServeHeld {
				aa.Served++
				step = 1
			}
			if served[actor] == nil {
				served[actor] = map[string]int{}
			}
			for _, s := range e.Subjects {
				if len(s) == len(record.ID{}) {
					served[actor][string(s)] += step
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, aa := range byActor {
		for _, n := range served[aa.Actor] {
			if n > 0 {
				aa.Records++
			}
		}
		a.Actors = append(a.Actors, *aa)
	}
	slices.SortFunc(a.Actors, func(x, y ActorAudit) int { return y.Last.Compare(x.Last) })
	return a, nil
}

// AuditEvents renders every ledger entry that records another person's
// access, or any refusal, as a FHIR R4 AuditEvent (JSON), for an EHR or a
// compliance tool, and passes fn the event and its Bundle fullUrl. Record
// IDs are medvault record IDs; the agent is the actor's medvault ID. An
// event's id is a UUID named by the vault owner and the entry's index
// (see auditEventID): the same at every rendering, and distinct between
// patients, so a tool gathering several patients' events keeps them all.
func (v *Vault) AuditEvents(fn func(fullURL string, event []byte) error) error {
	owner := v.id.ID()
	return v.Entries(0, func(i int64, e *ledger.Entry) error {
		if e.Action == ledger.ActionKeep {
			// As in Audit: the patient a keep entry names sent
			// something to this vault and accessed nothing of it (and
			// its Grant is a keyed tag of a bucket key, no grant ID).
			return nil
		}
		actor, err := identity.IDFromBytes(e.Actor)
		other := err == nil && actor != owner
		if !other && e.Outcome != ledger.OutcomeDenied {
			return nil
		}
		id := auditEventID(owner, i)
		who := hex.EncodeToString(e.Actor)
		if err == nil {
			who = actor.String()
		}
		ev := map[string]any{
			"resourceType": "AuditEvent",
			"id":           id,
			"type": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
				"display": "RESTful Operation"},
			"action":   auditAction(e.Action),
			"recorded": e.Time.UTC().Format(time.RFC3339Nano),
			"outcome":  auditOutcome(e.Outcome),
			"agent": []any{map[string]any{
				"who":       map[string]any{"identifier": map[string]any{"system": "urn:medvault:id", "value": who}},
				"requestor": true,
			}},
			"source": map[string]any{"observer": map[string]any{"display": "medvault ledger of " + owner.String()}},
		}
		if e.Reason != "" {
			ev["outcomeDesc"] = e.Reason
			if e.Action == ledger.ActionServe && e.Reason == ServeHeld {
				ev["outcomeDesc"] = "held: not sent, the requester already held these records"
			}
		}
		if e.Purpose != "" {
			ev["purposeOfEvent"] = []any{map[string]any{"coding": []any{map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": e.Purpose}}}}
		}
		var entities []any
		for _, s := range e.Subjects {
			if len(s) == 16 {
				entities = append(entities, map[string]any{"what": map[string]any{"identifier": map[string]any{
					"system": "urn:medvault:record", "value": hex.EncodeToString(s)}}})
			}
		}
		if len(e.Grant) > 0 {
			entities = append(entities, map[string]any{"what": map[string]any{"identifier": map[string]any{
				"system": "urn:medvault:grant", "value": hex.EncodeToString(e.Grant)}}})
		}
		if entities != nil {
			ev["entity"] = entities
		}
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		return fn("urn:uuid:"+id, b)
	})
}

// auditEventDomain separates the hash naming AuditEvents from every other.
const auditEventDomain = "medvault/audit-event/v1"

// auditEventID names the AuditEvent of ledger entry i of owner's vault: a
// UUID (RFC 9562 version 8) made of the first 16 bytes of
// SHA-256(auditEventDomain || 0x00 || owner || uint64 big-endian i). A
// FHIR id is unique per resource type wherever the resource travels;
// "medvault-<i>" was the same in every patient's vault.
func auditEventID(owner identity.ID, i int64) string {
	h := sha256.New()
	h.Write([]byte(auditEventDomain))
	h.Write([]byte{0})
	h.Write(owner.Bytes())
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(i)))
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // variant 10
	x := hex.EncodeToString(u)
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// auditAction maps a ledger action to AuditEvent.action (C, R, U, D, E).
func auditAction(a ledger.Action) string {
	switch a {
	case ledger.ActionAdd, ledger.ActionImport, ledger.ActionReceive, ledger.ActionGrant:
		return "C"
	case ledger.ActionLabel, ledger.ActionRevoke:
		return "U"
	case ledger.ActionRemove:
		return "D"
	case ledger.ActionRead, ledger.ActionServe, ledger.ActionExport:
		return "R"
	}
	return "E"
}

// auditOutcome maps an outcome to AuditEvent.outcome (0 success, 4 minor
// failure, 8 serious failure).
func auditOutcome(o ledger.Outcome) string {
	switch o {
	case ledger.OutcomeOK:
		return "0"
	case ledger.OutcomeDenied:
		return "4"
	}
	return "8"
}
