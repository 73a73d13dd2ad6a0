package share

import (
	"bytes"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/medvault/medvault/vault/identity"
)

const (
	cardFixedLen = 78 // header to name length, see TOKEN.md
	maxCardLen   = cardFixedLen + MaxNameLen + 1 + MaxHints*(1+MaxHintLen) + sigLen

	roleCodePatient  = 1
	roleCodeProvider = 2
)

// CardParams are what a user puts on their contact card.
type CardParams struct {
	// Recipient is the user's age recipient. Required.
	Recipient AgeRecipient
	// Name is a display name: at most MaxNameLen bytes of UTF-8 without
	// control or bidirectional-override characters. It is a hint, never
	// an identity: pinning is by key.
	Name string
	// Role is patient or provider.
	Role identity.Role
	// Hints are the node's current addresses (multiaddrs), at most
	// MaxHints: PickHints chooses them from all of the node's.
	Hints []string
}

// Card is a signed contact card: a user's ID, age recipient, name, role and
// address hints, self-signed by the ID's key. It is immutable; the only
// ways to get one are NewCard, DecodeCard and ParseCard, each of which
// checks the signature.
type Card struct {
	raw       []byte
	id        identity.ID
	recipient AgeRecipient
	role      identity.Role
	issued    time.Time
	name      string
	hints     []string
}

// NewCard signs a card for s at time now.
func NewCard(s Signer, p CardParams, now time.Time) (*Card, error) {
	c, err := newCard(s, p, now)
	if err != nil {
		return nil, fmt.Errorf("new card: %w", err)
	}
	return c, nil
}

func newCard(s Signer, p CardParams, now time.Time) (*Card, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: no signer", ErrInvalidParams)
	}
	t, err := checkTime(now, "issue")
	if err != nil {
		return nil, err
	}
	c := &Card{id: s.ID(), recipient: p.Recipient, role: p.Role, issued: t, name: p.Name, hints: slices.Clone(p.Hints)}
	if len(c.hints) == 0 {
		c.hints = nil
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	body := c.encodeBody()
	sig, err := sign(s, DomainCard, body)
	if err != nil {
		return nil, err
	}
	c.raw = append(body, sig...)
	return c, nil
}

// checkName validates a display name.
func checkName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("name is longer than %d bytes", MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("name is not valid UTF-8")
	}
	for _, r := range name {
		if unicode.IsControl(r) || isBidiControl(r) {
			return fmt.Errorf("name contains control or bidirectional-override characters")
		}
	}
	return nil
}

// isBidiControl reports the characters that reorder displayed text or break
// a line, and could make a name look like another.
func isBidiControl(r rune) bool {
	return r == 0x061c || r == 0x2028 || r == 0x2029 || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

func roleCode(r identity.Role) byte {
	switch r {
	case identity.Patient:
		return roleCodePatient
	case identity.Provider:
		return roleCodeProvider
	}
	return 0
}

func (c *Card) validate() error {
	switch {
	case c.recipient.IsZero():
		return fmt.Errorf("%w: age recipient is required", ErrInvalidParams)
	case roleCode(c.role) == 0:
		return fmt.Errorf("%w: unknown role %q", ErrInvalidParams, truncate(string(c.role)))
	}
	if err := checkName(c.name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidParams, err)
	}
	if err := checkHints(c.hints); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidParams, err)
	}
	return nil
}

func (c *Card) encodeBody() []byte {
	e := encoder{b: make([]byte, 0, cardFixedLen+len(c.name)+1+64*len(c.hints)+sigLen)}
	e.raw([]byte(tagCard))
	e.u8(version1)
	e.raw(c.id[:])
	e.raw(c.recipient[:])
	e.u8(roleCode(c.role))
	e.time(c.issued)
	e.u8(uint8(len(c.name)))
	e.raw([]byte(c.name))
	e.hints(c.hints)
	return e.b
}

// EncodeCard returns the card's one-line text form, medvault-card-v1:...
func EncodeCard(c *Card) string { return c.Text() }

// ParseCard parses a card's text form and verifies its signature by the ID
// it carries, over the exact bytes received. ASCII whitespace anywhere in s
// is ignored. A mistyped character gives ErrBadChecksum.
func ParseCard(s string) (*Card, error) {
	b, err := decodeText(cardText, s)
	if err == nil {
		var c *Card
		if c, err = decodeCard(b, true); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("parse card: %w", err)
}

// DecodeCard decodes a card's binary form and verifies it like ParseCard.
func DecodeCard(b []byte) (*Card, error) {
	c, err := decodeCard(b, true)
	if err != nil {
		return nil, fmt.Errorf("decode card: %w", err)
	}
	return c, nil
}

func decodeCard(b []byte, verifySig bool) (*Card, error) {
	d := decoder{b: b}
	d.header(tagCard, "card")
	if d.err != nil {
		return nil, d.err
	}
	if len(b) > maxCardLen {
		return nil, fmt.Errorf("%w: card is %d bytes, at most %d allowed", ErrMalformed, len(b), maxCardLen)
	}
	c := &Card{}
	c.id = d.id()
	copy(c.recipient[:], d.take(32))
	rc := d.u8()
	c.issued = d.time("issue")
	nameLen := int(d.u8())
	if d.err == nil && nameLen > MaxNameLen {
		return nil, fmt.Errorf("%w: name is %d bytes, at most %d allowed", ErrMalformed, nameLen, MaxNameLen)
	}
	c.name = string(d.take(nameLen))
	c.hints = d.hints()
	if d.err != nil {
		return nil, d.err
	}
	switch rc {
	case roleCodePatient:
		c.role = identity.Patient
	case roleCodeProvider:
		c.role = identity.Provider
	default:
		return nil, fmt.Errorf("%w: role code %d", ErrMalformed, rc)
	}
	bodyLen := d.off
	if rest := len(b) - bodyLen; rest != sigLen {
		if rest < sigLen {
			return nil, fmt.Errorf("%w: %w: signature is %d bytes, want %d", ErrMalformed, errTruncated, rest, sigLen)
		}
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, rest-sigLen)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if verifySig && !verify(c.id, DomainCard, b, bodyLen) {
		return nil, fmt.Errorf("%w: card is not signed by the key it names (%s)", ErrBadSignature, c.id)
	}
	c.raw = bytes.Clone(b)
	return c, nil
}

// ID returns the card owner's ID.
func (c *Card) ID() identity.ID { return c.id }

// Recipient returns the age recipient records for this user are encrypted to.
func (c *Card) Recipient() AgeRecipient { return c.recipient }

// Name returns the display name (a hint, not an identity).
func (c *Card) Name() string { return c.name }

// Role returns the role the user claims.
func (c *Card) Role() identity.Role { return c.role }

// Issued returns when the card was signed.
func (c *Card) Issued() time.Time { return c.issued }

// Hints returns the address hints.
func (c *Card) Hints() []string { return slices.Clone(c.hints) }

// Bytes returns a copy of the binary form (body || signature).
func (c *Card) Bytes() []byte { return bytes.Clone(c.raw) }

// Text returns the one-line text form, medvault-card-v1:...
func (c *Card) Text() string { return encodeText(cardText, c.raw) }

// CheckPin decides whether incoming may replace existing, the card pinned
// under the same alias (existing is nil for a new alias):
//
//   - nil when there is nothing pinned, when the cards are identical, or
//     when incoming is for the same ID and age recipient and was issued
//     later (an address or name update);
//   - ErrKeyChanged when the ID or the age recipient differs;
//   - ErrStaleCard when incoming is for the same keys but not newer.
func CheckPin(existing, incoming *Card) error {
	switch {
	case incoming == nil || len(incoming.raw) == 0:
		return fmt.Errorf("check pin: %w: no card", ErrInvalidParams)
	case existing == nil:
		return nil
	case existing.id != incoming.id:
		return fmt.Errorf("check pin: %w: pinned %s, card is for %s", ErrKeyChanged, existing.id, incoming.id)
	case existing.recipient != incoming.recipient:
		return fmt.Errorf("check pin: %w: the encryption key of %s changed", ErrKeyChanged, existing.id)
	case bytes.Equal(existing.raw, incoming.raw):
		return nil
	case !incoming.issued.After(existing.issued):
		return fmt.Errorf("check pin: %w: card issued %s, pinned card issued %s", ErrStaleCard,
			incoming.issued.Format(time.RFC3339), existing.issued.Format(time.RFC3339))
	}
	return nil
}
