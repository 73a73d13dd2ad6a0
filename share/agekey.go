package share

import (
	"errors"
	"fmt"
	"strings"
)

// AgeRecipient is an age X25519 recipient: the 32-byte public key that
// records for a user are encrypted to. Its text form is the age string
// "age1..." (Bech32, human-readable part "age").
type AgeRecipient [32]byte

// String returns the age recipient string, "age1" followed by 58 lowercase
// Bech32 characters.
func (r AgeRecipient) String() string { return bech32Encode("age", r[:]) }

// IsZero reports whether r is the zero value.
func (r AgeRecipient) IsZero() bool { return r == AgeRecipient{} }

// ParseAgeRecipient parses an age X25519 recipient string ("age1..."). It
// accepts the all-lowercase form age writes and the all-uppercase form
// Bech32 allows. Other recipient types (plugins, post-quantum hybrids) are
// refused.
func ParseAgeRecipient(s string) (AgeRecipient, error) {
	var r AgeRecipient
	s = strings.TrimSpace(s)
	if len(s) > 100 {
		return r, fmt.Errorf("%w: age recipient is too long", ErrInvalidParams)
	}
	hrp, data, err := bech32Decode(s)
	if err != nil {
		return r, fmt.Errorf("%w: age recipient: %v", ErrInvalidParams, err)
	}
	if hrp != "age" {
		return r, fmt.Errorf("%w: not an age X25519 recipient (want age1...)", ErrInvalidParams)
	}
	if len(data) != len(r) {
		return r, fmt.Errorf("%w: age recipient holds %d bytes, want %d", ErrInvalidParams, len(data), len(r))
	}
	copy(r[:], data)
	if r.IsZero() {
		return AgeRecipient{}, fmt.Errorf("%w: age recipient is the zero key", ErrInvalidParams)
	}
	return r, nil
}

// Bech32 (BIP 173) as age uses it: checksum constant 1, no 90-character
// limit.

const bech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

var bech32Gen = [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}

func bech32Polymod(hrp string, values []byte) uint32 {
	chk := uint32(1)
	step := func(v byte) {
		top := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ uint32(v)
		for i := range 5 {
			if (top>>uint(i))&1 == 1 {
				chk ^= bech32Gen[i]
			}
		}
	}
	for i := 0; i < len(hrp); i++ {
		step(hrp[i] >> 5)
	}
	step(0)
	for i := 0; i < len(hrp); i++ {
		step(hrp[i] & 31)
	}
	for _, v := range values {
		step(v)
	}
	return chk
}

// convertBits regroups a slice of from-bit values into to-bit values.
func convertBits(data []byte, from, to uint, pad bool) ([]byte, error) {
	var acc uint32
	var bits uint
	maxv := uint32(1)<<to - 1
	out := make([]byte, 0, len(data)*int(from)/int(to)+1)
	for _, v := range data {
		if uint32(v)>>from != 0 {
			return nil, errors.New("invalid data range")
		}
		acc = acc<<from | uint32(v)
		bits += from
		for bits >= to {
			bits -= to
			out = append(out, byte(acc>>bits&maxv))
		}
	}
	if pad {
		if bits > 0 {
			out = append(out, byte(acc<<(to-bits)&maxv))
		}
	} else if bits >= from {
		return nil, errors.New("illegal zero padding")
	} else if acc<<(to-bits)&maxv != 0 {
		return nil, errors.New("non-zero padding")
	}
	return out, nil
}

func bech32Encode(hrp string, data []byte) string {
	values, _ := convertBits(data, 8, 5, true) // cannot fail for 8-bit input
	chk := bech32Polymod(hrp, append(values, 0, 0, 0, 0, 0, 0)) ^ 1
	var b strings.Builder
	b.Grow(len(hrp) + 1 + len(values) + 6)
	b.WriteString(hrp)
	b.WriteByte('1')
	for _, v := range values {
		b.WriteByte(bech32Charset[v])
	}
	for i := range 6 {
		b.WriteByte(bech32Charset[(chk>>uint(5*(5-i)))&31])
	}
	return b.String()
}

// bech32Decode returns the lowercase human-readable part and the 8-bit data.
func bech32Decode(s string) (string, []byte, error) {
	lower, upper := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 {
			return "", nil, errors.New("invalid character")
		}
		lower = lower || ('a' <= c && c <= 'z')
		upper = upper || ('A' <= c && c <= 'Z')
	}
	if lower && upper {
		return "", nil, errors.New("mixed case")
	}
	s = strings.ToLower(s)
	pos := strings.LastIndexByte(s, '1')
	if pos < 1 || pos+7 > len(s) {
		return "", nil, errors.New("invalid separator position")
	}
	hrp := s[:pos]
	values := make([]byte, 0, len(s)-pos-1)
	for i := pos + 1; i < len(s); i++ {
		v := strings.IndexByte(bech32Charset, s[i])
		if v < 0 {
			return "", nil, errors.New("invalid character")
		}
		values = append(values, byte(v))
	}
	if bech32Polymod(hrp, values) != 1 {
		return "", nil, errors.New("invalid checksum")
	}
	data, err := convertBits(values[:len(values)-6], 5, 8, false)
	if err != nil {
		return "", nil, err
	}
	return hrp, data, nil
}
