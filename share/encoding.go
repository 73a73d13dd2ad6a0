package share

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/medvault/medvault/vault/identity"
)

// Limits shared by every format. They are part of the v1 formats: a decoder
// rejects anything beyond them.
const (
	// MaxHints is the largest number of address hints a card or grant holds.
	MaxHints = 8
	// MaxHintLen is the longest address hint, in bytes.
	MaxHintLen = 255
	// MaxNameLen is the longest display name on a card, in bytes.
	MaxNameLen = 128
	// MaxGrantRecords is the largest number of record IDs a grant names.
	MaxGrantRecords = 256
	// MaxRequestItems is the largest number of record IDs a request names.
	MaxRequestItems = 1024

	// minUnix and maxUnix bound every encoded time: 1970-01-01T00:00:01Z to
	// 9999-12-31T23:59:59Z.
	minUnix = 1
	maxUnix = 253402300799

	headerLen = 4
	sigLen    = ed25519.SignatureSize
	keyLen    = ed25519.PublicKeySize
)

// Each binary form begins with a three-byte tag naming its kind and one
// version byte.
const (
	tagCard    = "mvc"
	tagGrant   = "mvg"
	tagRevoke  = "mvr"
	tagRequest = "mvq"
	version1   = 1
)

// Domain-separation strings. The signed message is domain || 0x00 || body.
const (
	DomainCard    = "medvault/card/v1"
	DomainGrant   = "medvault/grant/v1"
	DomainRevoke  = "medvault/revoke/v1"
	DomainRequest = "medvault/request/v1"
)

// Signer signs with a user's Ed25519 key. *identity.Identity satisfies it.
// ID must be the public half of the key Sign uses; every constructor in this
// package checks the signature it gets back against ID.
type Signer interface {
	ID() identity.ID
	Sign(msg []byte) []byte
}

var _ Signer = (*identity.Identity)(nil)

// signedMessage returns domain || 0x00 || body.
func signedMessage(domain string, body []byte) []byte {
	m := make([]byte, 0, len(domain)+1+len(body))
	m = append(m, domain...)
	m = append(m, 0)
	return append(m, body...)
}

// sign signs body for domain with s and checks the result, so that a signer
// whose ID does not match its key is caught at once.
func sign(s Signer, domain string, body []byte) ([]byte, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: no signer", ErrInvalidParams)
	}
	id := s.ID()
	msg := signedMessage(domain, body)
	sig := s.Sign(msg)
	if len(sig) != sigLen || !ed25519.Verify(id.PublicKey(), msg, sig) {
		return nil, fmt.Errorf("%w: signer produced a signature that does not verify under its own ID", ErrBadSignature)
	}
	return sig, nil
}

// verify reports whether token = body || sig carries a valid signature by key
// for domain. bodyLen is the length of body.
func verify(key identity.ID, domain string, token []byte, bodyLen int) bool {
	if bodyLen < 0 || len(token) != bodyLen+sigLen {
		return false
	}
	return ed25519.Verify(key.PublicKey(), signedMessage(domain, token[:bodyLen]), token[bodyLen:])
}

// encoder appends big-endian fields to a byte slice.
type encoder struct{ b []byte }

func (e *encoder) raw(p []byte) { e.b = append(e.b, p...) }
func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = append(e.b, byte(v>>8), byte(v)) }
func (e *encoder) u32(v uint32) {
	e.b = append(e.b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
func (e *encoder) u64(v uint64) {
	for s := 56; s >= 0; s -= 8 {
		e.b = append(e.b, byte(v>>uint(s)))
	}
}
func (e *encoder) time(t time.Time) { e.u64(uint64(t.Unix())) }
func (e *encoder) hints(h []string) {
	e.u8(uint8(len(h)))
	for _, s := range h {
		e.u8(uint8(len(s)))
		e.b = append(e.b, s...)
	}
}

// errTruncated is wrapped in ErrMalformed when input ends early.
var errTruncated = errors.New("truncated")

// decoder reads big-endian fields. The first error sticks; later reads
// return zero values.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.err = fmt.Errorf("%w: %w at byte %d", ErrMalformed, errTruncated, d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8() uint8 {
	p := d.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *decoder) u16() uint16 {
	p := d.take(2)
	if p == nil {
		return 0
	}
	return uint16(p[0])<<8 | uint16(p[1])
}

func (d *decoder) u32() uint32 {
	p := d.take(4)
	if p == nil {
		return 0
	}
	return uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])
}

func (d *decoder) u64() uint64 {
	p := d.take(8)
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v
}

func (d *decoder) id() identity.ID {
	var id identity.ID
	copy(id[:], d.take(keyLen))
	return id
}

func (d *decoder) time(field string) time.Time {
	v := d.u64()
	if d.err != nil {
		return time.Time{}
	}
	if v < minUnix || v > maxUnix {
		d.fail("%s time out of range", field)
		return time.Time{}
	}
	return time.Unix(int64(v), 0).UTC()
}

func (d *decoder) hints() []string {
	n := int(d.u8())
	if d.err != nil {
		return nil
	}
	if n > MaxHints {
		d.fail("%d address hints, at most %d allowed", n, MaxHints)
		return nil
	}
	if n == 0 {
		return nil
	}
	hs := make([]string, 0, n)
	for range n {
		l := int(d.u8())
		p := d.take(l)
		if d.err != nil {
			return nil
		}
		hs = append(hs, string(p))
	}
	if err := checkHints(hs); err != nil {
		d.fail("%v", err)
		return nil
	}
	return hs
}

// header reads and checks the tag and version.
func (d *decoder) header(tag, what string) {
	p := d.take(headerLen)
	if d.err != nil {
		return
	}
	if string(p[:3]) != tag {
		d.fail("not a medvault %s", what)
		return
	}
	if p[3] != version1 {
		d.err = fmt.Errorf("%w: %s version %d (this build reads version %d)", ErrUnsupportedVersion, what, p[3], version1)
	}
}

// checkHints validates address hints: at most MaxHints, each 1 to MaxHintLen
// bytes of printable ASCII without spaces, no duplicates. Hints are opaque
// text to this package (the network layer parses them as multiaddrs).
func checkHints(hs []string) error {
	if len(hs) > MaxHints {
		return fmt.Errorf("%d address hints, at most %d allowed", len(hs), MaxHints)
	}
	for i, h := range hs {
		if len(h) == 0 || len(h) > MaxHintLen {
			return fmt.Errorf("address hint %d is %d bytes, want 1 to %d", i, len(h), MaxHintLen)
		}
		for j := 0; j < len(h); j++ {
			if h[j] < 0x21 || h[j] > 0x7e {
				return fmt.Errorf("address hint %d contains a byte outside printable ASCII", i)
			}
		}
		for _, prev := range hs[:i] {
			if prev == h {
				return fmt.Errorf("address hint %d is a duplicate", i)
			}
		}
	}
	return nil
}

// checkTime validates a time given by a caller and truncates it to seconds.
func checkTime(t time.Time, field string) (time.Time, error) {
	u := t.Unix()
	if u < minUnix || u > maxUnix {
		return time.Time{}, fmt.Errorf("%w: %s time %s is out of range", ErrInvalidParams, field, t.UTC().Format(time.RFC3339))
	}
	return time.Unix(u, 0).UTC(), nil
}
