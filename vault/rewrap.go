package vault

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"filippo.io/age"
	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// Sharing a stored record does not decrypt and re-encrypt it. An age file is
// a header, which wraps a random 16-byte file key to its recipients and is
// authenticated by an HMAC under that key, followed by a payload encrypted
// under the file key alone. To send a record to a provider the node
// unwraps the stored header's file key, writes a new header that wraps the
// same key to the provider's recipient, and sends the stored payload
// unchanged. The provider receives an ordinary age file it can decrypt
// with its own identity, and the patient's node does no per-byte
// cryptography: 1 GiB costs two age chunk passes less (see docs/DESIGN.md).
//
// The provider learns the record's file key, which decrypts only this
// record's payload: what it was given anyway. Two providers given the same
// record receive the same payload bytes and could tell so, as they could by
// comparing the plaintext.

// ageIntro is the first line of every age v1 file.
const ageIntro = "age-encryption.org/v1\n"

// ageHeader returns an age v1 header (C2SP age, "Header") that wraps fileKey
// to the recipient: the version line, the recipient's stanzas (arguments
// separated by spaces, body in unpadded standard base64 wrapped at 64
// columns, the last line always shorter than 64, so possibly empty), the
// "---" footer and the header MAC, HMAC-SHA-256 keyed by
// HKDF-SHA-256(ikm = file key, salt = empty, info = "header") over the
// header up to and including "---".
func ageHeader(fileKey []byte, to age.Recipient) ([]byte, error) {
	if len(fileKey) != 16 {
		return nil, errors.New("age header: file key must be 16 bytes")
	}
	stanzas, err := to.Wrap(fileKey)
	if err != nil {
		return nil, err
	}
	if len(stanzas) == 0 {
		return nil, errors.New("age header: recipient returned no stanza")
	}
	var b bytes.Buffer
	b.WriteString(ageIntro)
	for _, s := range stanzas {
		if !ageString(s.Type) {
			return nil, fmt.Errorf("age header: invalid stanza type %q", s.Type)
		}
		b.WriteString("-> " + s.Type)
		for _, a := range s.Args {
			if !ageString(a) {
				return nil, fmt.Errorf("age header: invalid stanza argument %q", a)
			}
			b.WriteString(" " + a)
		}
		b.WriteByte('\n')
		body := base64.RawStdEncoding.EncodeToString(s.Body)
		for len(body) >= 64 {
			b.WriteString(body[:64] + "\n")
			body = body[64:]
		}
		b.WriteString(body + "\n")
	}
	b.WriteString("---")
	key, err := hkdf.Key(sha256.New, fileKey, nil, "header", 32)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(b.Bytes())
	b.WriteString(" " + base64.RawStdEncoding.EncodeToString(mac.Sum(nil)) + "\n")
	return b.Bytes(), nil
}

// ageString reports whether s is a valid stanza type or argument: one or
// more printable ASCII characters, no space.
func ageString(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// headerDigest returns the SHA-256 of the age header and payload nonce at
// the start of head (see recordHead), and false if head does not start with
// a header in age's canonical encoding, of at most maxAgeHeader bytes,
// followed by a nonce. The header wraps the file key and the nonce makes
// the payload key from it: together they fix the key that authenticates
// every payload chunk.
func headerDigest(head []byte) ([32]byte, bool) {
	hdr, err := age.ExtractHeader(bytes.NewReader(head))
	if err != nil || !bytes.HasPrefix(head, hdr) || len(hdr) > maxAgeHeader || len(head) < len(hdr)+ageNonceSize {
		return [32]byte{}, false
	}
	return sha256.Sum256(head[:len(hdr)+ageNonceSize]), true
}

// recordHead returns the first bytes of record id's stored age file, as
// many as headerDigest may need, from its first chunks.
func recordHead(chunks *bbolt.Bucket, id record.ID) []byte {
	const want = maxAgeHeader + ageNonceSize
	var head []byte
	for i := uint32(0); len(head) < want; i++ {
		c := chunks.Get(chunkKey(id, i))
		if c == nil {
			break
		}
		head = append(head, c[:min(len(c), want-len(head))]...)
	}
	return head
}

// checkHeader reports ErrTampered when m records a header digest and the
// record's stored file does not start with that header and nonce (head is
// from recordHead).
func checkHeader(m *Meta, head []byte) error {
	if m.HeaderDigest == ([32]byte{}) {
		return nil
	}
	if d, ok := headerDigest(head); !ok || d != m.HeaderDigest {
		return fmt.Errorf("%w: record %s: stored age header is not the record's", ErrTampered, m.ID)
	}
	return nil
}

// rewrap parses the age header at the start of head (the first chunk of a
// stored record), unwraps its file key with ids, and returns a header for
// the same file key wrapped to `to`, and the length of the old header (the
// payload starts there).
func rewrap(head []byte, to age.Recipient, ids ...age.Identity) (hdr []byte, oldLen int, err error) {
	old, err := age.ExtractHeader(bytes.NewReader(head))
	if err != nil {
		return nil, 0, err
	}
	// age accepts only the canonical encoding, which ExtractHeader
	// reproduces: anything else means the stored bytes are not the header
	// that was parsed.
	if !bytes.HasPrefix(head, old) {
		return nil, 0, errors.New("age header is not canonical")
	}
	fileKey, err := age.DecryptHeader(old, ids...)
	if err != nil {
		return nil, 0, err
	}
	defer clear(fileKey)
	hdr, err = ageHeader(fileKey, to)
	return hdr, len(old), err
}
