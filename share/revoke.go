package share

import (
	"bytes"
	"fmt"
	"time"

	"github.com/medvault/medvault/vault/identity"
)

const (
	revocationBodyLen = 76
	revocationLen     = revocationBodyLen + sigLen
)

// Revocation is a signed statement by a grant's issuer that the grant is
// revoked from a given time. It is immutable; the only ways to get one are
// Revoke, DecodeRevocation and ParseRevocation, each of which checks the
// signature.
type Revocation struct {
	raw    []byte
	issuer identity.ID
	grant  GrantID
	time   time.Time
}

// Revoke signs a revocation of grant g by s at time now. s must be the
// grant's issuer for the revocation to have any effect (see
// Revocation.Check).
func Revoke(s Signer, g GrantID, now time.Time) (*Revocation, error) {
	if s == nil {
		return nil, fmt.Errorf("revoke: %w: no signer", ErrInvalidParams)
	}
	if g.IsZero() {
		return nil, fmt.Errorf("revoke: %w: grant ID is required", ErrInvalidParams)
	}
	t, err := checkTime(now, "revocation")
	if err != nil {
		return nil, fmt.Errorf("revoke: %w", err)
	}
	r := &Revocation{issuer: s.ID(), grant: g, time: t}
	body := r.encodeBody()
	sig, err := sign(s, DomainRevoke, body)
	if err != nil {
		return nil, fmt.Errorf("revoke: %w", err)
	}
	r.raw = append(body, sig...)
	return r, nil
}

func (r *Revocation) encodeBody() []byte {
	e := encoder{b: make([]byte, 0, revocationLen)}
	e.raw([]byte(tagRevoke))
	e.u8(version1)
	e.raw(r.issuer[:])
	e.raw(r.grant[:])
	e.time(r.time)
	return e.b
}

// DecodeRevocation decodes a revocation's binary form and verifies its
// signature by the issuer it names.
func DecodeRevocation(b []byte) (*Revocation, error) {
	r, err := decodeRevocation(b, true)
	if err != nil {
		return nil, fmt.Errorf("decode revocation: %w", err)
	}
	return r, nil
}

// ParseRevocation parses a revocation's text form (medvault-revoke-v1:...)
// and verifies it like DecodeRevocation.
func ParseRevocation(s string) (*Revocation, error) {
	b, err := decodeText(revokeText, s)
	if err == nil {
		var r *Revocation
		if r, err = decodeRevocation(b, true); err == nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("parse revocation: %w", err)
}

func decodeRevocation(b []byte, verifySig bool) (*Revocation, error) {
	d := decoder{b: b}
	d.header(tagRevoke, "revocation")
	if d.err != nil {
		return nil, d.err
	}
	if len(b) > revocationLen {
		return nil, fmt.Errorf("%w: revocation is %d bytes, want %d", ErrMalformed, len(b), revocationLen)
	}
	r := &Revocation{}
	r.issuer = d.id()
	copy(r.grant[:], d.take(32))
	r.time = d.time("revocation")
	d.take(sigLen)
	if d.err != nil {
		return nil, d.err
	}
	if r.grant.IsZero() {
		return nil, fmt.Errorf("%w: zero grant ID", ErrMalformed)
	}
	if verifySig && !verify(r.issuer, DomainRevoke, b, revocationBodyLen) {
		return nil, fmt.Errorf("%w: revocation is not signed by its issuer %s", ErrBadSignature, r.issuer)
	}
	r.raw = bytes.Clone(b)
	return r, nil
}

// Check reports whether r revokes g: it must name g's ID and be signed by
// g's issuer. A revocation by anyone else is refused with ErrWrongIssuer
// and must be ignored.
func (r *Revocation) Check(g *Grant) error {
	switch {
	case r == nil || g == nil:
		return fmt.Errorf("check revocation: %w: missing revocation or grant", ErrInvalidParams)
	case r.grant != g.ID():
		return fmt.Errorf("check revocation: %w: revocation names grant %s, not %s", ErrGrantMismatch, r.grant, g.ID())
	case r.issuer != g.Issuer():
		return fmt.Errorf("check revocation: %w: revocation of grant %s is signed by %s, not its issuer %s", ErrWrongIssuer, r.grant, r.issuer, g.Issuer())
	}
	return nil
}

// Issuer returns who signed the revocation.
func (r *Revocation) Issuer() identity.ID { return r.issuer }

// Grant returns the ID of the revoked grant.
func (r *Revocation) Grant() GrantID { return r.grant }

// Time returns when the revocation was signed.
func (r *Revocation) Time() time.Time { return r.time }

// Bytes returns a copy of the binary form (body || signature).
func (r *Revocation) Bytes() []byte { return bytes.Clone(r.raw) }

// Text returns the text form, medvault-revoke-v1:...
func (r *Revocation) Text() string { return encodeText(revokeText, r.raw) }
