package ledger

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestNewConfig(t *testing.T) {
	key := testKey("owner")
	pub := key.Public().(ed25519.PublicKey)
	other := testKey("other").Public().(ed25519.PublicKey)
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"signer", Config{Origin: testOrigin, Signer: key}, true},
		{"signer and matching public", Config{Origin: testOrigin, Signer: key, Public: pub}, true},
		{"public only", Config{Origin: testOrigin, Public: pub}, true},
		{"mismatched public", Config{Origin: testOrigin, Signer: key, Public: other}, false},
		{"no key", Config{Origin: testOrigin}, false},
		{"short public", Config{Origin: testOrigin, Public: pub[:31]}, false},
		{"empty origin", Config{Signer: key}, false},
		{"origin with space", Config{Origin: "a b", Signer: key}, false},
		{"origin with plus", Config{Origin: "a+b", Signer: key}, false},
		{"origin with newline", Config{Origin: "a\nb", Signer: key}, false},
		{"origin too long", Config{Origin: string(bytes.Repeat([]byte("o"), MaxOriginLen+1)), Signer: key}, false},
		{"sealed", Config{Origin: testOrigin, Signer: key, AEAD: testAEAD(t)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Errorf("New error = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestAppendReadBack(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			db := openTestDB(t)
			lg := newTestLog(t, sealed)
			const n = 37
			var want []*Entry
			err := db.Update(func(tx *bbolt.Tx) error {
				if err := lg.Init(tx); err != nil {
					return err
				}
				if err := lg.Init(tx); err != nil { // idempotent
					return err
				}
				for i := range n {
					e := sampleEntry(i)
					if i%5 == 0 {
						e.Time = time.Time{} // stamped by Now
					}
					before := *e
					idx, err := lg.Append(tx, e)
					if err != nil {
						return err
					}
					if idx != int64(i) {
						t.Errorf("Append returned %d, want %d", idx, i)
					}
					if !entriesEqual(e, &before) {
						t.Error("Append modified its argument")
					}
					want = append(want, e)
				}
				_, err := lg.Checkpoint(tx)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			err = db.View(func(tx *bbolt.Tx) error {
				size, err := lg.Size(tx)
				if err != nil || size != n {
					t.Fatalf("Size = %d, %v", size, err)
				}
				for i := range n {
					e, err := lg.Entry(tx, int64(i))
					if err != nil {
						return err
					}
					w := *want[i]
					if w.Time.IsZero() {
						if e.Time.Before(testEpoch) || e.Time.Location() != time.UTC {
							t.Errorf("entry %d: stamped time %v", i, e.Time)
						}
						w.Time = e.Time
					}
					if !entriesEqual(e, &w) {
						t.Errorf("entry %d differs", i)
					}
				}
				var seen []int64
				if err := lg.Scan(tx, 30, func(i int64, e *Entry) error {
					seen = append(seen, i)
					return nil
				}); err != nil {
					return err
				}
				if len(seen) != n-30 || seen[0] != 30 {
					t.Errorf("Scan from 30 saw %v", seen)
				}
				stop := errors.New("stop")
				if err := lg.Scan(tx, 0, func(int64, *Entry) error { return stop }); !errors.Is(err, stop) {
					t.Errorf("Scan did not return fn's error: %v", err)
				}
				if _, err := lg.Entry(tx, n); !errors.Is(err, ErrNotFound) {
					t.Errorf("Entry(n) error = %v", err)
				}
				if _, err := lg.Entry(tx, -1); !errors.Is(err, ErrNotFound) {
					t.Errorf("Entry(-1) error = %v", err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			rep := mustVerify(t, db, lg, true)
			if rep.Size != n || rep.From != 0 || rep.To != n || !rep.Full || rep.Latest.Size != n {
				t.Errorf("report %+v", rep)
			}
		})
	}
}

func TestSealedFileHidesEntries(t *testing.T) {
	db := openTestDB(t)
	lg := newTestLog(t, true)
	e := sampleEntry(1)
	e.Purpose = "SECRETPURPOSE"
	e.Reason = "secret-reason-code"
	e.Actor = []byte("actor-who-must-not-show")
	err := db.Update(func(tx *bbolt.Tx) error {
		if err := lg.Init(tx); err != nil {
			return err
		}
		if _, err := lg.Append(tx, e); err != nil {
			return err
		}
		_, err := lg.Checkpoint(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	path := db.Path()
	db.Close()
	raw := readFile(t, path)
	for _, s := range [][]byte{[]byte("SECRETPURPOSE"), []byte("secret-reason-code"), []byte("actor-who-must-not-show"), e.Subjects[0], e.Grant, e.Request} {
		if bytes.Contains(raw, s) {
			t.Errorf("database file contains %q in the clear", s)
		}
	}
}

func TestFormatMismatch(t *testing.T) {
	db := openTestDB(t)
	buildLog(t, db, newTestLog(t, true), []int{2})
	plain := newTestLog(t, false)
	err := db.View(func(tx *bbolt.Tx) error {
		_, err := plain.Size(tx)
		return err
	})
	if !errors.Is(err, ErrTampered) {
		t.Errorf("opening a sealed ledger without AEAD: %v", err)
	}
	err = db.Update(func(tx *bbolt.Tx) error { return plain.Init(tx) })
	if !errors.Is(err, ErrTampered) {
		t.Errorf("Init of a sealed ledger without AEAD: %v", err)
	}
}

func TestNotInitialised(t *testing.T) {
	db := openTestDB(t)
	lg := newTestLog(t, false)
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := lg.Append(tx, sampleEntry(0))
		return err
	})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Append before Init: %v", err)
	}
}

func TestCheckpointPolicy(t *testing.T) {
	db := openTestDB(t)
	lg := newTestLog(t, false)
	err := db.Update(func(tx *bbolt.Tx) error {
		if err := lg.Init(tx); err != nil {
			return err
		}
		if _, err := lg.Checkpoint(tx); !errors.Is(err, ErrNotFound) {
			t.Errorf("Checkpoint of empty log: %v", err)
		}
		if _, err := lg.Latest(tx); !errors.Is(err, ErrNotFound) {
			t.Errorf("Latest of empty log: %v", err)
		}
		if _, err := lg.Append(tx, sampleEntry(0)); err != nil {
			return err
		}
		c1, err := lg.Checkpoint(tx)
		if err != nil {
			return err
		}
		c2, err := lg.Checkpoint(tx) // nothing new: same checkpoint
		if err != nil {
			return err
		}
		if !bytes.Equal(c1.Note, c2.Note) {
			t.Error("second Checkpoint without appends signed a new checkpoint")
		}
		latest, err := lg.Latest(tx)
		if err != nil || !bytes.Equal(latest.Note, c1.Note) {
			t.Errorf("Latest = %v, %v", latest, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A read-only Log verifies but cannot sign.
	ro, err := New(Config{Origin: testOrigin, Public: testKey("owner").Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, db, ro, true)
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := ro.Append(tx, sampleEntry(1)); err != nil {
			return err
		}
		_, err := ro.Checkpoint(tx)
		return err
	})
	if err == nil {
		t.Error("read-only Log signed a checkpoint")
	}
}

func TestThinningInLog(t *testing.T) {
	old := keepLatest
	keepLatest = 3
	defer func() { keepLatest = old }()
	db := openTestDB(t)
	lg := newTestLog(t, false)
	txs := make([]int, 40)
	for i := range txs {
		txs[i] = 1 + i%3
	}
	all := buildLog(t, db, lg, txs)
	var sizes []int64
	err := db.View(func(tx *bbolt.Tx) error {
		b, err := lg.open(tx)
		if err != nil {
			return err
		}
		sizes, err = b.checkpointSizes()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var allSizes []int64
	for _, c := range all {
		allSizes = append(allSizes, c.Size)
	}
	if want := thinCheckpoints(allSizes); fmt.Sprint(want) != fmt.Sprint(sizes) {
		t.Errorf("kept %v, want %v", sizes, want)
	}
	mustVerify(t, db, lg, true)
}

func TestProofsFromLog(t *testing.T) {
	db := openTestDB(t)
	lg := newTestLog(t, true)
	cps := buildLog(t, db, lg, []int{1, 2, 5, 9, 16, 3})
	err := db.View(func(tx *bbolt.Tx) error {
		for _, c := range cps {
			cp, err := ParseCheckpoint(c.Note, lg.Verifier())
			if err != nil {
				return err
			}
			for i := int64(0); i < cp.Size; i++ {
				lf, err := lg.Leaf(tx, i)
				if err != nil {
					return err
				}
				h, err := lf.Hash()
				if err != nil {
					return err
				}
				p, err := lg.InclusionProof(tx, i, cp.Size)
				if err != nil {
					return err
				}
				if err := VerifyInclusion(cp, i, h, p); err != nil {
					t.Errorf("inclusion of %d in %d: %v", i, cp.Size, err)
				}
				if err := VerifyInclusion(cp, (i+1)%cp.Size, h, p); cp.Size > 1 && !errors.Is(err, ErrBadProof) {
					t.Errorf("inclusion at the wrong index accepted: %v", err)
				}
			}
		}
		for i, a := range cps {
			for _, b := range cps[i:] {
				p, err := lg.ConsistencyProof(tx, a.Size, b.Size)
				if err != nil {
					return err
				}
				if err := VerifyConsistency(a, b, p); err != nil {
					t.Errorf("consistency %d -> %d: %v", a.Size, b.Size, err)
				}
			}
		}
		if _, err := lg.InclusionProof(tx, 5, 5); !errors.Is(err, ErrNotFound) {
			t.Errorf("InclusionProof(5, 5) error = %v", err)
		}
		if _, err := lg.InclusionProof(tx, 0, 1000); !errors.Is(err, ErrNotFound) {
			t.Errorf("InclusionProof beyond size error = %v", err)
		}
		if _, err := lg.ConsistencyProof(tx, 0, 3); !errors.Is(err, ErrNotFound) {
			t.Errorf("ConsistencyProof(0, 3) error = %v", err)
		}
		if _, err := lg.ConsistencyProof(tx, 4, 3); !errors.Is(err, ErrNotFound) {
			t.Errorf("ConsistencyProof(4, 3) error = %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestIncrementalVerify(t *testing.T) {
	db := openTestDB(t)
	lg := newTestLog(t, false)
	buildLog(t, db, lg, []int{3, 4, 5})
	// Set the marker.
	var rep *Report
	err := db.Update(func(tx *bbolt.Tx) (err error) {
		rep, err = lg.Verify(tx, false)
		return err
	})
	if err != nil || !rep.Full || !rep.Marked || rep.To != 12 {
		t.Fatalf("first verify: %+v, %v", rep, err)
	}
	buildLog(t, db, lg, []int{2, 7})
	rep = mustVerify(t, db, lg, false)
	if rep.Full || rep.From != 12 || rep.To != 21 || rep.Marked {
		t.Errorf("incremental report %+v", rep)
	}

	corrupt := func(i int64) func(tx *bbolt.Tx) error {
		return func(tx *bbolt.Tx) error {
			b := ledgerBucket(tx, bucketEntries)
			v := bytes.Clone(b.Get(key(i)))
			v[len(v)-1] ^= 1
			return b.Put(key(i), v)
		}
	}
	// A change to a new entry is seen incrementally.
	if err := verifyWith(t, db, lg, false, corrupt(15)); !errors.Is(err, ErrTampered) {
		t.Errorf("incremental verify missed a change to a new entry: %v", err)
	}
	// A change to an old entry needs full mode.
	if err := verifyWith(t, db, lg, false, corrupt(5)); err != nil {
		t.Errorf("incremental verify unexpectedly re-checked old entry: %v", err)
	}
	err = verifyWith(t, db, lg, true, corrupt(5))
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.What != "entry" || ve.Index != 5 {
		t.Errorf("full verify: %v", err)
	}
	// Changing an old frontier hash is seen incrementally.
	err = verifyWith(t, db, lg, false, func(tx *bbolt.Tx) error {
		b := ledgerBucket(tx, bucketHashes)
		v := bytes.Clone(b.Get(key(7)))
		v[len(v)-1] ^= 1
		return b.Put(key(7), v)
	})
	if !errors.Is(err, ErrTampered) {
		t.Errorf("incremental verify missed a frontier hash change: %v", err)
	}
}

// TestVerifyLarge crosses several verification chunks, with incremental
// starts that are and are not chunk-aligned.
func TestVerifyLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a ledger of 3 chunks")
	}
	db := openTestDB(t)
	lg := newTestLog(t, true)
	buildLog(t, db, lg, []int{chunkSize + 5})
	err := db.Update(func(tx *bbolt.Tx) error { _, err := lg.Verify(tx, true); return err })
	if err != nil {
		t.Fatal(err)
	}
	buildLog(t, db, lg, []int{2*chunkSize - 5 + 17})
	if rep := mustVerify(t, db, lg, false); rep.From != chunkSize+5 || rep.To != 3*chunkSize+17 {
		t.Errorf("report %+v", rep)
	}
	mustVerify(t, db, lg, true)
	for _, i := range []int64{0, chunkSize - 1, chunkSize, 2*chunkSize - 1, 3*chunkSize + 16} {
		err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
			b := ledgerBucket(tx, bucketHashes)
			v := bytes.Clone(b.Get(key(i)))
			v[len(v)-1] ^= 0x80
			return b.Put(key(i), v)
		})
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.What != "stored hash" || ve.Index != i {
			t.Errorf("hash of %d changed: %v", i, err)
		}
	}
}
