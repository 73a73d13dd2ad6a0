package p2p

import (
	"bufio"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// base58btc encodes b the way Bitcoin does: big-endian base 58 of the bytes,
// with one '1' per leading zero byte. Written out here so that the test does
// not trust libp2p's encoder to check libp2p.
func base58btc(b []byte) string {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	x := new(big.Int).SetBytes(b)
	base, mod := big.NewInt(58), new(big.Int)
	var out []byte
	for x.Sign() > 0 {
		x.DivMod(x, base, mod)
		out = append(out, alphabet[mod.Int64()])
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

// handPeerID is the brief's hand computation: identity multihash (0x00, 0x24)
// of the protobuf PublicKey {Type: Ed25519 (1), Data: 32 bytes}, i.e.
// 08 01 12 20 || key, in base58btc.
func handPeerID(pub ed25519.PublicKey) string {
	b := append([]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}, pub...)
	return base58btc(b)
}

func TestPeerIDCrossCheck(t *testing.T) {
	for i := 0; i < 32; i++ {
		pub := newKey(t).Public().(ed25519.PublicKey)
		ours, err := IDFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		lpk, err := crypto.UnmarshalEd25519PublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := peer.IDFromPublicKey(lpk)
		if err != nil {
			t.Fatal(err)
		}
		if ours != theirs {
			t.Fatalf("IDFromPublicKey %s, libp2p %s", ours, theirs)
		}
		if hand := handPeerID(pub); ours.String() != hand {
			t.Fatalf("String %s, hand computation %s", ours, hand)
		}
		if !strings.HasPrefix(ours.String(), "12D3KooW") {
			t.Fatalf("unexpected prefix: %s", ours)
		}
		back, err := PublicKeyFromID(ours)
		if err != nil || !back.Equal(pub) {
			t.Fatalf("PublicKeyFromID: %v", err)
		}
		parsed, err := ParseID(ours.String())
		if err != nil || parsed != ours {
			t.Fatalf("ParseID: %v", err)
		}
		cidForm := peer.ToCid(ours).String()
		if parsed, err := ParseID(cidForm); err != nil || parsed != ours {
			t.Fatalf("ParseID(%s): %v", cidForm, err)
		}
	}
}

// TestPeerIDVectors checks known answers: testdata/peerid_vectors.txt lists
// Ed25519 seeds (the first is RFC 8032's test 1), public keys and peer IDs.
func TestPeerIDVectors(t *testing.T) {
	f, err := os.Open("testdata/peerid_vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) != 3 {
			t.Fatalf("bad vector line %q", line)
		}
		seed, err1 := hex.DecodeString(fs[0])
		pubWant, err2 := hex.DecodeString(fs[1])
		if err1 != nil || err2 != nil || len(seed) != ed25519.SeedSize {
			t.Fatalf("bad vector line %q", line)
		}
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		if !pub.Equal(ed25519.PublicKey(pubWant)) {
			t.Fatalf("seed %s: public key %x, want %s", fs[0], pub, fs[1])
		}
		id, err := IDFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if id.String() != fs[2] || handPeerID(pub) != fs[2] {
			t.Fatalf("seed %s: peer id %s, want %s", fs[0], id, fs[2])
		}
		n++
	}
	if err := sc.Err(); err != nil || n < 3 {
		t.Fatalf("read %d vectors: %v", n, err)
	}
}

func TestPeerIDRefusals(t *testing.T) {
	pub := newKey(t).Public().(ed25519.PublicKey)
	good, _ := IDFromPublicKey(pub)

	secpKey, _, err := crypto.GenerateSecp256k1Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	secpID, _ := peer.IDFromPrivateKey(secpKey)
	shaID, _ := mh.Sum([]byte(good)[2:], mh.SHA2_256, -1) // same key, hashed form
	nonCanonical := append([]byte{0x00, 0x26}, 0x08, 0x01, 0x12, 0x20)
	nonCanonical = append(append(nonCanonical, pub...), 0x18, 0x00) // trailing field

	ids := []struct {
		name string
		id   peer.ID
	}{
		{"empty", ""},
		{"secp256k1", secpID},
		{"sha256 multihash", peer.ID(shaID)},
		{"truncated", good[:len(good)-1]},
		{"extra byte", good + "\x00"},
		{"non-canonical protobuf", peer.ID(nonCanonical)},
		{"wrong key type", peer.ID(append([]byte{0x00, 0x24, 0x08, 0x02, 0x12, 0x20}, pub...))},
	}
	for _, tt := range ids {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := PublicKeyFromID(tt.id); !errors.Is(err, ErrBadPeerID) {
				t.Fatalf("PublicKeyFromID: %v, want ErrBadPeerID", err)
			}
			if tt.id == "" {
				return
			}
			if _, err := ParseID(tt.id.String()); !errors.Is(err, ErrBadPeerID) {
				t.Fatalf("ParseID: %v, want ErrBadPeerID", err)
			}
		})
	}
	for _, s := range []string{"", "not-a-peer-id", "12D3KooW", strings.Repeat("1", 200), good.String() + "x"} {
		if _, err := ParseID(s); !errors.Is(err, ErrBadPeerID) {
			t.Errorf("ParseID(%q): %v, want ErrBadPeerID", s, err)
		}
	}
	if _, err := IDFromPublicKey(pub[:31]); !errors.Is(err, ErrBadKey) {
		t.Errorf("IDFromPublicKey(31 bytes): %v", err)
	}
}

func FuzzParseID(f *testing.F) {
	pub := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	id, _ := IDFromPublicKey(pub)
	f.Add(id.String())
	f.Add(peer.ToCid(id).String())
	f.Add("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		pub, err := PublicKeyFromID(id)
		if err != nil {
			t.Fatalf("ParseID accepted %q but PublicKeyFromID refuses it: %v", s, err)
		}
		again, err := IDFromPublicKey(pub)
		if err != nil || again != id {
			t.Fatalf("round trip of %q changed the id", s)
		}
	})
}
