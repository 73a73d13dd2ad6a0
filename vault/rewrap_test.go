package vault

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"filippo.io/age"
	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// padRecipient wraps the file key in a stanza of type "pad" whose body is
// the key followed by n zero bytes, to exercise every base64 line layout.
type padRecipient struct{ n int }

func (r padRecipient) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	return []*age.Stanza{{Type: "pad", Args: []string{"a", "b"}, Body: append(bytes.Clone(fileKey), make([]byte, r.n)...)}}, nil
}

type padIdentity struct{}

func (padIdentity) Unwrap(ss []*age.Stanza) ([]byte, error) {
	for _, s := range ss {
		if s.Type == "pad" && len(s.Body) >= 16 {
			return s.Body[:16], nil
		}
	}
	return nil, age.ErrIncorrectIdentity
}

func encryptWith(t *testing.T, to age.Recipient, plain []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := age.Encrypt(&b, to)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestRewrapDecryptsWithAge checks the hand-written header against age
// itself: for bodies whose base64 ends mid-line, exactly at a line end
// (the empty last line) and past several lines, the rewrapped file decrypts
// with the new identity to the original plaintext, and the old one no longer
// opens it.
func TestRewrapDecryptsWithAge(t *testing.T) {
	plain := bytes.Repeat([]byte("result 6.1 % "), 20000) // several age chunks
	src := encryptWith(t, padRecipient{0}, plain)
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []age.Recipient{x.Recipient(), padRecipient{0}, padRecipient{32}, padRecipient{33}, padRecipient{80}, padRecipient{128}} {
		hdr, n, err := rewrap(src, to, padIdentity{})
		if err != nil {
			t.Fatal(err)
		}
		file := append(hdr, src[n:]...)
		var id age.Identity = padIdentity{}
		if _, ok := to.(*age.X25519Recipient); ok {
			id = x
		}
		r, err := age.Decrypt(bytes.NewReader(file), id)
		if err != nil {
			t.Fatalf("%T: %v\n%s", to, err, hdr)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%T: plaintext differs (%v)", to, err)
		}
		if _, ok := to.(*age.X25519Recipient); ok {
			if _, err := age.Decrypt(bytes.NewReader(file), padIdentity{}); err == nil {
				t.Fatal("the old identity still opens the rewrapped file")
			}
		}
	}
}

// TestRewrapRefusesBadHeaders: a header with a wrong MAC, an unknown
// recipient, or bytes that are not an age file is refused, never rewrapped.
func TestRewrapRefusesBadHeaders(t *testing.T) {
	src := encryptWith(t, padRecipient{0}, []byte("x"))
	x, _ := age.GenerateX25519Identity()
	mac := bytes.Index(src, []byte("--- ")) + 5
	badMAC := bytes.Clone(src)
	badMAC[mac] ^= 'A' ^ 'B'
	if badMAC[mac] == src[mac] {
		badMAC[mac] = 'C'
	}
	other, _ := age.GenerateX25519Identity()
	for name, in := range map[string][]byte{
		"mac":       badMAC,
		"recipient": encryptWith(t, other.Recipient(), []byte("x")),
		"garbage":   []byte("not an age file"),
		"truncated": src[:20],
	} {
		if _, _, err := rewrap(in, x.Recipient(), padIdentity{}); err == nil {
			t.Errorf("%s: rewrapped", name)
		}
	}
	if _, err := ageHeader(make([]byte, 15), x.Recipient()); err == nil {
		t.Error("a 15-byte file key was accepted")
	}
	if _, err := ageHeader(make([]byte, 16), badRecipient{}); err == nil || !strings.Contains(err.Error(), "invalid stanza") {
		t.Errorf("stanza argument with a space: %v", err)
	}
}

type badRecipient struct{}

func (badRecipient) Wrap([]byte) ([]*age.Stanza, error) {
	return []*age.Stanza{{Type: "x", Args: []string{"a b"}}}, nil
}

// A record stored before header digests were kept is hashed in full while
// it is sent: intact, it arrives as an age file for the provider; with a
// payload byte changed, sending fails with ErrTampered.
func TestShareWithoutHeaderDigest(t *testing.T) {
	v := newTestVault(t)
	plain := make([]byte, 3*chunkSize)
	for i := range plain {
		plain[i] = byte(i * 5)
	}
	m, err := v.Add(bytes.NewReader(plain), NewRecord{Category: record.Imaging})
	if err != nil {
		t.Fatal(err)
	}
	// Reseal the metadata as an older medvault wrote it.
	m.HeaderDigest = [32]byte{}
	if err := v.db.Update(func(tx *bbolt.Tx) error {
		sealed, err := v.sealMeta(m)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketRecords).Put(m.ID[:], sealed)
	}); err != nil {
		t.Fatal(err)
	}
	to, _ := age.GenerateX25519Identity()
	adm := &Admission{allowed: map[record.ID]bool{m.ID: true}}
	send := func() ([]byte, error) {
		out, err := v.Share(adm, m.ID, to.Recipient(), 0)
		if err != nil {
			return nil, err
		}
		if !out.hashAll {
			t.Fatal("a record without a header digest is not hashed while sent")
		}
		var b bytes.Buffer
		_, err = out.WriteTo(&b)
		return b.Bytes(), err
	}
	file, err := send()
	if err != nil {
		t.Fatal(err)
	}
	r, err := age.Decrypt(bytes.NewReader(file), to)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("the provider's file does not decrypt to the record (%v)", err)
	}
	v.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketChunks)
		c := bytes.Clone(b.Get(chunkKey(m.ID, 2)))
		c[100] ^= 1
		return b.Put(chunkKey(m.ID, 2), c)
	})
	if _, err := send(); !errors.Is(err, ErrTampered) {
		t.Fatalf("sending a damaged record without a header digest: %v", err)
	}
}
