package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/mr-tron/base58"
)

// ID is a user's identity: their Ed25519 public key. Its text form is the
// libp2p peer ID of that key ("12D3KooW..."), so the ID a patient reads out
// is the address their node answers to.
type ID [ed25519.PublicKeySize]byte

// peerIDPrefix is the identity multihash header (code 0x00, length 36)
// followed by the protobuf encoding of a libp2p PublicKey message with
// Type = Ed25519 (field 1 = 1) and Data (field 2, length 32).
var peerIDPrefix = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// ErrInvalidID is returned for text or bytes that are not an Ed25519 peer ID.
var ErrInvalidID = errors.New("invalid medvault ID")

// IDFromPublicKey returns the ID of an Ed25519 public key.
func IDFromPublicKey(pub ed25519.PublicKey) (ID, error) {
	var id ID
	if len(pub) != ed25519.PublicKeySize {
		return id, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidID, len(pub), ed25519.PublicKeySize)
	}
	copy(id[:], pub)
	return id, nil
}

// PublicKey returns the Ed25519 public key.
func (id ID) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(id[:]) }

// Bytes returns the binary libp2p peer ID (an identity multihash, 38 bytes).
func (id ID) Bytes() []byte {
	b := make([]byte, 0, len(peerIDPrefix)+len(id))
	b = append(b, peerIDPrefix...)
	return append(b, id[:]...)
}

// String returns the libp2p peer ID text (base58btc).
func (id ID) String() string { return base58.Encode(id.Bytes()) }

// IsZero reports whether id is the zero value.
func (id ID) IsZero() bool { return id == ID{} }

// IDFromBytes parses the binary peer ID form returned by Bytes.
func IDFromBytes(b []byte) (ID, error) {
	var id ID
	if len(b) != len(peerIDPrefix)+len(id) || string(b[:len(peerIDPrefix)]) != string(peerIDPrefix) {
		return id, fmt.Errorf("%w: not an Ed25519 peer ID", ErrInvalidID)
	}
	copy(id[:], b[len(peerIDPrefix):])
	return id, nil
}

// ParseID parses the text form of an ID.
func ParseID(s string) (ID, error) {
	s = strings.TrimSpace(s)
	if len(s) == 0 || len(s) > 64 {
		return ID{}, fmt.Errorf("%w: %q", ErrInvalidID, s)
	}
	b, err := base58.Decode(s)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %q is not base58", ErrInvalidID, s)
	}
	return IDFromBytes(b)
}

// SafetyNumber returns a short number two people can read to each other to
// confirm they hold the same key: 20 decimal digits in four groups, derived
// from the ID alone (about 66 bits).
func (id ID) SafetyNumber() string {
	h := sha256.Sum256(append([]byte("medvault/safety-number/v1\x00"), id[:]...))
	var groups [4]string
	for i := range groups {
		// 5 digits from 32 bits: the bias (2^32 mod 10^5) is negligible.
		v := binary.BigEndian.Uint32(h[4*i:]) % 100000
		groups[i] = fmt.Sprintf("%05d", v)
	}
	return strings.Join(groups[:], " ")
}
