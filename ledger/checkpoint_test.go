package ledger

import (
	"bytes"
	"crypto/ed25519"
	cryptorand "crypto/rand"
	"encoding/base64"
	"errors"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func testSigner(t testing.TB, name string) (*noteSigner, *Verifier) {
	t.Helper()
	lg, err := New(Config{Origin: testOrigin, Signer: testKey(name)})
	if err != nil {
		t.Fatal(err)
	}
	return lg.signer, lg.verifier
}

func TestCheckpointSignParse(t *testing.T) {
	s, v := testSigner(t, "owner")
	root := Hash{1, 2, 3}
	kept := keptHash([]int64{1, 2})
	cp, err := signCheckpoint(s, 42, root, kept)
	if err != nil {
		t.Fatal(err)
	}
	text := testOrigin + "\n42\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n" +
		"medvault/ledger/kept/v1 " + base64.StdEncoding.EncodeToString(kept[:]) + "\n"
	if !bytes.HasPrefix(cp.Note, []byte(text+"\n— "+testOrigin+" ")) {
		t.Fatalf("note:\n%s", cp.Note)
	}
	got, err := ParseCheckpoint(cp.Note, v)
	if err != nil {
		t.Fatal(err)
	}
	if got.Origin != testOrigin || got.Size != 42 || got.Root != root || got.kept != kept || !bytes.Equal(got.Note, cp.Note) {
		t.Errorf("parsed %+v", got)
	}
	// The note verifies with the standard note package and the
	// published verifier key.
	nv, err := note.NewVerifier(v.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(cp.Note, note.VerifierList(nv)); err != nil {
		t.Errorf("note.Open: %v", err)
	}
	// Cached parse returns an independent copy.
	again, _ := ParseCheckpoint(cp.Note, v)
	again.Note[0] = 'X'
	if third, _ := ParseCheckpoint(cp.Note, v); third.Note[0] == 'X' {
		t.Error("cache shares memory with callers")
	}
}

func TestParseCheckpointRejects(t *testing.T) {
	s, v := testSigner(t, "owner")
	_, otherV := testSigner(t, "other")
	cp, err := signCheckpoint(s, 7, Hash{9}, Hash{8})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(text string) []byte {
		msg, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	root64 := base64.StdEncoding.EncodeToString(make([]byte, 32))
	kept := "medvault/ledger/kept/v1 " + root64 + "\n"
	sigLine := cp.Note[bytes.LastIndex(cp.Note, []byte("\n— "))+1:]
	nonCanonicalSig := func() []byte {
		// Set the unused low bits of the last base64 digit: the standard
		// decoder still accepts it.
		b := bytes.Clone(cp.Note)
		i := bytes.LastIndexByte(b[:len(b)-1], '=')
		if i < 0 {
			t.Skip("signature has no padding")
		}
		last := i - 1
		alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
		b[last] = alphabet[strings.IndexByte(alphabet, b[last])|1]
		return b
	}()
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"other key", func() []byte {
			s2, _ := testSigner(t, "other")
			c, _ := signCheckpoint(s2, 7, Hash{9}, Hash{8})
			return c.Note
		}(), ErrBadSignature},
		{"changed size", bytes.Replace(cp.Note, []byte("\n7\n"), []byte("\n8\n"), 1), ErrBadSignature},
		{"unsigned", []byte(testOrigin + "\n7\n" + root64 + "\n" + kept), ErrMalformed},
		{"signature line twice", append(bytes.Clone(cp.Note), sigLine...), ErrMalformed},
		{"non-canonical signature base64", nonCanonicalSig, ErrMalformed},
		{"too large", append(bytes.Repeat([]byte("a"), MaxCheckpointSize), cp.Note...), ErrMalformed},
		{"no kept line", sign(testOrigin + "\n7\n" + root64 + "\n"), ErrMalformed},
		{"extra line", sign(testOrigin + "\n7\n" + root64 + "\n" + kept + "x\n"), ErrMalformed},
		{"size zero", sign(testOrigin + "\n0\n" + root64 + "\n" + kept), ErrMalformed},
		{"size leading zero", sign(testOrigin + "\n07\n" + root64 + "\n" + kept), ErrMalformed},
		{"size plus", sign(testOrigin + "\n+7\n" + root64 + "\n" + kept), ErrMalformed},
		{"size overflow", sign(testOrigin + "\n9223372036854775808\n" + root64 + "\n" + kept), ErrMalformed},
		{"short root", sign(testOrigin + "\n7\n" + base64.StdEncoding.EncodeToString(make([]byte, 31)) + "\n" + kept), ErrMalformed},
		{"non-canonical root", sign(testOrigin + "\n7\n" + root64[:42] + "B=\n" + kept), ErrMalformed},
		{"other origin", func() []byte {
			msg, _ := note.Sign(&note.Note{Text: "other.origin\n7\n" + root64 + "\n" + kept}, &noteSigner{name: testOrigin, hash: s.hash, key: s.key})
			return msg
		}(), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseCheckpoint(tt.msg, v); !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := ParseCheckpoint(cp.Note, otherV); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other verifier: %v", err)
	}
	// A witness cosignature is allowed, and counted.
	wskey, _, _ := note.GenerateKey(cryptorand.Reader, "witness.example")
	w, _ := note.NewSigner(wskey)
	n, _ := note.Open(cp.Note, note.VerifierList(v.nv))
	cosigned, err := note.Sign(n, w)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCheckpoint(cosigned, v)
	if err != nil || got.extraSigs != 1 {
		t.Errorf("cosigned: %v, extra=%d", err, got.extraSigs)
	}
}

func TestThinCheckpoints(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var retained []int64
	var history []int64
	size := int64(0)
	for range 20000 {
		size += 1 + rng.Int64N(300)
		history = append(history, size)
		retained = thinCheckpoints(append(retained, size))
		if len(retained) > KeepLatest+63 {
			t.Fatalf("%d checkpoints retained", len(retained))
		}
	}
	// Kept: the latest KeepLatest and the first of each bit length.
	want := map[int64]bool{}
	for _, s := range history[len(history)-KeepLatest:] {
		want[s] = true
	}
	seen := map[int]bool{}
	for _, s := range history {
		if l := bits.Len64(uint64(s)); !seen[l] {
			seen[l] = true
			want[s] = true
		}
	}
	if len(want) != len(retained) {
		t.Errorf("retained %d, want %d", len(retained), len(want))
	}
	for _, s := range retained {
		if !want[s] {
			t.Errorf("retained %d unexpectedly", s)
		}
	}
	// The policy is a fixed point.
	if again := thinCheckpoints(retained); len(again) != len(retained) {
		t.Error("thinning a thinned set dropped more")
	}
}

func TestVerifierErrors(t *testing.T) {
	pub := testKey("owner").Public().(ed25519.PublicKey)
	if _, err := NewVerifier("", pub); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty origin: %v", err)
	}
	if _, err := NewVerifier(testOrigin, pub[:10]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short key: %v", err)
	}
	v, err := NewVerifier(testOrigin, pub)
	if err != nil {
		t.Fatal(err)
	}
	if v.Origin() != testOrigin || !v.PublicKey().Equal(pub) || !strings.HasPrefix(v.VerifierKey(), testOrigin+"+") {
		t.Error("accessors")
	}
	if _, err := ParseCheckpoint([]byte("x"), nil); err == nil {
		t.Error("nil verifier accepted")
	}
}
