package share

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Text-form prefixes. A text form is prefix || base64url(bin || checksum)
// without padding, where checksum is the first 4 bytes of
// SHA-256(prefix || bin).
const (
	PrefixCard    = "medvault-card-v1:"
	PrefixGrant   = "medvault-grant-v1:"
	PrefixRevoke  = "medvault-revoke-v1:"
	PrefixRequest = "medvault-request-v1:"
)

const checksumLen = 4

var b64 = base64.RawURLEncoding.Strict()

// textKind describes one text form.
type textKind struct {
	prefix string // "medvault-grant-v1:"
	stem   string // "medvault-grant-v"
	what   string // "grant"
	maxBin int    // largest valid binary form
}

var (
	cardText    = textKind{PrefixCard, "medvault-card-v", "card", maxCardLen}
	grantText   = textKind{PrefixGrant, "medvault-grant-v", "grant", maxGrantLen}
	revokeText  = textKind{PrefixRevoke, "medvault-revoke-v", "revocation", revocationLen}
	requestText = textKind{PrefixRequest, "medvault-request-v", "request", maxRequestLen}
)

func checksum(prefix string, bin []byte) []byte {
	h := sha256.New()
	h.Write([]byte(prefix))
	h.Write(bin)
	return h.Sum(nil)[:checksumLen]
}

// encodeText returns the text form of bin.
func encodeText(k textKind, bin []byte) string {
	payload := make([]byte, 0, len(bin)+checksumLen)
	payload = append(payload, bin...)
	payload = append(payload, checksum(k.prefix, bin)...)
	return k.prefix + b64.EncodeToString(payload)
}

// maxText is the longest canonical text form of kind k.
func (k textKind) maxText() int { return len(k.prefix) + b64.EncodedLen(k.maxBin+checksumLen) }

// isSpace reports the ASCII whitespace that copying text through terminals,
// mail and chat inserts (line wraps, indentation).
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// normalizeText removes ASCII whitespace anywhere in s. It returns s itself
// when there is none.
func normalizeText(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) }) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if !isSpace(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// decodeText checks the prefix and checksum of a text form and returns the
// binary form. It never looks inside the binary form.
func decodeText(k textKind, s string) ([]byte, error) {
	if len(s) > 2*k.maxText()+1024 {
		return nil, fmt.Errorf("%w: %s text is longer than %d characters", ErrMalformed, k.what, k.maxText())
	}
	s = normalizeText(s)
	if !strings.HasPrefix(s, k.prefix) {
		if v, ok := otherVersion(k, s); ok {
			return nil, fmt.Errorf("%w: %s text version %s (this build reads version 1)", ErrUnsupportedVersion, k.what, v)
		}
		return nil, fmt.Errorf("%w: not a medvault %s (want text starting with %q)", ErrMalformed, k.what, k.prefix)
	}
	if len(s) > k.maxText() {
		return nil, fmt.Errorf("%w: %s text is longer than any valid one", ErrBadChecksum, k.what)
	}
	payload, err := b64.DecodeString(s[len(k.prefix):])
	if err != nil {
		// A character outside the alphabet, or a length no encoding has:
		// a typo or a cut, not a forgery.
		return nil, fmt.Errorf("%w: invalid %s text", ErrBadChecksum, k.what)
	}
	if len(payload) < checksumLen {
		return nil, fmt.Errorf("%w: %s text too short", ErrBadChecksum, k.what)
	}
	bin, sum := payload[:len(payload)-checksumLen], payload[len(payload)-checksumLen:]
	if string(checksum(k.prefix, bin)) != string(sum) {
		return nil, fmt.Errorf("%w: %s text", ErrBadChecksum, k.what)
	}
	return bin, nil
}

// otherVersion reports whether s starts with the prefix of another version
// of kind k ("medvault-grant-v2:"), and which.
func otherVersion(k textKind, s string) (string, bool) {
	if !strings.HasPrefix(s, k.stem) {
		return "", false
	}
	rest := s[len(k.stem):]
	i := strings.IndexByte(rest, ':')
	if i <= 0 || i > 9 {
		return "", false
	}
	v, err := strconv.ParseUint(rest[:i], 10, 32)
	if err != nil || v == 1 {
		return "", false
	}
	return rest[:i], true
}
