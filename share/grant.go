package share

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// DefaultMaxLifetime is the longest a grant may last when GrantParams does
// not set MaxLifetime.
const DefaultMaxLifetime = 90 * 24 * time.Hour

// LimitMaxLifetime caps GrantParams.MaxLifetime: no configuration issues a
// grant that lasts longer than about ten years.
const LimitMaxLifetime = 10 * 366 * 24 * time.Hour

// Sizes of the grant's binary form.
const (
	grantFixedLen = 133 // header to record count, see TOKEN.md
	maxGrantLen   = grantFixedLen + 16*MaxGrantRecords + 1 + MaxHints*(1+MaxHintLen) + sigLen
)

// VaultID names a patient's vault: 16 random bytes chosen by the vault when
// it is created.
type VaultID [16]byte

// String returns the vault ID as 32 lowercase hex digits.
func (v VaultID) String() string { return hex.EncodeToString(v[:]) }

// IsZero reports whether v is the zero value.
func (v VaultID) IsZero() bool { return v == VaultID{} }

// ParseVaultID parses the hex form of a vault ID.
func ParseVaultID(s string) (VaultID, error) {
	var v VaultID
	err := parseHex(v[:], s, "vault ID")
	return v, err
}

// GrantID identifies a grant: SHA-256 of the grant body, that is of the
// binary token without its final 64-byte signature (see TOKEN.md).
type GrantID [32]byte

// String returns the grant ID as 64 lowercase hex digits.
func (g GrantID) String() string { return hex.EncodeToString(g[:]) }

// IsZero reports whether g is the zero value.
func (g GrantID) IsZero() bool { return g == GrantID{} }

// ParseGrantID parses the hex form of a grant ID.
func ParseGrantID(s string) (GrantID, error) {
	var g GrantID
	err := parseHex(g[:], s, "grant ID")
	return g, err
}

// Nonce is 16 random bytes that make a grant or a request unique.
type Nonce [16]byte

// String returns the nonce as 32 lowercase hex digits.
func (n Nonce) String() string { return hex.EncodeToString(n[:]) }

// IsZero reports whether n is the zero value.
func (n Nonce) IsZero() bool { return n == Nonce{} }

func randomNonce() Nonce {
	var n Nonce
	rand.Read(n[:]) // never returns an error (crypto/rand, Go ≥ 1.24)
	return n
}

func parseHex(dst []byte, s, what string) error {
	s = strings.TrimSpace(s)
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%w: %s: want %d hex digits", ErrMalformed, what, 2*len(dst))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		clear(dst)
		return fmt.Errorf("%w: %s: not hex", ErrMalformed, what)
	}
	return nil
}

// GrantParams are what a patient decides when granting access.
type GrantParams struct {
	// Audience is the provider the grant is for. Required.
	Audience identity.ID
	// Vault is the patient's vault the grant reads from. Required.
	Vault VaultID
	// Scope says which records are covered; at least one element.
	Scope Scope
	// Labels are the sensitivity labels the grant includes. A record with
	// any label not listed here is never shared, whatever the scope says.
	Labels []record.Label
	// Purpose is the purpose of use. Required.
	Purpose Purpose
	// NotBefore is when the grant starts; zero means now. Sub-second
	// precision is rounded up to the next second.
	NotBefore time.Time
	// Expiry is when the grant ends. Required, after now and after
	// NotBefore, and at most MaxLifetime after now. Sub-second precision is
	// truncated.
	Expiry time.Time
	// MaxLifetime bounds Expiry - now; zero means DefaultMaxLifetime. It
	// may not exceed LimitMaxLifetime.
	MaxLifetime time.Duration
	// Hints are address hints (multiaddrs) of the patient's node, at most
	// MaxHints: PickHints chooses them from all of the node's.
	Hints []string
	// Nonce makes the grant unique; zero means a fresh random nonce. Set it
	// only in tests.
	Nonce Nonce
}

// Grant is a signed, verified grant token. It is immutable and safe for
// concurrent use. The only ways to get one are IssueGrant, DecodeGrant and
// ParseGrant, each of which checks the signature; Decide checks it again.
type Grant struct {
	raw       []byte // body || signature, exactly as signed or received
	id        GrantID
	issuer    identity.ID
	audience  identity.ID
	vault     VaultID
	nonce     Nonce
	issued    time.Time
	notBefore time.Time
	expiry    time.Time
	purpose   Purpose
	sc        scope
	hints     []string
}

// IssueGrant validates p, then builds and signs a grant from s (the
// patient) at time now.
func IssueGrant(s Signer, p GrantParams, now time.Time) (*Grant, error) {
	g, err := newGrant(s, p, now)
	if err != nil {
		return nil, fmt.Errorf("issue grant: %w", err)
	}
	return g, nil
}

func newGrant(s Signer, p GrantParams, now time.Time) (*Grant, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: no signer", ErrInvalidParams)
	}
	issued, err := checkTime(now, "issue")
	if err != nil {
		return nil, err
	}
	maxLife := p.MaxLifetime
	switch {
	case maxLife == 0:
		maxLife = DefaultMaxLifetime
	case maxLife < 0 || maxLife > LimitMaxLifetime:
		return nil, fmt.Errorf("%w: maximum lifetime %v is outside (0, %v]", ErrInvalidParams, maxLife, LimitMaxLifetime)
	}
	if p.Expiry.IsZero() {
		return nil, ErrMissingExpiry
	}
	if !p.Expiry.After(now) {
		return nil, fmt.Errorf("%w: expiry %s is not after now", ErrExpired, p.Expiry.UTC().Format(time.RFC3339))
	}
	if p.Expiry.Sub(now) > maxLife {
		life := maxLife.String()
		if maxLife%(24*time.Hour) == 0 {
			life = fmt.Sprintf("%d days", maxLife/(24*time.Hour))
		}
		return nil, fmt.Errorf("%w: expiry %s is more than %s from now", ErrLifetimeTooLong, p.Expiry.UTC().Format(time.RFC3339), life)
	}
	expiry, err := checkTime(p.Expiry, "expiry")
	if err != nil {
		return nil, err
	}
	notBefore := issued
	if !p.NotBefore.IsZero() {
		nb := p.NotBefore
		if t := nb.Truncate(time.Second); !t.Equal(nb) {
			nb = t.Add(time.Second)
		}
		if notBefore, err = checkTime(nb, "not-before"); err != nil {
			return nil, err
		}
		if notBefore.Before(issued) {
			return nil, fmt.Errorf("%w: not-before is before the issue time", ErrInvalidParams)
		}
	}
	if !expiry.After(notBefore) {
		return nil, fmt.Errorf("%w: expiry is not after not-before", ErrInvalidParams)
	}
	if !p.Purpose.Valid() {
		return nil, fmt.Errorf("%w %q", ErrUnknownPurpose, truncate(string(p.Purpose)))
	}
	sc := scope{emergency: p.Scope.EmergencySummary}
	if sc.cats, err = categoryMask(p.Scope.Categories); err != nil {
		return nil, err
	}
	if sc.labels, err = labelMask(p.Labels); err != nil {
		return nil, err
	}
	sc.records = slices.Clone(p.Scope.Records)
	sortIDs(sc.records)
	sc.records = slices.Compact(sc.records)
	if len(sc.records) == 0 {
		sc.records = nil
	}
	g := &Grant{
		issuer: s.ID(), audience: p.Audience, vault: p.Vault, nonce: p.Nonce,
		issued: issued, notBefore: notBefore, expiry: expiry, purpose: p.Purpose,
		sc: sc, hints: slices.Clone(p.Hints),
	}
	if len(g.hints) == 0 {
		g.hints = nil
	}
	if g.nonce.IsZero() {
		g.nonce = randomNonce()
	}
	if err := g.validate(); err != nil {
		return nil, err
	}
	body := g.encodeBody()
	sig, err := sign(s, DomainGrant, body)
	if err != nil {
		return nil, err
	}
	g.raw = append(body, sig...)
	g.id = sha256.Sum256(body)
	return g, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// validate checks the invariants every grant satisfies, whether issued or
// decoded.
func (g *Grant) validate() error {
	switch {
	case g.audience.IsZero():
		return fmt.Errorf("%w: audience is required", ErrInvalidParams)
	case g.audience == g.issuer:
		return fmt.Errorf("%w: audience is the issuer", ErrInvalidParams)
	case g.vault.IsZero():
		return fmt.Errorf("%w: vault ID is required", ErrInvalidParams)
	case g.notBefore.Before(g.issued):
		return fmt.Errorf("%w: not-before is before the issue time", ErrInvalidParams)
	case !g.expiry.After(g.notBefore):
		return fmt.Errorf("%w: expiry is not after not-before", ErrInvalidParams)
	case !g.purpose.Valid():
		return fmt.Errorf("%w %q", ErrUnknownPurpose, truncate(string(g.purpose)))
	case g.sc.cats == 0 && len(g.sc.records) == 0 && !g.sc.emergency:
		return ErrEmptyScope
	case len(g.sc.records) > MaxGrantRecords:
		return fmt.Errorf("%w: %d record IDs, at most %d allowed", ErrInvalidParams, len(g.sc.records), MaxGrantRecords)
	}
	if err := checkHints(g.hints); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidParams, err)
	}
	return nil
}

// encodeBody writes the canonical grant body (everything but the signature).
func (g *Grant) encodeBody() []byte {
	e := encoder{b: make([]byte, 0, grantFixedLen+16*len(g.sc.records)+1+64*len(g.hints)+sigLen)}
	e.raw([]byte(tagGrant))
	e.u8(version1)
	e.raw(g.issuer[:])
	e.raw(g.audience[:])
	e.raw(g.vault[:])
	e.raw(g.nonce[:])
	e.time(g.issued)
	e.time(g.notBefore)
	e.time(g.expiry)
	e.u8(g.purpose.code())
	e.u8(g.sc.labels)
	var flags uint8
	if g.sc.emergency {
		flags |= scopeFlagEmergency
	}
	e.u8(flags)
	e.u32(g.sc.cats)
	e.u16(uint16(len(g.sc.records)))
	for _, id := range g.sc.records {
		e.raw(id[:])
	}
	e.hints(g.hints)
	return e.b
}

// DecodeGrant decodes a grant's binary form and verifies its signature by
// the issuer it names. Anything but the one canonical encoding of a valid
// grant is refused.
func DecodeGrant(b []byte) (*Grant, error) {
	g, err := decodeGrant(b, true)
	if err != nil {
		return nil, fmt.Errorf("decode grant: %w", err)
	}
	return g, nil
}

// ParseGrant parses a grant's text form (medvault-grant-v1:...) and
// verifies it like DecodeGrant. ASCII whitespace anywhere in s is ignored.
func ParseGrant(s string) (*Grant, error) {
	b, err := decodeText(grantText, s)
	if err == nil {
		var g *Grant
		if g, err = decodeGrant(b, true); err == nil {
			return g, nil
		}
	}
	return nil, fmt.Errorf("parse grant: %w", err)
}

func decodeGrant(b []byte, verifySig bool) (*Grant, error) {
	d := decoder{b: b}
	d.header(tagGrant, "grant")
	if d.err != nil {
		return nil, d.err
	}
	if len(b) > maxGrantLen {
		return nil, fmt.Errorf("%w: grant is %d bytes, at most %d allowed", ErrMalformed, len(b), maxGrantLen)
	}
	g := &Grant{}
	g.issuer = d.id()
	g.audience = d.id()
	copy(g.vault[:], d.take(16))
	copy(g.nonce[:], d.take(16))
	g.issued = d.time("issue")
	g.notBefore = d.time("not-before")
	g.expiry = d.time("expiry")
	code := d.u8()
	g.sc.labels = d.u8()
	flags := d.u8()
	g.sc.cats = d.u32()
	n := int(d.u16())
	if d.err != nil {
		return nil, d.err
	}
	var ok bool
	if g.purpose, ok = purposeFromCode(code); !ok {
		return nil, fmt.Errorf("%w: purpose code %d", ErrUnknownPurpose, code)
	}
	switch {
	case g.sc.labels&^allLabelBits != 0:
		return nil, fmt.Errorf("%w: label mask %#x", ErrUnknownLabel, g.sc.labels)
	case g.sc.cats&^allCategoryBits != 0:
		return nil, fmt.Errorf("%w: category mask %#x", ErrUnknownCategory, g.sc.cats)
	case flags&^allScopeFlags != 0:
		return nil, fmt.Errorf("%w: unknown scope flags %#x", ErrMalformed, flags)
	case n > MaxGrantRecords:
		return nil, fmt.Errorf("%w: %d record IDs, at most %d allowed", ErrMalformed, n, MaxGrantRecords)
	}
	g.sc.emergency = flags&scopeFlagEmergency != 0
	if n > 0 {
		if len(b)-d.off < 16*n {
			return nil, fmt.Errorf("%w: %w: %d record IDs announced", ErrMalformed, errTruncated, n)
		}
		g.sc.records = make([]record.ID, n)
		for i := range n {
			copy(g.sc.records[i][:], d.take(16))
			if i > 0 && d.err == nil && bytes.Compare(g.sc.records[i-1][:], g.sc.records[i][:]) >= 0 {
				return nil, fmt.Errorf("%w: record IDs not in strictly ascending order", ErrMalformed)
			}
		}
	}
	g.hints = d.hints()
	if d.err != nil {
		return nil, d.err
	}
	bodyLen := d.off
	if rest := len(b) - bodyLen; rest != sigLen {
		if rest < sigLen {
			return nil, fmt.Errorf("%w: %w: signature is %d bytes, want %d", ErrMalformed, errTruncated, rest, sigLen)
		}
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, rest-sigLen)
	}
	if err := g.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if verifySig && !verify(g.issuer, DomainGrant, b, bodyLen) {
		return nil, fmt.Errorf("%w: grant is not signed by its issuer %s", ErrBadSignature, g.issuer)
	}
	g.raw = bytes.Clone(b)
	g.id = sha256.Sum256(b[:bodyLen])
	return g, nil
}

// verifySignature checks the grant's signature from its raw bytes again.
func (g *Grant) verifySignature() bool {
	return len(g.raw) > sigLen && verify(g.issuer, DomainGrant, g.raw, len(g.raw)-sigLen)
}

// ID returns the grant ID: SHA-256 of the grant body.
func (g *Grant) ID() GrantID { return g.id }

// Bytes returns a copy of the binary token (body || signature).
func (g *Grant) Bytes() []byte { return bytes.Clone(g.raw) }

// Text returns the text form, medvault-grant-v1:...
func (g *Grant) Text() string { return encodeText(grantText, g.raw) }

// Issuer returns the patient who signed the grant.
func (g *Grant) Issuer() identity.ID { return g.issuer }

// Audience returns the provider the grant is for.
func (g *Grant) Audience() identity.ID { return g.audience }

// Vault returns the vault the grant reads from.
func (g *Grant) Vault() VaultID { return g.vault }

// Nonce returns the grant's nonce.
func (g *Grant) Nonce() Nonce { return g.nonce }

// Issued returns when the grant was signed.
func (g *Grant) Issued() time.Time { return g.issued }

// NotBefore returns when the grant starts.
func (g *Grant) NotBefore() time.Time { return g.notBefore }

// Expiry returns when the grant ends.
func (g *Grant) Expiry() time.Time { return g.expiry }

// Purpose returns the purpose of use.
func (g *Grant) Purpose() Purpose { return g.purpose }

// Labels returns the sensitivity labels the grant includes, in canonical
// order.
func (g *Grant) Labels() []record.Label { return labelsFromMask(g.sc.labels) }

// Scope returns the grant's scope: categories in canonical order, record
// IDs in ascending order.
func (g *Grant) Scope() Scope {
	return Scope{
		Categories:       categoriesFromMask(g.sc.cats),
		Records:          slices.Clone(g.sc.records),
		EmergencySummary: g.sc.emergency,
	}
}

// Hints returns the address hints of the patient's node.
func (g *Grant) Hints() []string { return slices.Clone(g.hints) }

// Covers applies the per-item rule to one record: ReasonAllowed, or
// ReasonOutOfScope, or ReasonLabelExcluded. It checks neither time nor
// revocation; Decide does.
func (g *Grant) Covers(r RecordInfo) Reason { return g.sc.covers(&r) }
