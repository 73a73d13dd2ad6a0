package ledger

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// SaltSize is the size of the random salt hashed into every leaf.
const SaltSize = 32

// Domain-separation strings (see FORMAT.md). Each is versioned; a change of
// layout gets a new string.
const (
	leafDomain  = "medvault/ledger/leaf/v1"  // prefix of every leaf's data
	entryDomain = "medvault/ledger/entry/v1" // additional data of a sealed entry, with its index
	keptDomain  = "medvault/ledger/kept/v1"  // retained-checkpoint commitment, and its note line
)

// leafPrefixLen is the length of 0x00 || leafDomain, the bytes hashed
// before a leaf's salt.
const leafPrefixLen = 1 + len(leafDomain)

// Leaf is what an inclusion proof proves: an entry and the salt that was
// hashed with it. Handing a Leaf, a checkpoint and an inclusion proof to a
// provider shows them that entry and nothing about any other entry.
type Leaf struct {
	Salt  [SaltSize]byte
	Entry Entry
}

// MarshalBinary returns salt || canonical entry.
func (l *Leaf) MarshalBinary() ([]byte, error) {
	b := make([]byte, SaltSize, SaltSize+256)
	copy(b, l.Salt[:])
	return l.Entry.AppendBinary(b)
}

// UnmarshalBinary decodes salt || canonical entry, rejecting anything else.
func (l *Leaf) UnmarshalBinary(data []byte) error {
	if len(data) < SaltSize {
		return fmt.Errorf("ledger: leaf is truncated: %w", ErrMalformed)
	}
	var e Entry
	if err := e.UnmarshalBinary(data[SaltSize:]); err != nil {
		return err
	}
	copy(l.Salt[:], data)
	l.Entry = e
	return nil
}

// Hash returns the leaf hash: SHA-256(0x00 || "medvault/ledger/leaf/v1" ||
// salt || entry), the RFC 6962 hash of the leaf data.
func (l *Leaf) Hash() (Hash, error) {
	b, err := l.MarshalBinary()
	if err != nil {
		return Hash{}, err
	}
	return leafHash(b), nil
}

// leafHash hashes plain = salt || entry as a leaf.
func leafHash(plain []byte) Hash {
	h := sha256.New()
	var prefix [leafPrefixLen]byte
	copy(prefix[1:], leafDomain)
	h.Write(prefix[:])
	h.Write(plain)
	var out Hash
	h.Sum(out[:0])
	return out
}

// leafBuf returns a buffer holding 0x00 || leafDomain with room for n
// more bytes.
func leafBuf(n int) []byte {
	b := make([]byte, leafPrefixLen, leafPrefixLen+n)
	copy(b[1:], leafDomain)
	return b
}

// newSalt returns a fresh random salt.
func newSalt() ([SaltSize]byte, error) {
	var s [SaltSize]byte
	if _, err := rand.Read(s[:]); err != nil {
		return s, fmt.Errorf("ledger: reading random salt: %w", err)
	}
	return s, nil
}

// entryAD returns the additional data that binds a sealed entry to its
// position: "medvault/ledger/entry/v1" || uint64 index, big-endian.
func entryAD(buf *[len(entryDomain) + 8]byte, index int64) []byte {
	copy(buf[:], entryDomain)
	binary.BigEndian.PutUint64(buf[len(entryDomain):], uint64(index))
	return buf[:]
}

// seal returns the stored form of plain (salt || entry) at index: plain
// itself when aead is nil, else nonce || AEAD(plain).
func seal(aead cipher.AEAD, index int64, plain []byte, nonce []byte) []byte {
	if aead == nil {
		return append([]byte(nil), plain...)
	}
	var adb [len(entryDomain) + 8]byte
	out := make([]byte, len(nonce), len(nonce)+len(plain)+aead.Overhead())
	copy(out, nonce)
	return aead.Seal(out, nonce, plain, entryAD(&adb, index))
}

var errOpen = errors.New("entry does not authenticate (changed, moved, or wrong key)")

// open appends the plaintext (salt || entry) of a stored blob at index to
// dst. blob is not retained.
func open(aead cipher.AEAD, index int64, blob, dst []byte) ([]byte, error) {
	if aead == nil {
		return append(dst, blob...), nil
	}
	ns := aead.NonceSize()
	if len(blob) < ns+aead.Overhead() {
		return dst, errOpen
	}
	var adb [len(entryDomain) + 8]byte
	out, err := aead.Open(dst, blob[:ns], blob[ns:], entryAD(&adb, index))
	if err != nil {
		return dst, errOpen
	}
	return out, nil
}
