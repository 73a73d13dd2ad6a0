package ledger

import (
	"errors"
	"fmt"
	"math/bits"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// memTree is an in-memory tlog tree for proof tests.
type memTree struct{ hashes []tlog.Hash }

func (m *memTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memTree) add(t testing.TB, n int64, h Hash) {
	hs, err := tlog.StoredHashesForRecordHash(n, tlog.Hash(h), m)
	if err != nil {
		t.Fatal(err)
	}
	m.hashes = append(m.hashes, hs...)
}

func (m *memTree) root(t testing.TB, n int64) Hash {
	h, err := tlog.TreeHash(n, m)
	if err != nil {
		t.Fatal(err)
	}
	return Hash(h)
}

func leafN(i int64) Hash { return leafHash([]byte(fmt.Sprint("leaf", i))) }

func ceilLog2(n int64) int {
	if n <= 1 {
		return 0
	}
	return bits.Len64(uint64(n - 1))
}

func TestProofsExhaustiveSmall(t *testing.T) {
	const max = 70
	m := &memTree{}
	for i := int64(0); i < max; i++ {
		m.add(t, i, leafN(i))
	}
	cp := func(n int64) *Checkpoint { return &Checkpoint{Origin: testOrigin, Size: n, Root: m.root(t, n)} }
	for n := int64(1); n <= max; n++ {
		c := cp(n)
		for i := int64(0); i < n; i++ {
			p, err := tlog.ProveRecord(n, i, m)
			if err != nil {
				t.Fatal(err)
			}
			proof := proofFrom(p)
			if len(proof) > ceilLog2(n) {
				t.Errorf("inclusion proof %d in %d: %d hashes > ⌈log2 n⌉", i, n, len(proof))
			}
			if err := VerifyInclusion(c, i, leafN(i), proof); err != nil {
				t.Errorf("inclusion %d in %d: %v", i, n, err)
			}
			if err := VerifyInclusion(c, i, leafN(i+1), proof); !errors.Is(err, ErrBadProof) {
				t.Errorf("wrong leaf accepted: %v", err)
			}
			if len(proof) > 0 {
				bad := append(Proof(nil), proof...)
				bad[0][0] ^= 1
				if err := VerifyInclusion(c, i, leafN(i), bad); !errors.Is(err, ErrBadProof) {
					t.Errorf("changed proof accepted: %v", err)
				}
			}
		}
		if err := VerifyInclusion(c, n, leafN(n), nil); !errors.Is(err, ErrBadProof) {
			t.Errorf("index past size accepted: %v", err)
		}
		for o := int64(1); o <= n; o++ {
			old := cp(o)
			p, err := tlog.ProveTree(n, o, m)
			if err != nil {
				t.Fatal(err)
			}
			proof := proofFrom(p)
			if len(proof) > ceilLog2(n)+1 {
				t.Errorf("consistency proof %d -> %d: %d hashes", o, n, len(proof))
			}
			if err := VerifyConsistency(old, c, proof); err != nil {
				t.Errorf("consistency %d -> %d: %v", o, n, err)
			}
			if o < n {
				if err := VerifyConsistency(c, old, proof); !errors.Is(err, ErrBadProof) {
					t.Errorf("reversed consistency accepted: %v", err)
				}
				wrong := &Checkpoint{Origin: testOrigin, Size: o, Root: leafN(999)}
				if err := VerifyConsistency(wrong, c, proof); !errors.Is(err, ErrBadProof) {
					t.Errorf("consistency with a wrong old root accepted: %v", err)
				}
				// Full form gives back both roots.
				full := proof
				if isPow2(o) {
					full = append(Proof{old.Root}, proof...)
				}
				or, nr, err := runForkProof(full, 0, n, o)
				if err != nil || or != old.Root || nr != c.Root {
					t.Errorf("runForkProof %d -> %d: %v", o, n, err)
				}
			}
		}
	}
	other := &Checkpoint{Origin: "other", Size: 3, Root: m.root(t, 3)}
	if err := VerifyConsistency(other, cp(4), nil); !errors.Is(err, ErrBadProof) {
		t.Errorf("different origins accepted: %v", err)
	}
}

// TestProofSizes records the proof-size budget of the issue,
// ≤ 32·⌈log2 n⌉ bytes: inclusion proofs always meet it; consistency proofs
// meet it except when the old size is not a power of two and the proof
// needs the one extra hash RFC 6962 requires (at most ⌈log2 n⌉+1 hashes).
func TestProofSizes(t *testing.T) {
	for _, tt := range []struct{ o, n int64 }{{1, 2}, {3, 4}, {5, 8}, {1000, 1 << 20}, {(1 << 20) - 1, 1 << 20}, {1 << 19, 1 << 20}} {
		idx := treeProofLen(tt.n, tt.o)
		t.Logf("consistency %d -> %d: %d hashes (⌈log2 n⌉ = %d)", tt.o, tt.n, idx, ceilLog2(tt.n))
		if idx > ceilLog2(tt.n)+1 {
			t.Errorf("consistency proof %d -> %d has %d hashes", tt.o, tt.n, idx)
		}
	}
}

// treeProofLen returns the length of the RFC 6962 consistency proof from
// size o to n without building a tree.
func treeProofLen(n, o int64) int {
	var rec func(lo, hi int64) int
	rec = func(lo, hi int64) int {
		if o == hi {
			if lo == 0 {
				return 0
			}
			return 1
		}
		k := maxPow2Below(hi - lo)
		if o <= lo+k {
			return rec(lo, lo+k) + 1
		}
		return rec(lo+k, hi) + 1
	}
	return rec(0, n)
}

func TestProofEncoding(t *testing.T) {
	p := Proof{{1}, {2}, {3}}
	b, err := p.MarshalBinary()
	if err != nil || len(b) != 96 || b[0] != 1 || b[32] != 2 {
		t.Fatalf("MarshalBinary = %x, %v", b, err)
	}
	var q Proof
	if err := q.UnmarshalBinary(b); err != nil || len(q) != 3 || q[2] != p[2] {
		t.Errorf("UnmarshalBinary = %v, %v", q, err)
	}
	for _, n := range []int{1, 31, 33, MaxProofHashes*32 + 32} {
		if err := q.UnmarshalBinary(make([]byte, n)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	if _, err := make(Proof, MaxProofHashes+1).MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Errorf("long proof marshalled: %v", err)
	}
	if err := q.UnmarshalBinary(nil); err != nil || len(q) != 0 {
		t.Errorf("empty proof: %v", err)
	}
}
