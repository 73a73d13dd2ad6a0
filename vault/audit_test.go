package vault

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

func TestAudit(t *testing.T) {
	dir := t.TempDir()
	id := mustIdentity(t)
	clock := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	if err := Create(dir, id, Options{Now: now}); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, id, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	doc, _ := identity.Generate("doc", identity.Provider)
	eve, _ := identity.Generate("eve", identity.Provider)
	rec := [][]byte{make([]byte, 16)}
	v.Log(Event{Action: ledger.ActionServe, Actor: doc.ID(), Subjects: rec, Purpose: "TREAT"})
	// Two refusals for doc a day apart: no anomaly. Three for eve in an hour: one.
	clock = clock.Add(24 * time.Hour)
	v.Log(Event{Action: ledger.ActionServe, Actor: doc.ID(), Outcome: ledger.OutcomeDenied, Reason: "expired", Purpose: "TREAT"})
	clock = clock.Add(24 * time.Hour)
	v.Log(Event{Action: ledger.ActionServe, Actor: doc.ID(), Outcome: ledger.OutcomeDenied, Reason: "expired", Purpose: "TREAT"})
	for range 3 {
		clock = clock.Add(10 * time.Minute)
		v.Log(Event{Action: ledger.ActionServe, Actor: eve.ID(), Outcome: ledger.OutcomeDenied, Reason: "wrong-audience"})
	}
	a, err := v.Audit()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Actors) != 2 || len(a.Denials) != 5 {
		t.Fatalf("%d actors, %d denials", len(a.Actors), len(a.Denials))
	}
	for _, x := range a.Actors {
		if x.Actor == doc.ID() && (x.Served != 1 || x.Records != 1 || x.Denied != 2) {
			t.Fatalf("doc: %+v", x)
		}
	}
	if len(a.Anomalies) != 1 || !strings.Contains(a.Anomalies[0], eve.ID().String()) {
		t.Fatalf("anomalies: %q", a.Anomalies)
	}
	var events []string
	v.AuditEvents(func(_ string, b []byte) error { events = append(events, string(b)); return nil })
	if len(events) != 6 || !strings.Contains(events[0], `"resourceType":"AuditEvent"`) || !strings.Contains(events[0], `"action":"R"`) {
		t.Fatalf("%d events; first %s", len(events), events[0])
	}
}

// A provider that asks for the same records again has still received them
// once; a record a request admitted but did not send counts only if
// another request sent it.
func TestAuditCountsDistinctRecords(t *testing.T) {
	v := newTestVault(t)
	doc, _ := identity.Generate("doc", identity.Provider)
	a, b, c, d := record.NewID(), record.NewID(), record.NewID(), record.NewID()
	ids := func(l ...record.ID) [][]byte {
		var out [][]byte
		for _, id := range l {
			out = append(out, bytes.Clone(id[:]))
		}
		return out
	}
	serve := func(outcome ledger.Outcome, l ...record.ID) {
		t.Helper()
		if err := v.Log(Event{Action: ledger.ActionServe, Actor: doc.ID(), Subjects: ids(l...), Purpose: "TREAT", Outcome: outcome}); err != nil {
			t.Fatal(err)
		}
	}
	serve(ledger.OutcomeFailed, d) // with no served entry before it: counts nothing (and does not panic)
	serve(ledger.OutcomeOK, a, b)
	serve(ledger.OutcomeOK, a, b) // the same grant fetched again
	serve(ledger.OutcomeOK, a, b, c)
	serve(ledger.OutcomeFailed, c) // c was withdrawn before it went out
	serve(ledger.OutcomeOK, b)
	serve(ledger.OutcomeFailed, b) // b sent by earlier requests
	au, err := v.Audit()
	if err != nil {
		t.Fatal(err)
	}
	if len(au.Actors) != 1 || au.Actors[0].Served != 4 || au.Actors[0].Records != 2 {
		t.Fatalf("audit: %+v; want 4 requests served, 2 records", au.Actors)
	}
}

// An AuditEvent's id names it among every patient's: a provider or a
// compliance tool that gathers the audits of two patients must not take
// one patient's event for a new version of another's. Each event also
// carries a fullUrl (urn:uuid: of its id), and rendering the ledger again
// gives the same ids.
func TestAuditEventIDsUnique(t *testing.T) {
	doc, _ := identity.Generate("doc", identity.Provider)
	type event struct{ url, id string }
	events := func(v *Vault) []event {
		t.Helper()
		var out []event
		err := v.AuditEvents(func(fullURL string, b []byte) error {
			var ev struct{ ID string }
			if err := json.Unmarshal(b, &ev); err != nil {
				return err
			}
			out = append(out, event{fullURL, ev.ID})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var all []event
	for _, name := range []string{"ada", "bob"} {
		id, _ := identity.Generate(name, identity.Patient)
		dir := t.TempDir()
		if err := Create(dir, id, Options{}); err != nil {
			t.Fatal(err)
		}
		v, err := Open(dir, id, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		v.Log(Event{Action: ledger.ActionServe, Actor: doc.ID(), Subjects: [][]byte{make([]byte, 16)}, Purpose: "TREAT"})
		evs := events(v)
		if len(evs) != 1 || !slices.Equal(evs, events(v)) {
			t.Fatalf("%s: %v, then %v", name, evs, events(v))
		}
		all = append(all, evs...)
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	for _, e := range all {
		if !uuid.MatchString(e.id) || e.url != "urn:uuid:"+e.id {
			t.Errorf("event id %q, fullUrl %q: want a UUID and urn:uuid: of it", e.id, e.url)
		}
	}
	if all[0].id == all[1].id {
		t.Errorf("two patients' events share the id %s", all[0].id)
	}
}
