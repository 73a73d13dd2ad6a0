package share

import (
	"testing"
	"time"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// FindRepeat finds an active grant only when the same one is asked again:
// anything that changes what the grant does (scope, labels, purpose,
// addresses, a later expiry) or a revocation makes a new grant.
func TestFindRepeat(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	if _, err := SaveContact(patient, "dr", cardOf(t, provider), false); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	base := GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{record.Labs}},
		Labels: []record.Label{record.MH}, Purpose: "TREAT", Expiry: now.Add(time.Hour), Hints: []string{"/ip4/127.0.0.1/tcp/1"}}
	g, err := IssueAndStore(patient, base, now)
	if err != nil {
		t.Fatal(err)
	}
	same := base
	same.Expiry = now.Add(time.Hour + 30*time.Second) // within RepeatSlack
	if i, err := FindRepeat(patient, same, now.Add(time.Second)); err != nil || i == nil || i.Grant.ID() != g.ID() {
		t.Fatalf("the same grant asked again: %v %v", i, err)
	}
	for name, change := range map[string]func(p *GrantParams){
		"scope":   func(p *GrantParams) { p.Scope = Scope{Categories: []record.Category{record.Imaging}} },
		"labels":  func(p *GrantParams) { p.Labels = nil },
		"purpose": func(p *GrantParams) { p.Purpose = "ETREAT" },
		"hints":   func(p *GrantParams) { p.Hints = nil },
		"longer":  func(p *GrantParams) { p.Expiry = now.Add(2 * time.Hour) },
		"to another": func(p *GrantParams) {
			p.Audience = openVault(t, "Dr. Other", identity.Provider).Owner().ID()
		},
	} {
		p := base
		change(&p)
		if i, err := FindRepeat(patient, p, now); err != nil || i != nil {
			t.Errorf("%s changed: found %v (%v), want none", name, i, err)
		}
	}
	is, err := FindIssued(patient, g.ID().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := RevokeAndStore(patient, is, now); err != nil {
		t.Fatal(err)
	}
	if i, err := FindRepeat(patient, base, now); err != nil || i != nil {
		t.Fatalf("a revoked grant counted as the same: %v %v", i, err)
	}
}
