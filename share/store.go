package share

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// This file keeps share's state in a vault: the contact book, the grants a
// patient issued and their revocations, and the grants a provider received.
// Each is a sealed vault object; issuing and revoking are ledger entries
// written in the same transaction as the stored token.

// LoadBook rebuilds the contact book from the vault.
func LoadBook(v *vault.Vault) (*Book, error) {
	objs, err := v.Objects(vault.KindContact)
	if err != nil {
		return nil, err
	}
	b := &Book{}
	for _, o := range objs {
		c, err := DecodeCard(o.Value)
		if err != nil {
			return nil, fmt.Errorf("stored contact %q: %w", o.Key, err)
		}
		if _, err := b.Add(Alias(o.Key), c, true); err != nil {
			return nil, fmt.Errorf("stored contact %q: %w", o.Key, err)
		}
	}
	return b, nil
}

// contactIDs returns the IDs of the pinned contacts. It reads only the
// cards' IDs: the stored objects are authenticated by the vault's seal, and
// the book's per-pin checks (LoadBook) cost time that grows with the
// square of the number of contacts.
func contactIDs(v *vault.Vault) (map[identity.ID]bool, error) {
	objs, err := v.Objects(vault.KindContact)
	if err != nil {
		return nil, err
	}
	ids := make(map[identity.ID]bool, len(objs))
	for _, o := range objs {
		c, err := decodeCard(o.Value, false)
		if err != nil {
			return nil, fmt.Errorf("stored contact %q: %w", o.Key, err)
		}
		ids[c.ID()] = true
	}
	return ids, nil
}

// SaveContact pins card under alias in the vault's contact book. A key
// change for the alias, or a card showing the name of another contact with
// a different key (someone may be posing as them), is refused with
// ErrKeyChanged unless replace is set.
func SaveContact(v *vault.Vault, alias Alias, c *Card, replace bool) (PinResult, error) {
	b, err := LoadBook(v)
	if err != nil {
		return PinResult{}, err
	}
	res, err := b.Add(alias, c, replace)
	if err != nil {
		return res, err
	}
	// The same name under another key is refused for a new pin; a newer
	// card for a key already pinned here (new addresses) is taken, and
	// the CLI still warns.
	if len(res.SameName) > 0 && !replace && res.Action == PinAdded {
		return res, fmt.Errorf("add contact %s: %w: contact %q shows the same name with another key", alias, ErrKeyChanged, res.SameName[0])
	}
	if res.Action != PinUnchanged {
		// A ledger entry commits to the pin: a pin deleted or changed
		// outside medvault (which would let another key take the alias
		// without the key-change warning) is then found by verify.
		ev := &vault.Event{Action: ledger.ActionContact, Subjects: [][]byte{c.ID().Bytes()}}
		if err := v.PutObject(vault.KindContact, string(alias), c.Bytes(), ev); err != nil {
			return res, err
		}
	}
	return res, nil
}

// RemoveContact deletes a contact, with a ledger entry; it returns
// vault.ErrNotFound if there is none by that alias.
func RemoveContact(v *vault.Vault, alias Alias) error {
	ev := &vault.Event{Action: ledger.ActionContact, Reason: vault.ContactRemoved}
	if b, err := LoadBook(v); err == nil {
		if c, ok := b.Get(alias); ok {
			ev.Subjects = [][]byte{c.ID().Bytes()}
		}
	}
	return v.DeleteObject(vault.KindContact, string(alias), ev)
}

// ResolveContact finds a contact by alias, or by ID text among contacts.
func ResolveContact(v *vault.Vault, s string) (Alias, *Card, error) {
	b, err := LoadBook(v)
	if err != nil {
		return "", nil, err
	}
	if a, err := ParseAlias(s); err == nil {
		if c, ok := b.Get(a); ok {
			return a, c, nil
		}
	}
	if id, err := identity.ParseID(s); err == nil {
		if a, c, ok := b.Find(id); ok {
			return a, c, nil
		}
	}
	return "", nil, vault.NotFoundf("no contact %q (add one with 'medvault contacts add CARD --as ALIAS')", s)
}

// ActiveGrantsTo returns the grants issued to id that are neither revoked
// nor expired at now, newest first.
func ActiveGrantsTo(v *vault.Vault, id identity.ID, now time.Time) ([]*Issued, error) {
	gs, err := IssuedGrants(v)
	if err != nil {
		return nil, err
	}
	var out []*Issued
	for _, i := range gs {
		if i.Grant.Audience() == id && i.State(now) == "active" {
			out = append(out, i)
		}
	}
	return out, nil
}

// RepeatSlack is how much sooner than asked an active grant may expire and
// still count as the same grant asked again (see FindRepeat).
const RepeatSlack = time.Minute

// FindRepeat returns the newest active grant that p asks for again: same
// audience, scope, labels, purpose and address hints, expiring no more than
// RepeatSlack before p.Expiry. Grant is then safe to repeat (a script that
// retries gets the same grant back, not one more to revoke); a longer
// expiry issues a new grant.
func FindRepeat(v *vault.Vault, p GrantParams, now time.Time) (*Issued, error) {
	active, err := ActiveGrantsTo(v, p.Audience, now)
	if err != nil {
		return nil, err
	}
	labels := normalLabels(p.Labels)
	hints := slices.Sorted(slices.Values(p.Hints))
	for _, i := range active {
		g := i.Grant
		if g.Scope().String() == p.Scope.String() && slices.Equal(normalLabels(g.Labels()), labels) &&
			g.Purpose() == p.Purpose && slices.Equal(slices.Sorted(slices.Values(g.Hints())), hints) &&
			!g.Expiry().Before(p.Expiry.Add(-RepeatSlack)) && !g.NotBefore().After(now) {
			return i, nil
		}
	}
	return nil, nil
}

func normalLabels(ls []record.Label) []record.Label {
	return slices.Compact(slices.Sorted(slices.Values(ls)))
}

// Issued is a grant the vault's owner issued, with its revocation if any.
// In a provider's inbox it is a grant received.
type Issued struct {
	Grant   *Grant
	Revoked *Revocation
	// RefusedRevoked, in the inbox only: the patient's node refused a
	// request under the grant as revoked, and its verified receipt (the
	// patient's signed ledger entry) says so, though no revocation notice
	// reached this node.
	RefusedRevoked bool
}

// State of an issued grant at a time.
func (i *Issued) State(now time.Time) string {
	switch {
	case i.Revoked != nil || i.RefusedRevoked:
		return "revoked"
	case !now.Before(i.Grant.Expiry()): // as Decide: the grant ends at its expiry
		return "expired"
	case now.Before(i.Grant.NotBefore()):
		return "pending"
	}
	return "active"
}

// IssueAndStore signs a grant for the vault's owner, stores it and appends
// the grant to the ledger, in one transaction. The vault ID in p is set from
// the vault.
func IssueAndStore(v *vault.Vault, p GrantParams, now time.Time) (*Grant, error) {
	p.Vault = VaultID(v.VaultID())
	g, err := IssueGrant(v.Owner(), p, now)
	if err != nil {
		return nil, err
	}
	id := g.ID()
	err = v.PutObject(vault.KindGrant, id.String(), g.Bytes(), &vault.Event{
		Action: ledger.ActionGrant, Subjects: [][]byte{g.Audience().Bytes()}, Grant: id[:], Purpose: string(g.Purpose()),
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// IssuedGrants returns every grant the owner issued, newest first.
func IssuedGrants(v *vault.Vault) ([]*Issued, error) { return grantsIn(v, vault.KindGrant) }

// grantsIn decodes the grants stored as objects of kind, each with its
// revocation if one is stored, newest first.
func grantsIn(v *vault.Vault, kind vault.Kind) ([]*Issued, error) {
	objs, err := v.Objects(kind)
	if err != nil {
		return nil, err
	}
	revs, err := revocations(v)
	if err != nil {
		return nil, err
	}
	var out []*Issued
	for _, o := range objs {
		g, err := DecodeGrant(o.Value)
		if err != nil {
			return nil, fmt.Errorf("stored %s %s: %w", kind, o.Key, err)
		}
		out = append(out, &Issued{Grant: g, Revoked: revs[g.ID()]})
	}
	sortNewest(out)
	return out, nil
}

// sortNewest orders grants newest first; grants issued in the same second
// (their timestamps' resolution) by the later expiry, then by ID, so the
// order never depends on storage.
func sortNewest(is []*Issued) {
	slices.SortFunc(is, func(a, b *Issued) int {
		if c := b.Grant.Issued().Compare(a.Grant.Issued()); c != 0 {
			return c
		}
		if c := b.Grant.Expiry().Compare(a.Grant.Expiry()); c != 0 {
			return c
		}
		x, y := a.Grant.ID(), b.Grant.ID()
		return bytes.Compare(x[:], y[:])
	})
}

func revocations(v *vault.Vault) (map[GrantID]*Revocation, error) {
	objs, err := v.Objects(vault.KindRevoked)
	if err != nil {
		return nil, err
	}
	out := map[GrantID]*Revocation{}
	for _, o := range objs {
		r, err := DecodeRevocation(o.Value)
		if err != nil {
			return nil, fmt.Errorf("stored revocation %s: %w", o.Key, err)
		}
		out[r.Grant()] = r
	}
	return out, nil
}

// badGrantID is ErrInvalidParams (errors.Is) for a grant ID a person
// typed, reading only as its message.
func badGrantID(format string, s string) error { return invalidGrantID(fmt.Sprintf(format, s)) }

type invalidGrantID string

func (e invalidGrantID) Error() string        { return string(e) }
func (e invalidGrantID) Is(target error) bool { return target == ErrInvalidParams }

// FindIssued resolves a grant ID, or a unique prefix of at least 8 hex
// digits, among issued grants.
func FindIssued(v *vault.Vault, s string) (*Issued, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	all, err := IssuedGrants(v)
	if err != nil {
		return nil, err
	}
	if len(s) < 8 {
		return nil, badGrantID("grant ID %q is too short: give at least 8 hex digits", s)
	}
	if strings.Trim(s, "0123456789abcdef") != "" {
		return nil, badGrantID("grant ID %q is not hex", s)
	}
	var found []*Issued
	for _, i := range all {
		if strings.HasPrefix(i.Grant.ID().String(), s) {
			found = append(found, i)
		}
	}
	switch len(found) {
	case 0:
		return nil, vault.NotFoundf("no grant %s", s)
	case 1:
		return found[0], nil
	}
	return nil, badGrantID("grant ID prefix %q is ambiguous: give more digits", s)
}

// RevokeAndStore revokes an issued grant: from this moment the owner's node
// refuses it. Revoking twice returns the first revocation and already=true.
func RevokeAndStore(v *vault.Vault, i *Issued, now time.Time) (r *Revocation, already bool, err error) {
	if i.Revoked != nil {
		return i.Revoked, true, nil
	}
	r, err = Revoke(v.Owner(), i.Grant.ID(), now)
	if err != nil {
		return nil, false, err
	}
	id := i.Grant.ID()
	err = v.PutObject(vault.KindRevoked, id.String(), r.Bytes(), &vault.Event{
		Action: ledger.ActionRevoke, Subjects: [][]byte{i.Grant.Audience().Bytes()}, Grant: id[:], Purpose: string(i.Grant.Purpose()),
	})
	if err != nil {
		return nil, false, err
	}
	return r, false, nil
}

// RecordInfos returns what the access rules need to know of every record in
// the vault that is the owner's own (not one shared with the owner).
func RecordInfos(v *vault.Vault) ([]RecordInfo, error) {
	ms, err := v.List(vault.Filter{})
	if err != nil {
		return nil, err
	}
	own := ms[:0]
	for _, m := range ms {
		if m.From.IsZero() {
			own = append(own, m)
		}
	}
	return recordInfos(own, v.MedicationUses)
}
