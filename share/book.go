package share

import (
	"fmt"
	"slices"
	"strings"

	"github.com/medvault/medvault/vault/identity"
)

// Alias is the local name a user gives a contact ("dr-lee"). It is theirs
// alone: it never leaves the vault and is not on the card.
type Alias string

// MaxAliasLen is the longest alias.
const MaxAliasLen = 64

// ParseAlias validates an alias: 1 to MaxAliasLen characters from a-z, 0-9,
// '.', '_' and '-', starting with a letter or digit. Upper case is folded to
// lower case.
func ParseAlias(s string) (Alias, error) {
	a := strings.ToLower(strings.TrimSpace(s))
	if len(a) == 0 || len(a) > MaxAliasLen {
		return "", fmt.Errorf("%w: want 1 to %d characters", ErrInvalidAlias, MaxAliasLen)
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		alnum := ('a' <= c && c <= 'z') || ('0' <= c && c <= '9')
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != '-')) {
			return "", fmt.Errorf("%w %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", ErrInvalidAlias, truncate(s))
		}
	}
	return Alias(a), nil
}

// Contact is one pinned card under its alias.
type Contact struct {
	Alias Alias
	Card  *Card
}

// PinAction says what Book.Add did.
type PinAction int

// The outcomes of Book.Add.
const (
	PinAdded     PinAction = iota + 1 // new alias
	PinUpdated                        // same keys, newer card
	PinUnchanged                      // the identical card was already pinned
	PinReplaced                       // the key changed and replace was true
)

// PinResult reports what Book.Add did, and what the CLI should warn about.
type PinResult struct {
	Action PinAction
	// SameName lists other contacts whose card shows the same display name
	// (case-insensitively) with a different key: someone may be posing as
	// them. The CLI warns loudly.
	SameName []Alias
}

// Book is a contact book that pins each alias to a key. The zero value is
// an empty book. It is not safe for concurrent use. The vault stores its
// contents (alias and Card.Bytes pairs) and rebuilds it with Add(..., true).
type Book struct {
	cards map[Alias]*Card
}

// Add pins c under alias a. A key change (see CheckPin) is refused with
// ErrKeyChanged unless replace is true; a card that is not newer with
// ErrStaleCard unless replace is true; a key already pinned under another
// alias always with ErrAlreadyPinned.
func (b *Book) Add(a Alias, c *Card, replace bool) (PinResult, error) {
	if _, err := ParseAlias(string(a)); err != nil || Alias(strings.ToLower(string(a))) != a {
		return PinResult{}, fmt.Errorf("add contact: %w", ErrInvalidAlias)
	}
	if c == nil || len(c.raw) == 0 {
		return PinResult{}, fmt.Errorf("add contact: %w: no card", ErrInvalidParams)
	}
	for other, oc := range b.cards {
		if other != a && oc.id == c.id {
			return PinResult{}, fmt.Errorf("add contact %s: %w: %s is pinned as %q", a, ErrAlreadyPinned, c.id, other)
		}
	}
	res := PinResult{Action: PinAdded}
	if existing, ok := b.cards[a]; ok {
		err := CheckPin(existing, c)
		switch {
		case err == nil && string(existing.raw) == string(c.raw):
			res.Action = PinUnchanged
		case err == nil:
			res.Action = PinUpdated
		case replace:
			res.Action = PinReplaced
		default:
			return PinResult{}, fmt.Errorf("add contact %s: %w", a, err)
		}
	}
	if c.name != "" {
		for other, oc := range b.cards {
			if other != a && oc.id != c.id && strings.EqualFold(oc.name, c.name) {
				res.SameName = append(res.SameName, other)
			}
		}
		slices.Sort(res.SameName)
	}
	if b.cards == nil {
		b.cards = make(map[Alias]*Card)
	}
	b.cards[a] = c
	return res, nil
}

// Get returns the card pinned under a.
func (b *Book) Get(a Alias) (*Card, bool) {
	c, ok := b.cards[a]
	return c, ok
}

// Find returns the alias and card pinned for id.
func (b *Book) Find(id identity.ID) (Alias, *Card, bool) {
	for a, c := range b.cards {
		if c.id == id {
			return a, c, true
		}
	}
	return "", nil, false
}

// Remove unpins a, reporting whether it was there.
func (b *Book) Remove(a Alias) bool {
	_, ok := b.cards[a]
	delete(b.cards, a)
	return ok
}

// Contacts returns every contact in alias order.
func (b *Book) Contacts() []Contact {
	out := make([]Contact, 0, len(b.cards))
	for a, c := range b.cards {
		out = append(out, Contact{a, c})
	}
	slices.SortFunc(out, func(x, y Contact) int { return strings.Compare(string(x.Alias), string(y.Alias)) })
	return out
}
