package ledger

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

func FuzzEntry(f *testing.F) {
	for i := range 4 {
		b, _ := sampleEntry(i).MarshalBinary()
		f.Add(b)
	}
	for _, te := range vecTestEntries() {
		b, _ := te.e.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Entry
		err := e.UnmarshalBinary(data)
		if cerr := checkEntry(data); (cerr == nil) != (err == nil) {
			t.Fatalf("checkEntry and UnmarshalBinary disagree: %v vs %v", cerr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		out, err := e.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("non-canonical input accepted:\n in %x\nout %x", data, out)
		}
	})
}

func FuzzLeaf(f *testing.F) {
	lf := &Leaf{Entry: *sampleEntry(1)}
	b, _ := lf.MarshalBinary()
	f.Add(b)
	f.Add(make([]byte, SaltSize))
	f.Fuzz(func(t *testing.T, data []byte) {
		var l Leaf
		if err := l.UnmarshalBinary(data); err != nil {
			return
		}
		out, err := l.MarshalBinary()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("leaf round trip: %v", err)
		}
		if h, _ := l.Hash(); h != leafHash(data) {
			t.Fatal("leaf hash differs")
		}
	})
}

func FuzzCheckpoint(f *testing.F) {
	s, v := testSigner(f, "owner")
	for _, size := range []int64{1, 7, 1 << 40} {
		cp, err := signCheckpoint(s, size, Hash{byte(size)}, keptHash([]int64{1}))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(cp.Note)
	}
	f.Add([]byte(testOrigin + "\n1\n\n— x y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cp, err := ParseCheckpoint(data, v)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		// Anything accepted was signed by us: it must be what we sign.
		want := checkpointText(cp.Origin, cp.Size, cp.Root, cp.kept)
		if !bytes.HasPrefix(data, []byte(want+"\n")) || cp.Size < 1 {
			t.Fatalf("accepted checkpoint with unexpected text %q", data)
		}
	})
}

func FuzzProof(f *testing.F) {
	m := &memTree{}
	for i := range int64(20) {
		m.add(f, i, leafN(i))
	}
	p, _ := m.proveRecord(20, 5)
	b, _ := p.MarshalBinary()
	f.Add(b, int64(5), int64(20), int64(13))
	f.Add([]byte{}, int64(0), int64(1), int64(1))
	f.Fuzz(func(t *testing.T, data []byte, index, size, old int64) {
		var p Proof
		if err := p.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
			return
		}
		out, _ := p.MarshalBinary()
		if !bytes.Equal(out, data) {
			t.Fatal("proof round trip differs")
		}
		if size < 1 || size > 20 {
			size = 1 + (size&0x7fffffff)%20
		}
		c := &Checkpoint{Origin: testOrigin, Size: size, Root: m.root(t, size)}
		if index >= 0 && index < size {
			err := VerifyInclusion(c, index, leafN(index), p)
			if honest, _ := m.proveRecord(size, index); err == nil && !equalProofs(honest, p) {
				t.Fatalf("inclusion accepted a proof other than the honest one")
			}
		} else if err := VerifyInclusion(c, index, Hash{}, p); err == nil {
			t.Fatal("out-of-range index accepted")
		}
		if old >= 1 && old <= size {
			o := &Checkpoint{Origin: testOrigin, Size: old, Root: m.root(t, old)}
			_ = VerifyConsistency(o, c, p)
			// The fork runner never panics and never "proves" a fork of
			// an honest pair.
			if or, nr, err := runForkProof(p, 0, size, old); err == nil && nr == c.Root && or != o.Root && old < size {
				t.Fatal("fork proven between consistent checkpoints")
			}
			// Nor does CheckExtends, whatever the proof (frame U).
			if errors.Is(CheckExtends(o, c, p), ErrFork) {
				t.Fatal("CheckExtends proved a fork between consistent checkpoints")
			}
		}
	})
}

func (m *memTree) proveRecord(n, i int64) (Proof, error) {
	p, err := tlog.ProveRecord(n, i, m)
	return proofFrom(p), err
}

func equalProofs(a, b Proof) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzForkEvidence(f *testing.F) {
	s, v := testSigner(f, "owner")
	a, _ := signCheckpoint(s, 4, Hash{1}, Hash{})
	b, _ := signCheckpoint(s, 4, Hash{2}, Hash{})
	c, _ := signCheckpoint(s, 9, Hash{3}, Hash{})
	for _, ev := range []*ForkEvidence{{A: a.Note, B: b.Note}, {A: a.Note, B: c.Note, Proof: Proof{{1}, {2}, {3}}}} {
		enc, _ := ev.MarshalBinary()
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev ForkEvidence
		if err := ev.UnmarshalBinary(data); err != nil {
			return
		}
		out, err := ev.MarshalBinary()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("fork evidence round trip: %v", err)
		}
		_ = ev.Check(v) // must not panic
	})
}
