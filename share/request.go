package share

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

const (
	requestFixedLen = 95
	maxRequestLen   = requestFixedLen + 16*MaxRequestItems + sigLen

	requestFlagAll = 0x01
)

// RequestParams are what a provider asks for.
type RequestParams struct {
	// Grant is the grant the request is made under. Required.
	Grant GrantID
	// All asks for every record the grant covers; Items must then be empty.
	All bool
	// Items are the records wanted (1 to MaxRequestItems) when All is
	// false. Duplicates are removed.
	Items []record.ID
	// Nonce makes the request unique; zero means a fresh random nonce. Set
	// it only in tests.
	Nonce Nonce
}

// Request is a signed, verified access request by a provider. It is
// immutable; the only ways to get one are NewRequest, DecodeRequest and
// ParseRequest, each of which checks the signature.
type Request struct {
	raw       []byte
	requester identity.ID
	grant     GrantID
	nonce     Nonce
	time      time.Time
	all       bool
	items     []record.ID // ascending, unique
}

// NewRequest signs a request by s (the provider) at time now.
func NewRequest(s Signer, p RequestParams, now time.Time) (*Request, error) {
	r, err := newRequest(s, p, now)
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	return r, nil
}

func newRequest(s Signer, p RequestParams, now time.Time) (*Request, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: no signer", ErrInvalidParams)
	}
	t, err := checkTime(now, "request")
	if err != nil {
		return nil, err
	}
	r := &Request{requester: s.ID(), grant: p.Grant, nonce: p.Nonce, time: t, all: p.All}
	r.items = slices.Clone(p.Items)
	sortIDs(r.items)
	r.items = slices.Compact(r.items)
	if len(r.items) == 0 {
		r.items = nil
	}
	if r.nonce.IsZero() {
		r.nonce = randomNonce()
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	body := r.encodeBody()
	sig, err := sign(s, DomainRequest, body)
	if err != nil {
		return nil, err
	}
	r.raw = append(body, sig...)
	return r, nil
}

func (r *Request) validate() error {
	switch {
	case r.grant.IsZero():
		return fmt.Errorf("%w: grant ID is required", ErrInvalidParams)
	case r.all && len(r.items) > 0:
		return fmt.Errorf("%w: a request for all records in scope names no items", ErrInvalidParams)
	case !r.all && len(r.items) == 0:
		return fmt.Errorf("%w: a request names at least one item, or all", ErrInvalidParams)
	case len(r.items) > MaxRequestItems:
		return fmt.Errorf("%w: %d items, at most %d allowed", ErrInvalidParams, len(r.items), MaxRequestItems)
	}
	return nil
}

func (r *Request) encodeBody() []byte {
	e := encoder{b: make([]byte, 0, requestFixedLen+16*len(r.items)+sigLen)}
	e.raw([]byte(tagRequest))
	e.u8(version1)
	e.raw(r.requester[:])
	e.raw(r.grant[:])
	e.raw(r.nonce[:])
	e.time(r.time)
	var flags uint8
	if r.all {
		flags |= requestFlagAll
	}
	e.u8(flags)
	e.u16(uint16(len(r.items)))
	for _, id := range r.items {
		e.raw(id[:])
	}
	return e.b
}

// DecodeRequest decodes a request's binary form and verifies its signature
// by the requester it names.
func DecodeRequest(b []byte) (*Request, error) {
	r, err := decodeRequest(b, true)
	if err != nil {
		return nil, fmt.Errorf("decode request: %w", err)
	}
	return r, nil
}

// ParseRequest parses a request's text form (medvault-request-v1:...) and
// verifies it like DecodeRequest.
func ParseRequest(s string) (*Request, error) {
	b, err := decodeText(requestText, s)
	if err == nil {
		var r *Request
		if r, err = decodeRequest(b, true); err == nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("parse request: %w", err)
}

func decodeRequest(b []byte, verifySig bool) (*Request, error) {
	d := decoder{b: b}
	d.header(tagRequest, "request")
	if d.err != nil {
		return nil, d.err
	}
	if len(b) > maxRequestLen {
		return nil, fmt.Errorf("%w: request is %d bytes, at most %d allowed", ErrMalformed, len(b), maxRequestLen)
	}
	r := &Request{}
	r.requester = d.id()
	copy(r.grant[:], d.take(32))
	copy(r.nonce[:], d.take(16))
	r.time = d.time("request")
	flags := d.u8()
	n := int(d.u16())
	if d.err != nil {
		return nil, d.err
	}
	if flags&^requestFlagAll != 0 {
		return nil, fmt.Errorf("%w: unknown request flags %#x", ErrMalformed, flags)
	}
	if n > MaxRequestItems {
		return nil, fmt.Errorf("%w: %d items, at most %d allowed", ErrMalformed, n, MaxRequestItems)
	}
	r.all = flags&requestFlagAll != 0
	if n > 0 {
		if len(b)-d.off < 16*n {
			return nil, fmt.Errorf("%w: %w: %d record IDs announced", ErrMalformed, errTruncated, n)
		}
		r.items = make([]record.ID, n)
		for i := range n {
			copy(r.items[i][:], d.take(16))
			if i > 0 && d.err == nil && bytes.Compare(r.items[i-1][:], r.items[i][:]) >= 0 {
				return nil, fmt.Errorf("%w: items not in strictly ascending order", ErrMalformed)
			}
		}
	}
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
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if verifySig && !verify(r.requester, DomainRequest, b, bodyLen) {
		return nil, fmt.Errorf("%w: request is not signed by its requester %s", ErrBadSignature, r.requester)
	}
	r.raw = bytes.Clone(b)
	return r, nil
}

func (r *Request) verifySignature() bool {
	return len(r.raw) > sigLen && verify(r.requester, DomainRequest, r.raw, len(r.raw)-sigLen)
}

// Requester returns the provider who signed the request.
func (r *Request) Requester() identity.ID { return r.requester }

// Grant returns the ID of the grant the request is made under.
func (r *Request) Grant() GrantID { return r.grant }

// Nonce returns the request nonce.
func (r *Request) Nonce() Nonce { return r.nonce }

// Time returns when the request was signed.
func (r *Request) Time() time.Time { return r.time }

// All reports whether the request asks for every record in scope.
func (r *Request) All() bool { return r.all }

// Items returns the records asked for, in ascending order (none when All).
func (r *Request) Items() []record.ID { return slices.Clone(r.items) }

// Bytes returns a copy of the binary form (body || signature).
func (r *Request) Bytes() []byte { return bytes.Clone(r.raw) }

// Text returns the text form, medvault-request-v1:...
func (r *Request) Text() string { return encodeText(requestText, r.raw) }
