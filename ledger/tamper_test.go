package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/bbolt"
)

// smallLedger builds the ledger the tamper tests attack: 11 entries in 7
// transactions, checkpoints at 1, 3, 4, 7, 8, 9, 11 of which 7 is thinned
// away (keepLatest is lowered to 3), and the verified marker set. It
// returns every checkpoint created.
func smallLedger(t *testing.T, sealed bool) (*bbolt.DB, *Log, []*Checkpoint) {
	t.Helper()
	old := keepLatest
	keepLatest = 3
	t.Cleanup(func() { keepLatest = old })
	db := openTestDB(t)
	lg := newTestLog(t, sealed)
	cps := buildLog(t, db, lg, []int{1, 2, 1, 3, 1, 1, 2})
	err := db.Update(func(tx *bbolt.Tx) error {
		rep, err := lg.Verify(tx, true)
		if err == nil && !rep.Marked {
			err = errors.New("marker not set")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return db, lg, cps
}

func wantVerifyError(t *testing.T, err error, what string, index int64) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v, want a *VerifyError", err)
	}
	if !errors.Is(err, ErrTampered) {
		t.Errorf("error %v does not match ErrTampered", err)
	}
	if ve.What != what || (index != -2 && ve.Index != index) {
		t.Errorf("error = %q, want what=%q index=%d", err, what, index)
	}
}

// TestTamperCases covers, one by one, the tampering the issue names.
func TestTamperCases(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			db, lg, cps := smallLedger(t, sealed)
			mustVerify(t, db, lg, true)
			entries := func(tx *bbolt.Tx) *bbolt.Bucket { return ledgerBucket(tx, bucketEntries) }

			t.Run("changed entry", func(t *testing.T) {
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					v := bytes.Clone(entries(tx).Get(key(4)))
					v[len(v)-3] ^= 0x10
					return entries(tx).Put(key(4), v)
				})
				wantVerifyError(t, err, "entry", 4)
			})
			t.Run("deleted entry", func(t *testing.T) {
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error { return entries(tx).Delete(key(6)) })
				wantVerifyError(t, err, "entry", 6)
			})
			t.Run("inserted entry", func(t *testing.T) {
				// Shift entries 5.. up by one and insert a copy of entry 2
				// at 5, with hashes: as if an entry had been slipped in.
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					e, h := entries(tx), ledgerBucket(tx, bucketHashes)
					for i := int64(10); i >= 5; i-- {
						if err := e.Put(key(i+1), bytes.Clone(e.Get(key(i)))); err != nil {
							return err
						}
					}
					if err := h.Put(key(11), bytes.Clone(h.Get(key(10)))); err != nil {
						return err
					}
					return e.Put(key(5), bytes.Clone(e.Get(key(2))))
				})
				wantVerifyError(t, err, "entry", 5)
			})
			t.Run("inserted entry at end", func(t *testing.T) {
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					return entries(tx).Put(key(11), bytes.Clone(entries(tx).Get(key(10))))
				})
				wantVerifyError(t, err, "tail", 12)
			})
			t.Run("swapped entries", func(t *testing.T) {
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					a, b := bytes.Clone(entries(tx).Get(key(2))), bytes.Clone(entries(tx).Get(key(3)))
					if err := entries(tx).Put(key(2), b); err != nil {
						return err
					}
					return entries(tx).Put(key(3), a)
				})
				wantVerifyError(t, err, "entry", 2)
			})
			t.Run("truncated tail", func(t *testing.T) {
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					for i := int64(9); i < 11; i++ {
						if err := entries(tx).Delete(key(i)); err != nil {
							return err
						}
						if err := ledgerBucket(tx, bucketHashes).Delete(key(i)); err != nil {
							return err
						}
					}
					return nil
				})
				wantVerifyError(t, err, "tail", 9)
			})
			t.Run("truncated tail and its checkpoint", func(t *testing.T) {
				// Remove the last transaction entirely; the marker and the
				// retained set still show it.
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					for i := int64(9); i < 11; i++ {
						entries(tx).Delete(key(i))
						ledgerBucket(tx, bucketHashes).Delete(key(i))
					}
					return ledgerBucket(tx, bucketCheckpoints).Delete(key(11))
				})
				if !errors.Is(err, ErrTampered) {
					t.Fatalf("error = %v", err)
				}
			})
			t.Run("checkpoint signed by another key", func(t *testing.T) {
				evil := newTestLogKey(t, sealed, "mallory")
				forged, err := signCheckpoint(evil.signer, cps[len(cps)-1].Size, cps[len(cps)-1].Root, cps[len(cps)-1].kept)
				if err != nil {
					t.Fatal(err)
				}
				err = verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					return ledgerBucket(tx, bucketCheckpoints).Put(key(11), forged.Note)
				})
				wantVerifyError(t, err, "checkpoint", 11)
				if !errors.Is(err, ErrBadSignature) {
					t.Errorf("error %v does not match ErrBadSignature", err)
				}
			})
			t.Run("changed stored tree hash", func(t *testing.T) {
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					h := ledgerBucket(tx, bucketHashes)
					v := bytes.Clone(h.Get(key(7))) // entry 7 closes subtrees of levels 1..3
					v[2*HashSize] ^= 1              // level 2
					return h.Put(key(7), v)
				})
				wantVerifyError(t, err, "stored hash", 7)
			})
			t.Run("re-inserted thinned checkpoint", func(t *testing.T) {
				var thinned *Checkpoint
				for _, c := range cps {
					if c.Size == 7 {
						thinned = c
					}
				}
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					return ledgerBucket(tx, bucketCheckpoints).Put(key(7), thinned.Note)
				})
				wantVerifyError(t, err, "checkpoint set", 11)
			})
			t.Run("deleted retained checkpoint", func(t *testing.T) {
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					return ledgerBucket(tx, bucketCheckpoints).Delete(key(4))
				})
				wantVerifyError(t, err, "checkpoint set", 11)
			})
			t.Run("unsigned tail", func(t *testing.T) {
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error {
					_, err := lg.Append(tx, sampleEntry(99))
					return err
				})
				wantVerifyError(t, err, "tail", 12)
			})
			t.Run("ledger bucket deleted", func(t *testing.T) {
				err := verifyWith(t, db, lg, true, func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketLedger) })
				wantVerifyError(t, err, "bucket", -1)
			})
		})
	}
}

func newTestLogKey(t *testing.T, sealed bool, name string) *Log {
	cfg := Config{Origin: testOrigin, Signer: testKey(name)}
	if sealed {
		cfg.AEAD = testAEAD(t)
	}
	lg, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return lg
}

// item is one key of the ledger: a value, or a nested bucket (value nil).
type item struct {
	path []string // bucket names from the top level down to the holder
	key  []byte
	val  []byte
}

func (it item) String() string { return fmt.Sprintf("%v/%x", it.path, it.key) }

func snapshot(t *testing.T, db *bbolt.DB) []item {
	var items []item
	var walk func(path []string, b *bbolt.Bucket)
	walk = func(path []string, b *bbolt.Bucket) {
		b.ForEach(func(k, v []byte) error {
			items = append(items, item{path: path, key: bytes.Clone(k), val: bytes.Clone(v)})
			if v == nil {
				walk(append(path[:len(path):len(path)], string(k)), b.Bucket(k))
			}
			return nil
		})
	}
	err := db.View(func(tx *bbolt.Tx) error {
		items = append(items, item{key: bucketLedger})
		walk([]string{string(bucketLedger)}, tx.Bucket(bucketLedger))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// holder returns the bucket that holds it, or nil for a top-level key.
func holder(tx *bbolt.Tx, it item) *bbolt.Bucket {
	var b *bbolt.Bucket
	for i, name := range it.path {
		if i == 0 {
			b = tx.Bucket([]byte(name))
		} else {
			b = b.Bucket([]byte(name))
		}
	}
	return b
}

func deleteItem(tx *bbolt.Tx, it item) error {
	b := holder(tx, it)
	switch {
	case b == nil:
		return tx.DeleteBucket(it.key)
	case it.val == nil:
		return b.DeleteBucket(it.key)
	default:
		return b.Delete(it.key)
	}
}

// renameItem moves the key it to newKey (copying nested buckets).
func renameItem(tx *bbolt.Tx, it item, newKey []byte) error {
	b := holder(tx, it)
	if it.val != nil {
		if err := b.Delete(it.key); err != nil {
			return err
		}
		return b.Put(newKey, it.val)
	}
	var src *bbolt.Bucket
	var dst *bbolt.Bucket
	var err error
	if b == nil {
		src = tx.Bucket(it.key)
		dst, err = tx.CreateBucket(newKey)
	} else {
		src = b.Bucket(it.key)
		dst, err = b.CreateBucket(newKey)
	}
	if err != nil {
		return err
	}
	if err := copyBucket(dst, src); err != nil {
		return err
	}
	return deleteItem(tx, it)
}

func copyBucket(dst, src *bbolt.Bucket) error {
	return src.ForEach(func(k, v []byte) error {
		if v != nil {
			return dst.Put(bytes.Clone(k), bytes.Clone(v))
		}
		d, err := dst.CreateBucket(bytes.Clone(k))
		if err != nil {
			return err
		}
		return copyBucket(d, src.Bucket(k))
	})
}

// TestTamperExhaustive flips every bit of every value and of every key,
// deletes every key, swaps every pair of values and inserts keys in every
// bucket of a small ledger, and checks that full verification fails each
// time with a *VerifyError.
func TestTamperExhaustive(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			if sealed && testing.Short() {
				t.Skip("plaintext variant covers -short")
			}
			db, lg, cps := smallLedger(t, sealed)
			items := snapshot(t, db)
			counts := map[string]int{}
			whats := map[string]int{}
			check := func(kind string, it item, mutate func(tx *bbolt.Tx) error) {
				t.Helper()
				counts[kind]++
				err := verifyWith(t, db, lg, true, mutate)
				var ve *VerifyError
				if !errors.As(err, &ve) || !errors.Is(err, ErrTampered) {
					t.Fatalf("%s of %v: verify error = %v, want *VerifyError", kind, it, err)
				}
				whats[ve.What]++
			}

			for _, it := range items {
				// Flip every bit of every value.
				for bit := range 8 * len(it.val) {
					check("value bit flip", it, func(tx *bbolt.Tx) error {
						v := bytes.Clone(it.val)
						v[bit/8] ^= 1 << (bit % 8)
						return holder(tx, it).Put(it.key, v)
					})
				}
				// Delete every key (values and buckets).
				check("delete", it, func(tx *bbolt.Tx) error { return deleteItem(tx, it) })
				// Flip every bit of every key.
				for bit := range 8 * len(it.key) {
					check("key bit flip", it, func(tx *bbolt.Tx) error {
						k := bytes.Clone(it.key)
						k[bit/8] ^= 1 << (bit % 8)
						return renameItem(tx, it, k)
					})
				}
			}
			// Swap every pair of distinct values.
			for i, a := range items {
				for _, b := range items[i+1:] {
					if a.val == nil || b.val == nil || bytes.Equal(a.val, b.val) {
						continue
					}
					check("swap", a, func(tx *bbolt.Tx) error {
						if err := holder(tx, a).Put(a.key, b.val); err != nil {
							return err
						}
						return holder(tx, b).Put(b.key, a.val)
					})
				}
			}
			// Insert a key into every bucket.
			var thinned *Checkpoint
			for _, c := range cps {
				if c.Size == 7 {
					thinned = c
				}
			}
			inserts := []struct {
				bucket []byte
				key    []byte
				val    []byte
			}{
				{nil, []byte("extra"), []byte("x")},
				{bucketMeta, []byte("extra"), []byte("x")},
				{bucketEntries, key(11), items[len(items)-1].val},
				{bucketEntries, append(key(3), 0), []byte("x")},
				{bucketEntries, []byte{}, []byte("x")},
				{bucketHashes, key(11), make([]byte, HashSize*3)},
				{bucketHashes, append(key(0), 0), make([]byte, HashSize)},
				{bucketCheckpoints, key(7), thinned.Note},
				{bucketCheckpoints, key(5), thinned.Note},
				{bucketCheckpoints, append(key(1), 0), thinned.Note},
			}
			for _, in := range inserts {
				check("insert", item{path: []string{string(in.bucket)}, key: in.key}, func(tx *bbolt.Tx) error {
					b := tx.Bucket(bucketLedger)
					if in.bucket != nil {
						b = b.Bucket(in.bucket)
					}
					if len(in.key) == 0 {
						_, err := b.CreateBucket([]byte("nested"))
						return err
					}
					return b.Put(in.key, in.val)
				})
			}
			t.Logf("%d keys; mutations: %v; failures by check: %v", len(items), counts, whats)
		})
	}
}
