package share

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// keySigner is a throwaway Signer for tests.
type keySigner struct {
	priv ed25519.PrivateKey
}

func (k keySigner) ID() identity.ID {
	id, _ := identity.IDFromPublicKey(k.priv.Public().(ed25519.PublicKey))
	return id
}

func (k keySigner) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// seedSigner returns the signer whose Ed25519 seed is 32 bytes of b.
func seedSigner(b byte) keySigner {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = b
	}
	return keySigner{ed25519.NewKeyFromSeed(seed)}
}

// wrongSigner claims one ID and signs with another key.
type wrongSigner struct{ claim, key keySigner }

func (w wrongSigner) ID() identity.ID        { return w.claim.ID() }
func (w wrongSigner) Sign(msg []byte) []byte { return w.key.Sign(msg) }

var (
	patient  = seedSigner(0x01)
	provider = seedSigner(0x02)
	stranger = seedSigner(0x03)

	// t0 is the fixed issue time of the test vectors.
	t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

	testVault = VaultID{0x76, 0x61, 0x75, 0x6c, 0x74, 0x2d, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31}
)

// testRecipient is the age recipient of the X25519 private key that is 32
// bytes of 0x04.
func testRecipient() AgeRecipient {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = 0x04
	}
	k, err := ecdh.X25519().NewPrivateKey(seed)
	if err != nil {
		panic(err)
	}
	var r AgeRecipient
	copy(r[:], k.PublicKey().Bytes())
	return r
}

// rid returns a record ID derived from a name, for readable tests.
func rid(name string) record.ID {
	h := sha256.Sum256([]byte("record:" + name))
	var id record.ID
	copy(id[:], h[:16])
	return id
}

func fixedNonce(b byte) Nonce {
	var n Nonce
	for i := range n {
		n[i] = b
	}
	return n
}

// baseParams returns valid grant parameters for provider, labs for 30 days.
func baseParams() GrantParams {
	return GrantParams{
		Audience: provider.ID(),
		Vault:    testVault,
		Scope:    Scope{Categories: []record.Category{record.Labs}},
		Purpose:  Treatment,
		Expiry:   t0.Add(30 * 24 * time.Hour),
		Nonce:    fixedNonce(0xaa),
	}
}

func mustGrant(t testing.TB, p GrantParams) *Grant {
	t.Helper()
	g, err := IssueGrant(patient, p, t0)
	if err != nil {
		t.Fatalf("IssueGrant: %v", err)
	}
	return g
}

func mustRequest(t testing.TB, s Signer, p RequestParams, now time.Time) *Request {
	t.Helper()
	r, err := NewRequest(s, p, now)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	return r
}
