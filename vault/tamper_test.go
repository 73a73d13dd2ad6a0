package vault

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/record"
)

const tinyBundle = `{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","id":"p1","name":[{"family":"Doe","given":["Jo"]}]}},
{"fullUrl":"urn:uuid:2","resource":{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"370143000","display":"Major depressive disorder"}]}}},
{"fullUrl":"urn:uuid:3","resource":{"resourceType":"Observation","id":"o1","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}]},"subject":{"reference":"Patient/p1"}}}]}`

// tamperFixture builds a small vault that has seen every kind of change.
func tamperFixture(t *testing.T) *Vault {
	v := newTestVault(t)
	a, _ := v.Add(strings.NewReader("lab result"), NewRecord{Category: record.Labs, Title: "A1c"})
	b, _ := v.Add(newRandReader(chunkSize+100), NewRecord{Category: record.Imaging, Title: "MRI"})
	c, _ := v.Add(strings.NewReader("to delete"), NewRecord{Category: record.Notes})
	if _, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); err != nil {
		t.Fatal(err)
	}
	v.SetLabels(a.ID, []record.Label{record.GDIS}, nil)
	v.Get(b.ID, &bytes.Buffer{})
	if err := v.Remove(c.ID); err != nil {
		t.Fatal(err)
	}
	// A served request, whose nonce the vault remembers.
	grant, nonce := [32]byte{0xab}, [16]byte{1, 2, 3}
	if _, err := v.Admit(func(st *AdmitState) (Decision, error) {
		return Decision{Event: Event{Action: ledger.ActionServe, Grant: grant[:], Request: []byte("signed request")},
			Grant: grant, Nonce: &nonce}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("clean vault fails verify: %v %v", err, rep.Problems)
	}
	return v
}

type mutation struct {
	name  string
	apply func(tx *bbolt.Tx) error
	undo  func(tx *bbolt.Tx) error
}

// TestTamperEveryValue flips a bit in every value, deletes every key and
// swaps values of the vault's own buckets (the ledger's buckets have the
// same test in package ledger) and checks that Open or a full Verify fails
// with ErrTampered or another refusal, naming the problem.
func TestTamperEveryValue(t *testing.T) {
	v := tamperFixture(t)
	dir, id := v.dir, v.id
	v.Close()
	path := filepath.Join(dir, DBFile)
	var muts []mutation
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bbolt.Tx) error {
		for _, bn := range [][]byte{bucketMeta, bucketRecords, bucketChunks, bucketIndex, bucketNonces} {
			var prevKey, prevVal []byte
			tx.Bucket(bn).ForEach(func(k, val []byte) error {
				k, val = bytes.Clone(k), bytes.Clone(val)
				put := func(v []byte) func(tx *bbolt.Tx) error {
					return func(tx *bbolt.Tx) error { return tx.Bucket(bn).Put(k, v) }
				}
				for _, off := range []int{0, len(val) / 2, len(val) - 1} {
					if off < 0 {
						continue
					}
					flipped := bytes.Clone(val)
					flipped[off] ^= 0x10
					muts = append(muts, mutation{fmt.Sprintf("flip %s/%x@%d", bn, k[:min(len(k), 6)], off), put(flipped), put(val)})
				}
				muts = append(muts, mutation{fmt.Sprintf("delete %s/%x", bn, k[:min(len(k), 6)]),
					func(tx *bbolt.Tx) error { return tx.Bucket(bn).Delete(k) }, put(val)})
				if prevKey != nil && !bytes.Equal(prevVal, val) {
					pk, pv := prevKey, prevVal
					muts = append(muts, mutation{fmt.Sprintf("swap %s/%x,%x", bn, pk[:min(len(pk), 6)], k[:min(len(k), 6)]),
						func(tx *bbolt.Tx) error {
							if err := tx.Bucket(bn).Put(pk, val); err != nil {
								return err
							}
							return tx.Bucket(bn).Put(k, pv)
						},
						func(tx *bbolt.Tx) error {
							if err := tx.Bucket(bn).Put(pk, pv); err != nil {
								return err
							}
							return tx.Bucket(bn).Put(k, val)
						}})
				}
				prevKey, prevVal = k, val
				return nil
			})
		}
		return nil
	})
	db.Close()
	if len(muts) < 40 {
		t.Fatalf("only %d mutations: fixture too small", len(muts))
	}
	for _, m := range muts {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(m.apply); err != nil {
			t.Fatal(err)
		}
		db.Close()
		nv, err := Open(dir, id, Options{})
		if err == nil {
			var rep *VerifyReport
			rep, err = nv.Verify(true)
			if err != nil && len(rep.Problems) == 0 {
				t.Errorf("%s: verify failed without naming a problem: %v", m.name, err)
			}
			nv.Close()
		}
		if err == nil {
			t.Errorf("%s: not detected", m.name)
		} else if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrWrongOwner) && !errors.Is(err, ErrNewerFormat) {
			t.Errorf("%s: detected with an unexpected error: %v", m.name, err)
		}
		db, _ = bbolt.Open(path, 0o600, nil)
		if err := db.Update(m.undo); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	nv, err := Open(dir, id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer nv.Close()
	if rep, err := nv.Verify(true); err != nil {
		t.Fatalf("after undoing every mutation: %v %v", err, rep.Problems)
	}
	t.Logf("%d mutations, all detected", len(muts))
}

// An inserted chunk, an inserted record and a forged pending mark are
// detected or harmless.
func TestTamperInsertions(t *testing.T) {
	v := tamperFixture(t)
	ms, _ := v.List(Filter{})
	victim := ms[0].ID
	stranger := record.NewID()
	for _, tc := range []struct {
		name string
		put  func(tx *bbolt.Tx) error
	}{
		{"stray chunk", func(tx *bbolt.Tx) error { return tx.Bucket(bucketChunks).Put(chunkKey(stranger, 0), []byte("x")) }},
		{"extra chunk", func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketChunks).Put(chunkKey(victim, 99), []byte("x"))
		}},
		{"copied record", func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketRecords).Put(stranger[:], bytes.Clone(tx.Bucket(bucketRecords).Get(victim[:])))
		}},
	} {
		v.db.Update(tc.put)
		if rep, err := v.Verify(true); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: verify = %v (%v)", tc.name, err, rep.Problems)
		}
		v.db.Update(func(tx *bbolt.Tx) error {
			tx.Bucket(bucketChunks).Delete(chunkKey(stranger, 0))
			tx.Bucket(bucketChunks).Delete(chunkKey(victim, 99))
			return tx.Bucket(bucketRecords).Delete(stranger[:])
		})
	}
	// A forged pending mark on a stored record must not delete it.
	v.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketPending).Put(victim[:], []byte("x")) })
	v.Close()
	reopen(t, v)
	if _, err := v.Get(victim, &bytes.Buffer{}); err != nil {
		t.Fatalf("record with a forged pending mark: %v", err)
	}
}

// Copying the latest signed checkpoint into the verified marker (no key
// needed) used to make an incremental verify skip every entry and record.
// The marker is now authenticated: a forged one makes that verify check
// everything, so a chunk changed after the last verify is still found.
func TestForgedMarkerDoesNotHideDamage(t *testing.T) {
	v := tamperFixture(t)
	m, err := v.Add(strings.NewReader("added after the last verify"), NewRecord{Category: record.Notes})
	if err != nil {
		t.Fatal(err)
	}
	err = v.db.Update(func(tx *bbolt.Tx) error {
		k, c := chunkKey(m.ID, 0), tx.Bucket(bucketChunks)
		val := bytes.Clone(c.Get(k))
		val[len(val)-1] ^= 1
		if err := c.Put(k, val); err != nil {
			return err
		}
		return forgeMarker(tx)
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := v.Verify(false)
	if !errors.Is(err, ErrTampered) {
		t.Fatalf("incremental verify with a forged marker: %v (checked entries %d..%d)", err, rep.Ledger.From, rep.Ledger.To)
	}
}

// A stored contact, received grant or receipt that was changed is found.
func TestVerifyChecksEveryObject(t *testing.T) {
	for _, kind := range []Kind{KindContact, KindInbox, KindReceipt} {
		v := newTestVault(t)
		var ev *Event
		if isKept(kind) {
			ev = &Event{Action: ledger.ActionKeep}
		}
		if err := v.PutObject(kind, "key", []byte("value"), ev); err != nil {
			t.Fatal(err)
		}
		if rep, err := v.Verify(true); err != nil {
			t.Fatalf("%s: clean verify: %v %v", kind, err, rep.Problems)
		}
		err := v.db.Update(func(tx *bbolt.Tx) error {
			b, _ := objectBucket(tx, kind)
			k, val := b.Cursor().First()
			val = bytes.Clone(val)
			val[len(val)-1] ^= 1
			return b.Put(bytes.Clone(k), val)
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(true); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: verify after changing one: %v", kind, err)
		}
	}
}

// An incremental verify whose marker does not authenticate checks the
// whole vault, not only the whole ledger: a stray chunk is found.
func TestIgnoredMarkerChecksEverything(t *testing.T) {
	v := tamperFixture(t)
	err := v.db.Update(func(tx *bbolt.Tx) error {
		stray := record.NewID()
		if err := tx.Bucket(bucketChunks).Put(chunkKey(stray, 0), []byte("inserted")); err != nil {
			return err
		}
		return forgeMarker(tx)
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := v.Verify(false); !errors.Is(err, ErrTampered) {
		t.Fatalf("incremental verify with an ignored marker and a stray chunk: %v %v", err, rep.Problems)
	}
}

// forgeMarker copies the latest signed checkpoint into the verified marker,
// as anyone with the file can: it claims the whole ledger verified.
func forgeMarker(tx *bbolt.Tx) error {
	lb := tx.Bucket([]byte("ledger"))
	_, latest := lb.Bucket([]byte("checkpoints")).Cursor().Last()
	return lb.Bucket([]byte("meta")).Put([]byte("verified"), bytes.Clone(latest))
}
