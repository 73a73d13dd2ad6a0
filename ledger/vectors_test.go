package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var updateVectors = flag.Bool("update", false, "rewrite testdata/vectors.json")

const vectorsFile = "testdata/vectors.json"

type vecEntry struct {
	Name         string   `json:"name"`
	TimeUnixNano int64    `json:"time_unix_nano"`
	Actor        string   `json:"actor_hex"`
	Action       string   `json:"action"`
	Subjects     []string `json:"subjects_hex"`
	Grant        string   `json:"grant_hex"`
	Purpose      string   `json:"purpose"`
	Outcome      string   `json:"outcome"`
	Reason       string   `json:"reason"`
	Commit       string   `json:"commit_hex"`
	Request      string   `json:"request_hex"`
	Encoding     string   `json:"encoding_hex"`
}

type vecInvalid struct {
	Name string `json:"name"`
	Hex  string `json:"hex"`
}

type vecProof struct {
	Index int64  `json:"index,omitempty"`
	Old   int64  `json:"old,omitempty"`
	Size  int64  `json:"size"`
	Proof string `json:"proof_hex"`
}

type vectors struct {
	Comment        string       `json:"comment"`
	Entries        []vecEntry   `json:"entries"`
	InvalidEntries []vecInvalid `json:"invalid_entries"`
	Leaf           struct {
		Salt     string `json:"salt_hex"`
		Entry    string `json:"entry_hex"`
		LeafHash string `json:"leaf_hash_hex"`
	} `json:"leaf"`
	Sealed struct {
		AEAD      string `json:"aead"`
		Key       string `json:"key_hex"`
		Nonce     string `json:"nonce_hex"`
		Index     int64  `json:"index"`
		AD        string `json:"additional_data_hex"`
		Plaintext string `json:"plaintext_hex"`
		Blob      string `json:"stored_value_hex"`
	} `json:"sealed"`
	Tree struct {
		Leaves      []string   `json:"leaf_hashes_hex"`
		Roots       []string   `json:"roots_hex_by_size"`
		Inclusion   []vecProof `json:"inclusion"`
		Consistency []vecProof `json:"consistency"`
	} `json:"tree"`
	Checkpoint struct {
		Seed        string  `json:"ed25519_seed_hex"`
		Origin      string  `json:"origin"`
		VerifierKey string  `json:"verifier_key"`
		Size        int64   `json:"size"`
		KeptSizes   []int64 `json:"kept_sizes"`
		KeptHash    string  `json:"kept_hash_hex"`
		Note        string  `json:"note"`
	} `json:"checkpoint"`
	Fork struct {
		OtherRootNote string `json:"other_note"`
		Evidence      string `json:"evidence_hex"`
	} `json:"fork"`
}

func vecTestEntries() []struct {
	name string
	e    *Entry
} {
	return []struct {
		name string
		e    *Entry
	}{
		{"owner add", &Entry{
			Time: time.Unix(0, 1741964966535897932).UTC(), Actor: []byte("\x00\x24\x08\x01\x12\x20owner"),
			Action: ActionAdd, Subjects: [][]byte{bytes.Repeat([]byte{0x11}, 16)}, Outcome: OutcomeOK,
			Commit: sha256.Sum256([]byte("record ciphertext and metadata")),
		}},
		{"provider served under a grant", &Entry{
			Time: time.Unix(0, 1741965000000000000).UTC(), Actor: []byte("\x00\x24\x08\x01\x12\x20doctor"),
			Action: ActionServe, Subjects: [][]byte{bytes.Repeat([]byte{0x11}, 16), bytes.Repeat([]byte{0x22}, 16)},
			Grant: bytes.Repeat([]byte{0x33}, 32), Purpose: "TREAT", Outcome: OutcomeOK, Request: []byte("signed request bytes"),
		}},
		{"denied", &Entry{
			Time: time.Unix(0, 1741965060000000001).UTC(), Actor: []byte("\x00\x24\x08\x01\x12\x20doctor"),
			Action: ActionServe, Grant: bytes.Repeat([]byte{0x33}, 32), Purpose: "TREAT",
			Outcome: OutcomeDenied, Reason: "expired",
		}},
		{"minimal before 1970", &Entry{Time: time.Unix(0, -1).UTC(), Action: ActionInit, Outcome: OutcomeOK}},
	}
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

func makeVectors(t *testing.T) *vectors {
	v := &vectors{Comment: "Known-answer vectors for ledger/FORMAT.md. Regenerate with: go test ./ledger -run TestVectors -update (and review the diff)."}
	var encs [][]byte
	for _, te := range vecTestEntries() {
		e := te.e
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		encs = append(encs, b)
		ve := vecEntry{Name: te.name, TimeUnixNano: e.Time.UnixNano(), Actor: hexs(e.Actor), Action: e.Action.String(),
			Subjects: []string{}, Grant: hexs(e.Grant), Purpose: e.Purpose, Outcome: e.Outcome.String(), Reason: e.Reason,
			Commit: hexs(e.Commit[:]), Request: hexs(e.Request), Encoding: hexs(b)}
		for _, s := range e.Subjects {
			ve.Subjects = append(ve.Subjects, hexs(s))
		}
		v.Entries = append(v.Entries, ve)
	}
	minimal := encs[3]
	v.InvalidEntries = []vecInvalid{
		{"version 2", "02" + hexs(minimal[1:])},
		{"action 0", hexs(minimal[:9]) + "00" + hexs(minimal[10:])},
		{"trailing byte", hexs(minimal) + "00"},
		{"truncated", hexs(minimal[:len(minimal)-1])},
		{"grant of 1 byte", hexs(minimal[:14]) + "0101" + hexs(minimal[15:])},
	}

	salt := sha256.Sum256([]byte("vector salt"))
	plain := append(salt[:], encs[1]...)
	lh := leafHashOf(plain)
	v.Leaf.Salt, v.Leaf.Entry, v.Leaf.LeafHash = hexs(salt[:]), hexs(encs[1]), hexs(lh[:])

	key := sha256.Sum256([]byte("vector aead key"))
	aead, _ := chacha20poly1305.NewX(key[:])
	nonce := sha256.Sum256([]byte("vector nonce"))
	var adb [len(entryDomain) + 8]byte
	v.Sealed.AEAD, v.Sealed.Key, v.Sealed.Nonce, v.Sealed.Index = "XChaCha20-Poly1305", hexs(key[:]), hexs(nonce[:24]), 5
	v.Sealed.AD = hexs(entryAD(&adb, 5))
	v.Sealed.Plaintext, v.Sealed.Blob = hexs(plain), hexs(seal(aead, 5, plain, nonce[:24]))

	m := &memTree{}
	var leaves []Hash
	for i := range 7 {
		s := sha256.Sum256([]byte{byte(i)})
		h := leafHashOf(append(s[:], encs[i%len(encs)]...))
		leaves = append(leaves, h)
		m.add(t, int64(i), h)
		v.Tree.Leaves = append(v.Tree.Leaves, hexs(h[:]))
	}
	for n := int64(1); n <= 7; n++ {
		r := m.root(t, n)
		v.Tree.Roots = append(v.Tree.Roots, hexs(r[:]))
	}
	for _, pr := range [][2]int64{{0, 1}, {2, 7}, {6, 7}, {4, 5}} {
		p, _ := tlog.ProveRecord(pr[1], pr[0], m)
		b, _ := proofFrom(p).MarshalBinary()
		v.Tree.Inclusion = append(v.Tree.Inclusion, vecProof{Index: pr[0], Size: pr[1], Proof: hexs(b)})
	}
	for _, pr := range [][2]int64{{1, 7}, {3, 7}, {4, 7}, {6, 7}, {7, 7}} {
		p, _ := tlog.ProveTree(pr[1], pr[0], m)
		b, _ := proofFrom(p).MarshalBinary()
		v.Tree.Consistency = append(v.Tree.Consistency, vecProof{Old: pr[0], Size: pr[1], Proof: hexs(b)})
	}

	seed := sha256.Sum256([]byte("vector signing key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	lg, err := New(Config{Origin: "medvault.ledger/example", Signer: priv})
	if err != nil {
		t.Fatal(err)
	}
	kept := []int64{1, 3, 4}
	cp, err := signCheckpoint(lg.signer, 7, m.root(t, 7), keptHash(kept))
	if err != nil {
		t.Fatal(err)
	}
	kh := keptHash(kept)
	v.Checkpoint.Seed, v.Checkpoint.Origin, v.Checkpoint.VerifierKey = hexs(seed[:]), lg.origin, lg.verifier.VerifierKey()
	v.Checkpoint.Size, v.Checkpoint.KeptSizes, v.Checkpoint.KeptHash, v.Checkpoint.Note = 7, kept, hexs(kh[:]), string(cp.Note)

	other, err := signCheckpoint(lg.signer, 7, leaves[0], keptHash(kept))
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := (&ForkEvidence{A: cp.Note, B: other.Note}).MarshalBinary()
	v.Fork.OtherRootNote, v.Fork.Evidence = string(other.Note), hexs(ev)
	return v
}

// leafHashOf computes the leaf hash from the layout in FORMAT.md, spelled
// out independently of the package's constants.
func leafHashOf(saltAndEntry []byte) Hash {
	return sha256.Sum256(append([]byte("\x00medvault/ledger/leaf/v1"), saltAndEntry...))
}

// rfc6962Root computes MTH(D[0:n]) by the recursive definition of RFC 6962.
func rfc6962Root(leaves []Hash) Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := rfc6962Root(leaves[:k]), rfc6962Root(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

func TestVectors(t *testing.T) {
	got := makeVectors(t)
	js, err := json.MarshalIndent(got, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	js = append(js, '\n')
	if *updateVectors {
		if err := os.MkdirAll(filepath.Dir(vectorsFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsFile, js, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readFile(t, vectorsFile)
	if !bytes.Equal(js, want) {
		t.Fatalf("%s is out of date with the code (or the format changed): run with -update and review the diff", vectorsFile)
	}
	var v vectors
	if err := json.Unmarshal(want, &v); err != nil {
		t.Fatal(err)
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Entries decode from the file and re-encode to the same bytes.
	for _, ve := range v.Entries {
		var e Entry
		if err := e.UnmarshalBinary(unhex(ve.Encoding)); err != nil {
			t.Errorf("%s: %v", ve.Name, err)
			continue
		}
		if e.Time.UnixNano() != ve.TimeUnixNano || e.Action.String() != ve.Action || e.Outcome.String() != ve.Outcome ||
			e.Purpose != ve.Purpose || e.Reason != ve.Reason || hexs(e.Actor) != ve.Actor || hexs(e.Grant) != ve.Grant ||
			hexs(e.Commit[:]) != ve.Commit || hexs(e.Request) != ve.Request || len(e.Subjects) != len(ve.Subjects) {
			t.Errorf("%s: decoded fields differ from the vector", ve.Name)
		}
	}
	for _, vi := range v.InvalidEntries {
		var e Entry
		if err := e.UnmarshalBinary(unhex(vi.Hex)); err == nil {
			t.Errorf("invalid entry %q decoded", vi.Name)
		}
	}
	// Leaf hash by the documented layout.
	var lf Leaf
	if err := lf.UnmarshalBinary(append(unhex(v.Leaf.Salt), unhex(v.Leaf.Entry)...)); err != nil {
		t.Fatal(err)
	}
	if h, _ := lf.Hash(); hexs(h[:]) != v.Leaf.LeafHash {
		t.Error("leaf hash differs from the vector")
	}
	// Sealed value opens with the standard AEAD and the documented AD.
	aead, _ := chacha20poly1305.NewX(unhex(v.Sealed.Key))
	blob := unhex(v.Sealed.Blob)
	ad := append([]byte("medvault/ledger/entry/v1"), 0, 0, 0, 0, 0, 0, 0, byte(v.Sealed.Index))
	if hexs(ad) != v.Sealed.AD {
		t.Error("additional data differs from the documented layout")
	}
	pt, err := aead.Open(nil, blob[:24], blob[24:], ad)
	if err != nil || hexs(pt) != v.Sealed.Plaintext {
		t.Errorf("sealed vector does not open: %v", err)
	}
	// Roots by the RFC 6962 definition; proofs verify.
	var leaves []Hash
	for _, s := range v.Tree.Leaves {
		leaves = append(leaves, Hash(unhex(s)))
	}
	roots := map[int64]Hash{}
	for n := 1; n <= len(leaves); n++ {
		r := rfc6962Root(leaves[:n])
		roots[int64(n)] = r
		if hexs(r[:]) != v.Tree.Roots[n-1] {
			t.Errorf("root of size %d differs from RFC 6962", n)
		}
	}
	for _, p := range v.Tree.Inclusion {
		var pr Proof
		if err := pr.UnmarshalBinary(unhex(p.Proof)); err != nil {
			t.Fatal(err)
		}
		if err := VerifyInclusion(&Checkpoint{Size: p.Size, Root: roots[p.Size]}, p.Index, leaves[p.Index], pr); err != nil {
			t.Errorf("inclusion vector %d in %d: %v", p.Index, p.Size, err)
		}
	}
	for _, p := range v.Tree.Consistency {
		var pr Proof
		if err := pr.UnmarshalBinary(unhex(p.Proof)); err != nil {
			t.Fatal(err)
		}
		if err := VerifyConsistency(&Checkpoint{Size: p.Old, Root: roots[p.Old]}, &Checkpoint{Size: p.Size, Root: roots[p.Size]}, pr); err != nil {
			t.Errorf("consistency vector %d -> %d: %v", p.Old, p.Size, err)
		}
	}
	// The checkpoint note verifies with the note package and the
	// published verifier key, and has the documented text.
	nv, err := note.NewVerifier(v.Checkpoint.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(v.Checkpoint.Note), note.VerifierList(nv))
	if err != nil {
		t.Fatal(err)
	}
	kh := sha256.Sum256([]byte("medvault/ledger/kept/v1\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x04"))
	root7 := roots[7]
	wantText := v.Checkpoint.Origin + "\n7\n" + base64.StdEncoding.EncodeToString(root7[:]) + "\n" +
		"medvault/ledger/kept/v1 " + base64.StdEncoding.EncodeToString(kh[:]) + "\n"
	if n.Text != wantText || hexs(kh[:]) != v.Checkpoint.KeptHash {
		t.Errorf("checkpoint text:\n%s\nwant:\n%s", n.Text, wantText)
	}
	pub := ed25519.NewKeyFromSeed(unhex(v.Checkpoint.Seed)).Public().(ed25519.PublicKey)
	ver, err := NewVerifier(v.Checkpoint.Origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	if ver.VerifierKey() != v.Checkpoint.VerifierKey {
		t.Error("verifier key differs")
	}
	var ev ForkEvidence
	if err := ev.UnmarshalBinary(unhex(v.Fork.Evidence)); err != nil {
		t.Fatal(err)
	}
	if err := ev.Check(ver); err != nil {
		t.Errorf("fork vector: %v", err)
	}
}

// TestFormatDocExamples checks that the examples printed in FORMAT.md are
// the vectors.
func TestFormatDocExamples(t *testing.T) {
	doc := string(readFile(t, "FORMAT.md"))
	v := makeVectors(t)
	block := func(after string) string {
		i := strings.Index(doc, after)
		if i < 0 {
			t.Fatalf("FORMAT.md lacks %q", after)
		}
		rest := doc[i:]
		start := strings.Index(rest, "```\n") + 4
		end := strings.Index(rest[start:], "```")
		return rest[start : start+end]
	}
	entryHex := strings.Join(strings.Fields(block(`Example (vector "denied"`)), "")
	if entryHex != v.Entries[2].Encoding {
		t.Errorf("FORMAT.md entry example differs from the vector:\n%s\n%s", entryHex, v.Entries[2].Encoding)
	}
	if note := block("Example (vector; Ed25519 seed"); note != v.Checkpoint.Note {
		t.Errorf("FORMAT.md checkpoint example differs from the vector:\n%s\n%s", note, v.Checkpoint.Note)
	}
}
