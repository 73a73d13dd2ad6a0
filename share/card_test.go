package share

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/identity"
)

func card(t *testing.T, s Signer, name string, at time.Time, hints ...string) *Card {
	t.Helper()
	c, err := NewCard(s, CardParams{Recipient: testRecipient(), Name: name, Role: identity.Provider, Hints: hints}, at)
	if err != nil {
		t.Fatalf("NewCard: %v", err)
	}
	return c
}

func TestNewCard(t *testing.T) {
	other := testRecipient()
	other[0] ^= 1
	tests := []struct {
		name string
		p    CardParams
		want error
	}{
		{"valid", CardParams{Recipient: testRecipient(), Name: "Dr. Zoë Ångström", Role: identity.Provider}, nil},
		{"empty name", CardParams{Recipient: testRecipient(), Role: identity.Patient}, nil},
		{"max name", CardParams{Recipient: testRecipient(), Name: strings.Repeat("é", MaxNameLen/2), Role: identity.Patient}, nil},
		{"long name", CardParams{Recipient: testRecipient(), Name: strings.Repeat("a", MaxNameLen+1), Role: identity.Patient}, ErrInvalidParams},
		{"control in name", CardParams{Recipient: testRecipient(), Name: "a\x1b[31mb", Role: identity.Patient}, ErrInvalidParams},
		{"newline in name", CardParams{Recipient: testRecipient(), Name: "a\nb", Role: identity.Patient}, ErrInvalidParams},
		{"bidi override in name", CardParams{Recipient: testRecipient(), Name: "Dr \u202eeeL", Role: identity.Patient}, ErrInvalidParams},
		{"invalid utf-8", CardParams{Recipient: testRecipient(), Name: "a\xffb", Role: identity.Patient}, ErrInvalidParams},
		{"no recipient", CardParams{Name: "x", Role: identity.Patient}, ErrInvalidParams},
		{"no role", CardParams{Recipient: testRecipient(), Name: "x"}, ErrInvalidParams},
		{"bad role", CardParams{Recipient: testRecipient(), Role: "admin"}, ErrInvalidParams},
		{"bad hint", CardParams{Recipient: other, Role: identity.Patient, Hints: []string{"a b"}}, ErrInvalidParams},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCard(patient, tc.p, t0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			c2, err := ParseCard(EncodeCard(c))
			if err != nil {
				t.Fatal(err)
			}
			if c2.Name() != tc.p.Name || c2.Role() != tc.p.Role || c2.Recipient() != tc.p.Recipient || c2.ID() != patient.ID() || !c2.Issued().Equal(t0) {
				t.Fatal("fields changed in round trip")
			}
			if strings.ContainsAny(c.Text(), " \n\t") {
				t.Fatal("text form is not one line")
			}
		})
	}
	if _, err := NewCard(wrongSigner{patient, stranger}, CardParams{Recipient: testRecipient(), Role: identity.Patient}, t0); !errors.Is(err, ErrBadSignature) {
		t.Fatal(err)
	}
	c := card(t, patient, "x", t0, "/a")
	b := c.Bytes()
	for n := range len(b) {
		if _, err := DecodeCard(b[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	// A name that decodes with a control character, re-signed.
	bad := resign(mutate(b, func(b []byte) []byte { b[cardFixedLen] = '\x07'; return b }), DomainCard, patient)
	if _, err := DecodeCard(bad); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
	// A name length past the end.
	bad = resign(mutate(b, func(b []byte) []byte { b[cardFixedLen-1] = 200; return b }), DomainCard, patient)
	if _, err := DecodeCard(bad); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
}

func TestCheckPin(t *testing.T) {
	a1 := card(t, provider, "Dr. Lee", t0, "/ip4/192.0.2.1/tcp/1")
	a2 := card(t, provider, "Dr. Lee", t0.Add(time.Hour), "/ip4/192.0.2.2/tcp/1") // moved
	aSameTime := card(t, provider, "Dr. Lee", t0, "/ip4/192.0.2.3/tcp/1")
	other := card(t, stranger, "Dr. Lee", t0.Add(2*time.Hour))
	rc := testRecipient()
	rc[5] ^= 0xff
	newAge, err := NewCard(provider, CardParams{Recipient: rc, Name: "Dr. Lee", Role: identity.Provider}, t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name               string
		existing, incoming *Card
		want               error
	}{
		{"new contact", nil, a1, nil},
		{"identical", a1, a1, nil},
		{"newer card same key", a1, a2, nil},
		{"older card same key", a2, a1, ErrStaleCard},
		{"same time different content", a1, aSameTime, ErrStaleCard},
		{"different key", a1, other, ErrKeyChanged},
		{"different key even if older", a2, card(t, stranger, "x", t0), ErrKeyChanged},
		{"age key changed", a1, newAge, ErrKeyChanged},
		{"no incoming", a1, nil, ErrInvalidParams},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckPin(tc.existing, tc.incoming); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestBook(t *testing.T) {
	var b Book
	lee, err := ParseAlias(" Dr-Lee ")
	if err != nil || lee != "dr-lee" {
		t.Fatalf("ParseAlias: %q %v", lee, err)
	}
	c1 := card(t, provider, "Dr. Lee", t0)
	c2 := card(t, provider, "Dr. Lee", t0.Add(time.Hour), "/x")
	imp := card(t, stranger, "dr. lee", t0)

	steps := []struct {
		name    string
		alias   Alias
		card    *Card
		replace bool
		want    error
		action  PinAction
		same    []Alias
	}{
		{"add", lee, c1, false, nil, PinAdded, nil},
		{"again", lee, c1, false, nil, PinUnchanged, nil},
		{"update", lee, c2, false, nil, PinUpdated, nil},
		{"stale", lee, c1, false, ErrStaleCard, 0, nil},
		{"key change refused", lee, imp, false, ErrKeyChanged, 0, nil},
		{"same key other alias", "lee2", c2, false, ErrAlreadyPinned, 0, nil},
		{"same name other key", "impostor", imp, false, nil, PinAdded, []Alias{lee}},
		{"key change replaced", lee, card(t, seedSigner(9), "Dr. Lee", t0), true, nil, PinReplaced, []Alias{"impostor"}},
		{"bad alias", "Bad Alias", c1, false, ErrInvalidAlias, 0, nil},
		{"upper-case alias", "LEE", c1, false, ErrInvalidAlias, 0, nil},
	}
	for _, s := range steps {
		res, err := b.Add(s.alias, s.card, s.replace)
		if !errors.Is(err, s.want) {
			t.Fatalf("%s: got %v, want %v", s.name, err, s.want)
		}
		if err == nil && (res.Action != s.action || !slices.Equal(res.SameName, s.same)) {
			t.Fatalf("%s: got %+v, want action %d same %v", s.name, res, s.action, s.same)
		}
	}
	if c, ok := b.Get("impostor"); !ok || c.ID() != stranger.ID() {
		t.Fatal("Get")
	}
	if a, _, ok := b.Find(stranger.ID()); !ok || a != "impostor" {
		t.Fatal("Find")
	}
	cs := b.Contacts()
	if len(cs) != 2 || cs[0].Alias != lee || cs[1].Alias != "impostor" {
		t.Fatalf("Contacts: %v", cs)
	}
	if !b.Remove("impostor") || b.Remove("impostor") {
		t.Fatal("Remove")
	}
	for _, s := range []string{"", "-x", ".x", "a b", "a/b", strings.Repeat("a", MaxAliasLen+1), "é"} {
		if _, err := ParseAlias(s); !errors.Is(err, ErrInvalidAlias) {
			t.Errorf("ParseAlias(%q): %v", s, err)
		}
	}
	// Rebuild from stored bytes, as the vault does.
	var b2 Book
	for _, c := range b.Contacts() {
		dc, err := DecodeCard(c.Card.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b2.Add(c.Alias, dc, true); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := b2.Get(lee); got == nil || !bytes.Equal(got.Bytes(), must(b.Get(lee)).Bytes()) {
		t.Fatal("rebuild")
	}
}

func must(c *Card, _ bool) *Card { return c }
