package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/bbolt"
)

// forkedLogs builds two ledgers with the same key and origin that share
// the first `common` entries and then diverge: a key holder showing two
// histories. It returns both logs' checkpoints.
func forkedLogs(t *testing.T, common int, a, b []int) (*bbolt.DB, *Log, []*Checkpoint, []*Checkpoint) {
	t.Helper()
	dbA, dbB := openTestDB(t), openTestDB(t)
	lg := newTestLog(t, false)
	cpsA := buildLog(t, dbA, lg, append([]int{common}, a...))
	// Same first entries (same salts are not needed: the trees differ
	// from the first diverging entry either way); build B by copying A's
	// first `common` entries, then appending different ones.
	err := dbB.Update(func(tx *bbolt.Tx) error {
		if err := lg.Init(tx); err != nil {
			return err
		}
		return dbA.View(func(txA *bbolt.Tx) error {
			for i := range common {
				for _, name := range [][]byte{bucketEntries, bucketHashes} {
					v := ledgerBucket(txA, name).Get(key(int64(i)))
					if err := ledgerBucket(tx, name).Put(key(int64(i)), bytes.Clone(v)); err != nil {
						return err
					}
				}
			}
			_, err := lg.Checkpoint(tx)
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	var cpsB []*Checkpoint
	for i, k := range b {
		err := dbB.Update(func(tx *bbolt.Tx) error {
			for j := range k {
				e := sampleEntry(1000 + 10*i + j) // differs from A's
				if _, err := lg.Append(tx, e); err != nil {
					return err
				}
			}
			cp, err := lg.Checkpoint(tx)
			cpsB = append(cpsB, cp)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dbA, lg, cpsA, cpsB
}

func TestForkEvidence(t *testing.T) {
	tests := []struct {
		name   string
		common int
		a, b   []int
	}{
		{"same size", 3, []int{2}, []int{2}},
		{"foreign smaller, power of two", 3, []int{6}, []int{1}},
		{"foreign smaller, not power of two", 3, []int{9}, []int{2}},
		{"diverge at first", 1, []int{5}, []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dbA, lg, _, cpsB := forkedLogs(t, tt.common, tt.a, tt.b)
			foreign := cpsB[len(cpsB)-1]
			var ev *ForkEvidence
			err := dbA.View(func(tx *bbolt.Tx) (err error) {
				ev, err = lg.ProveFork(tx, foreign.Note)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := ev.Check(lg.Verifier()); err != nil {
				t.Fatalf("Check: %v", err)
			}
			b, err := ev.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var ev2 ForkEvidence
			if err := ev2.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if err := ev2.Check(lg.Verifier()); err != nil {
				t.Errorf("decoded evidence: %v", err)
			}
			b2, _ := ev2.MarshalBinary()
			if !bytes.Equal(b, b2) {
				t.Error("re-encoding differs")
			}
			// Another key's verifier rejects it.
			if err := ev.Check(newTestLogKey(t, false, "other").Verifier()); !errors.Is(err, ErrBadSignature) {
				t.Errorf("other key: %v", err)
			}
			// A tampered proof does not prove a fork.
			if len(ev.Proof) > 0 {
				bad := *ev
				bad.Proof = append(Proof(nil), ev.Proof...)
				bad.Proof[len(bad.Proof)-1][0] ^= 1
				if err := bad.Check(lg.Verifier()); !errors.Is(err, ErrBadProof) {
					t.Errorf("tampered proof: %v", err)
				}
			}
		})
	}
}

func TestForkEvidenceNotAFork(t *testing.T) {
	db := openTestDB(t)
	lg := newTestLog(t, false)
	cps := buildLog(t, db, lg, []int{1, 2, 3, 4})
	err := db.View(func(tx *bbolt.Tx) error {
		for _, c := range cps {
			if _, err := lg.ProveFork(tx, c.Note); !errors.Is(err, ErrBadProof) {
				t.Errorf("own checkpoint %d: %v", c.Size, err)
			}
		}
		// Consistent pairs, with honest full-form proofs, are not forks.
		for i, a := range cps {
			for _, b := range cps[i+1:] {
				p, err := lg.ConsistencyProof(tx, a.Size, b.Size)
				if err != nil {
					return err
				}
				if isPow2(a.Size) {
					p = append(Proof{a.Root}, p...)
				}
				ev := &ForkEvidence{A: a.Note, B: b.Note, Proof: p}
				if err := ev.Check(lg.Verifier()); !errors.Is(err, ErrBadProof) {
					t.Errorf("%d, %d: %v", a.Size, b.Size, err)
				}
				rev := &ForkEvidence{A: b.Note, B: a.Note, Proof: p}
				if err := rev.Check(lg.Verifier()); !errors.Is(err, ErrMalformed) {
					t.Errorf("reversed %d, %d: %v", a.Size, b.Size, err)
				}
			}
		}
		same := &ForkEvidence{A: cps[0].Note, B: cps[0].Note}
		if err := same.Check(lg.Verifier()); !errors.Is(err, ErrBadProof) {
			t.Errorf("identical checkpoints: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestProveForkAhead(t *testing.T) {
	dbA, lg, _, cpsB := forkedLogs(t, 2, []int{1}, []int{5})
	err := dbA.View(func(tx *bbolt.Tx) error {
		_, err := lg.ProveFork(tx, cpsB[len(cpsB)-1].Note)
		return err
	})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.What != "tail" || !errors.Is(err, ErrTampered) {
		t.Errorf("foreign checkpoint ahead: %v", err)
	}
}

func TestForkEvidenceDecodeRejects(t *testing.T) {
	good, _ := (&ForkEvidence{A: []byte("a"), B: []byte("bb"), Proof: Proof{{1}}}).MarshalBinary()
	tests := [][]byte{
		nil,
		{2},
		good[:len(good)-1],
		append(bytes.Clone(good), 0),
		func() []byte { b := bytes.Clone(good); b[1] = 0xff; return b }(),
		func() []byte { b := bytes.Clone(good); b[len(b)-33] = 2; return b }(),
	}
	for i, b := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var ev ForkEvidence
			if err := ev.UnmarshalBinary(b); !errors.Is(err, ErrMalformed) {
				t.Errorf("error = %v", err)
			}
		})
	}
}

// A peer holding an older checkpoint learns, from ExtensionProof and
// CheckExtends, that the log still extends it; or gets checkable evidence
// that it does not; and a proof that shows neither is refused.
func TestCheckExtends(t *testing.T) {
	db := openTestDB(t)
	lg := newTestLog(t, false)
	cps := buildLog(t, db, lg, []int{1, 1, 2, 4, 1, 7, 16})
	err := db.View(func(tx *bbolt.Tx) error {
		for i, a := range cps {
			for _, b := range cps[i:] {
				p, err := lg.ExtensionProof(tx, a.Size, b.Size)
				if err != nil {
					return err
				}
				if err := CheckExtends(a, b, p); err != nil {
					t.Errorf("%d -> %d: %v", a.Size, b.Size, err)
				}
				if len(p) > 0 {
					bad := append(Proof(nil), p...)
					bad[len(bad)-1][3] ^= 1
					if err := CheckExtends(a, b, bad); !errors.Is(err, ErrBadProof) {
						t.Errorf("%d -> %d, tampered proof: %v", a.Size, b.Size, err)
					}
					if err := CheckExtends(a, b, p[:len(p)-1]); !errors.Is(err, ErrBadProof) {
						t.Errorf("%d -> %d, short proof: %v", a.Size, b.Size, err)
					}
				}
				if a.Size < b.Size {
					if err := CheckExtends(b, a, p); !errors.Is(err, ErrMalformed) {
						t.Errorf("%d -> %d reversed: %v", a.Size, b.Size, err)
					}
				}
			}
		}
		if _, err := lg.ExtensionProof(tx, 0, 1); !errors.Is(err, ErrNotFound) {
			t.Errorf("from size 0: %v", err)
		}
		if _, err := lg.ExtensionProof(tx, 1, cps[len(cps)-1].Size+1); !errors.Is(err, ErrNotFound) {
			t.Errorf("past the log: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name   string
		common int
		a, b   []int
	}{
		{"same size", 3, []int{2}, []int{2}},
		{"older is a power of two", 2, []int{9}, []int{2}},
		{"older is not", 3, []int{9}, []int{2}},
		{"diverge at first", 1, []int{5}, []int{2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// B's log, seen first (older); A's, a rewritten history,
			// proves its extension in its own tree.
			dbA, lg, cpsA, cpsB := forkedLogs(t, tt.common, tt.a, tt.b)
			seen, now := cpsB[len(cpsB)-1], cpsA[len(cpsA)-1]
			var p Proof
			err := dbA.View(func(tx *bbolt.Tx) (err error) {
				p, err = lg.ExtensionProof(tx, seen.Size, now.Size)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			err = CheckExtends(seen, now, p)
			var fe *ForkError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFork) {
				t.Fatalf("a rewritten log: %v", err)
			}
			if err := fe.Evidence.Check(lg.Verifier()); err != nil {
				t.Fatalf("the evidence does not check: %v", err)
			}
		})
	}
}
