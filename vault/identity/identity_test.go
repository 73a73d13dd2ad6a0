package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// Known answer: the peer ID of the Ed25519 key with seed 32 zero bytes,
// as libp2p computes it (cross-checked in package p2p against
// peer.IDFromPublicKey).
func TestIDKnownAnswer(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	id, err := IDFromPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	const want = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
	if id.String() != want {
		t.Fatalf("ID = %s, want %s", id, want)
	}
	if got := hex.EncodeToString(id.Bytes()[:6]); got != "002408011220" {
		t.Fatalf("multihash prefix = %s", got)
	}
	back, err := ParseID(want)
	if err != nil || back != id {
		t.Fatalf("ParseID round trip: %v", err)
	}
	if sn := id.SafetyNumber(); len(sn) != 23 || sn != id.SafetyNumber() {
		t.Fatalf("safety number %q", sn)
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, s := range []string{"", "12D3KooW", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "not base58 0OIl",
		strings.Repeat("1", 100)} {
		if _, err := ParseID(s); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseID(%q) = %v", s, err)
		}
	}
}

// FuzzParseID checks that an accepted ID has exactly one text form, the
// one String gives (surrounding space aside): IDs key contacts and kept
// checkpoints by their text.
func FuzzParseID(f *testing.F) {
	id, err := IDFromPublicKey(ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(id.String())
	f.Add(" " + id.String() + "\n")
	f.Add("1" + id.String())
	f.Add(id.String()[:len(id.String())-1])
	f.Add("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("ParseID(%q): %v is not ErrInvalidID", s, err)
			}
			return
		}
		if id.String() != strings.TrimSpace(s) {
			t.Fatalf("ParseID(%q) accepted a text other than %q", s, id.String())
		}
		if again, err := IDFromBytes(id.Bytes()); err != nil || again != id {
			t.Fatalf("binary round trip of %q: %v", s, err)
		}
	})
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "identity.age")
	id, err := Generate("Ada", Patient)
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Save(path, []byte("pw"), 10); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", st.Mode().Perm())
	}
	if err := id.Save(path, []byte("pw"), 10); !errors.Is(err, ErrExists) {
		t.Fatalf("second Save: %v", err)
	}
	got, err := Load(path, []byte("pw"), MaxWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != id.ID() || got.Name() != "Ada" || got.Role() != Patient ||
		got.Recipient().String() != id.Recipient().String() ||
		!bytes.Equal(got.SubKey("x"), id.SubKey("x")) || bytes.Equal(got.SubKey("x"), got.SubKey("y")) {
		t.Fatal("identity did not round-trip")
	}
	if _, err := Load(path, []byte("wrong"), MaxWorkFactor); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	data, _ := os.ReadFile(path)
	for _, bad := range [][]byte{data[:len(data)/2], append(bytes.Clone(data[:len(data)-1]), data[len(data)-1]^1), []byte("garbage"), nil} {
		if _, err := Decrypt(bad, []byte("pw"), MaxWorkFactor); !errors.Is(err, ErrCorrupt) {
			t.Errorf("corrupt file: %v", err)
		}
	}
}

func TestWorkFactorCap(t *testing.T) {
	id, _ := Generate("", Provider)
	path := filepath.Join(t.TempDir(), "id.age")
	if err := id.Save(path, []byte("pw"), 12); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, []byte("pw"), 11); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "work factor") {
		t.Fatalf("work factor above cap: %v", err)
	}
}

func TestNewerFormat(t *testing.T) {
	r, _ := age.NewScryptRecipient("pw")
	r.SetWorkFactor(10)
	var buf bytes.Buffer
	w, _ := age.Encrypt(&buf, r)
	w.Write([]byte(`{"v":2,"name":"x","future":true}`))
	w.Close()
	if _, err := Decrypt(buf.Bytes(), []byte("pw"), MaxWorkFactor); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("newer format: %v", err)
	}
}

func TestGenerateRejects(t *testing.T) {
	if _, err := Generate("a\x1b[31m", Patient); err == nil {
		t.Error("control characters in name accepted")
	}
	if _, err := Generate(strings.Repeat("a", 200), Patient); err == nil {
		t.Error("long name accepted")
	}
	if _, err := ParseRole("nurse"); err == nil {
		t.Error("role nurse accepted")
	}
}

func FuzzDecrypt(f *testing.F) {
	id, _ := Generate("f", Patient)
	path := filepath.Join(f.TempDir(), "id.age")
	id.Save(path, []byte("pw"), 2)
	data, _ := os.ReadFile(path)
	f.Add(data)
	f.Add([]byte("age-encryption.org/v1\n-> scrypt AAAA 30\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// It must not panic or stall, and every refusal must be one the
		// CLI maps to its exit code (11 wrong passphrase, 1 corrupt).
		_, err := Decrypt(b, []byte("pw"), 4)
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongPassphrase) && !errors.Is(err, ErrNewerFormat) {
			t.Fatalf("Decrypt: %v is none of ErrCorrupt, ErrWrongPassphrase, ErrNewerFormat", err)
		}
	})
}

// TestSaveAtomic: Save leaves only the finished file, cleans up what a
// killed Save left (an old temporary file), keeps a recent one (a Save in
// progress), and never replaces an existing identity, even one created by
// another process between its check and its link.
func TestSaveAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "identity.age")
	id, err := Generate("Ada", Patient)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, tmpPrefix+"killed"+tmpSuffix)
	fresh := filepath.Join(dir, tmpPrefix+"running"+tmpSuffix)
	for _, f := range []string{stale, fresh} {
		if err := os.WriteFile(f, []byte("half an identity"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleAfter)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if err := id.Save(path, []byte("pw"), 10); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		es, _ := os.ReadDir(dir)
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	if got, want := names(), []string{tmpPrefix + "running" + tmpSuffix, "identity.age"}; !slices.Equal(got, want) {
		t.Fatalf("after Save the directory holds %q, want %q", got, want)
	}
	os.Remove(fresh)
	before, _ := os.ReadFile(path)
	other, _ := Generate("Eve", Patient)
	if err := other.Save(path, []byte("pw2"), 10); !errors.Is(err, ErrExists) {
		t.Fatalf("Save over an existing identity: %v", err)
	}
	// An identity created by another process after writeNew's check:
	// the link still refuses to replace it.
	pending := filepath.Join(dir, tmpPrefix+"pending"+tmpSuffix)
	if err := os.WriteFile(pending, []byte("ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := linkOrRename(pending, path); !errors.Is(err, ErrExists) {
		t.Fatalf("link over an identity created meanwhile: %v", err)
	}
	os.Remove(pending)
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the existing identity changed")
	}
	if got, want := names(), []string{"identity.age"}; !slices.Equal(got, want) {
		t.Fatalf("after refused Saves the directory holds %q, want %q", got, want)
	}
}
