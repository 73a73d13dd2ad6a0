package vault

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/record"
)

// refsBundle has a Claim that references an Encounter not in the file
// (by urn:uuid, and by an absolute URL, whose Type/id fallback gives a
// masked value), a Patient of the file by urn:uuid (an actor: the entry is
// kept all the same), and the same Encounter twice (a repeated key).
const refsBundle = `{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"p"}},
{"fullUrl":"urn:uuid:cl","resource":{"resourceType":"Claim","id":"cl","status":"active","patient":{"reference":"urn:uuid:p"},
 "item":[{"sequence":1,"encounter":[{"reference":"urn:uuid:e"},{"reference":"urn:uuid:e"},{"reference":"http://example.org/fhir/Encounter/e2"}]}]}}]}`

// importRefsBundle imports refsBundle into a new vault, checks that it
// verifies, and returns the vault and the Claim's record ID.
func importRefsBundle(t *testing.T) (*Vault, record.ID) {
	t.Helper()
	v := newTestVault(t)
	if _, err := v.Import("claim.json", strings.NewReader(refsBundle), nil); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, "as imported")
	ms, _ := v.List(Filter{})
	for _, m := range ms {
		if m.FHIR.Type == "Claim" {
			return v, m.ID
		}
	}
	t.Fatal("no Claim imported")
	return nil, record.ID{}
}

// refsOf returns the refs entries record id has, keys and values.
func refsOf(t *testing.T, v *Vault, id record.ID) (keys, vals [][]byte) {
	t.Helper()
	v.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRefs).ForEach(func(k, val []byte) error {
			if bytes.Equal(k[refKeyLen:], id[:]) {
				keys, vals = append(keys, bytes.Clone(k)), append(vals, bytes.Clone(val))
			}
			return nil
		})
	})
	return keys, vals
}

// Full verify rebuilds each record's reference-index entries from its
// content: an entry deleted, added or changed outside medvault is
// tampering, named by record. (Deleted entries let a later import's MH
// label miss the Claim, and a grant without MH share it.)
func TestVerifyCatchesRefIndexTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(tx *bbolt.Tx, claim record.ID, keys, vals [][]byte) error
	}{
		{"bucket emptied", func(tx *bbolt.Tx, _ record.ID, _, _ [][]byte) error {
			b := tx.Bucket(bucketRefs)
			c := b.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
			return nil
		}},
		{"entry deleted", func(tx *bbolt.Tx, _ record.ID, keys, _ [][]byte) error {
			return tx.Bucket(bucketRefs).Delete(keys[0])
		}},
		{"entry added", func(tx *bbolt.Tx, claim record.ID, _, _ [][]byte) error {
			return tx.Bucket(bucketRefs).Put(append(bytes.Repeat([]byte{7}, refKeyLen), claim[:]...), nil)
		}},
		{"entry copied from another record", func(tx *bbolt.Tx, _ record.ID, keys, vals [][]byte) error {
			// The Patient references nothing, so has no entries.
			var patient []byte
			tx.Bucket(bucketRecords).ForEach(func(k, _ []byte) error {
				if !bytes.Equal(k, keys[0][refKeyLen:]) {
					patient = bytes.Clone(k)
				}
				return nil
			})
			return tx.Bucket(bucketRefs).Put(append(bytes.Clone(keys[0][:refKeyLen]), patient...), vals[0])
		}},
		{"empty value given a ref key", func(tx *bbolt.Tx, _ record.ID, keys, vals [][]byte) error {
			for i, val := range vals {
				if len(val) == 0 {
					return tx.Bucket(bucketRefs).Put(keys[i], bytes.Repeat([]byte{1}, refKeyLen))
				}
			}
			return errors.New("no exact entry")
		}},
		{"masked value changed", func(tx *bbolt.Tx, _ record.ID, keys, vals [][]byte) error {
			for i, val := range vals {
				if len(val) == refKeyLen {
					val[0] ^= 1
					return tx.Bucket(bucketRefs).Put(keys[i], val)
				}
			}
			return errors.New("no fallback entry")
		}},
		{"masked value emptied", func(tx *bbolt.Tx, _ record.ID, keys, vals [][]byte) error {
			for i, val := range vals {
				if len(val) == refKeyLen {
					return tx.Bucket(bucketRefs).Put(keys[i], nil)
				}
			}
			return errors.New("no fallback entry")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, claim := importRefsBundle(t)
			keys, vals := refsOf(t, v, claim)
			// urn:uuid:e (once, though made twice), urn:uuid:p, and the
			// absolute URL with its fallback.
			if len(keys) != 4 {
				t.Fatalf("the Claim has %d refs entries, want 4", len(keys))
			}
			if err := v.update(func(tx *bbolt.Tx) error { return tt.tamper(tx, claim, keys, vals) }); err != nil {
				t.Fatal(err)
			}
			rep, err := v.Verify(true)
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("full verify: %v, want ErrTampered", err)
			}
			found := false
			for _, p := range rep.Problems {
				found = found || strings.Contains(p.Detail, "reference index does not match") && p.Record != (record.ID{})
			}
			if !found {
				t.Fatalf("no problem names a record whose reference index does not match: %v", rep.Problems)
			}
		})
	}
}

// A vault with the index's second build (refs2, which left out references
// resolving within their file to an actor) verifies, and has it rebuilt
// from content, complete, at its next import; the rebuilt index verifies.
func TestReferenceIndexSecondBuildReplaced(t *testing.T) {
	v, claim := importRefsBundle(t)
	keys, vals := refsOf(t, v, claim)
	err := v.update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketRefs); err != nil {
			return err
		}
		old, err := tx.CreateBucket(bucketRefsV2)
		if err != nil {
			return err
		}
		// Short of the entry refs2 left out: urn:uuid:p resolved, in
		// the file, to an actor.
		left := append(v.newRefHasher().refsKey(v.refKey("urn:uuid:p")), claim[:]...)
		for i, k := range keys {
			if bytes.Equal(k, left) {
				continue
			}
			if err := old.Put(k, vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, "with the second build's index")
	enc := `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:e","resource":{"resourceType":"Encounter","id":"e","status":"finished","reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}}]}`
	if _, err := v.Import("enc.json", strings.NewReader(enc), nil); err != nil {
		t.Fatal(err)
	}
	v.view(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketRefsV2) != nil {
			t.Error("the second build's index is still there")
		}
		return nil
	})
	if got, _ := refsOf(t, v, claim); len(got) != 4 {
		t.Errorf("the Claim has %d refs entries after the rebuild, want 4", len(got))
	}
	m, err := v.Show(claim)
	if err != nil {
		t.Fatal(err)
	}
	if !m.HasLabel(record.MH) {
		t.Errorf("the Claim's labels %v lack MH from the Encounter imported after it", m.Labels)
	}
	mustVerify(t, v, "with the index rebuilt")
}

// A clean vault of real data verifies, every Synthea bundle (patients,
// hospital, practitioners) imported one file per Import, and again after
// rm of a Patient that every resource of its file references by urn:uuid.
func TestVerifyRefIndexSynthea(t *testing.T) {
	syntheaFiles(t) // skips without the data
	files, _ := filepath.Glob(filepath.Join(sharedFHIR, "synthea-r4", "*.json"))
	v := newTestVault(t)
	for _, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Import(f, bytes.NewReader(d), nil); err != nil {
			t.Fatal(err)
		}
	}
	mustVerify(t, v, "Synthea imported")
	ms, _ := v.List(Filter{})
	for _, m := range ms {
		if m.FHIR != nil && m.FHIR.Type == "Patient" {
			if err := v.Remove(m.ID); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	mustVerify(t, v, "a Patient removed")
}

// The plaintext that full verify and the index build decrypt to read a
// record's references is wiped once they are read: verify decrypts every
// imported record, and must not leave the vault's content in freed heap
// memory.
func TestRecordContentWiped(t *testing.T) {
	v, claim := importRefsBundle(t)
	m, err := v.Show(claim)
	if err != nil {
		t.Fatal(err)
	}
	var kept []byte
	err = v.view(func(tx *bbolt.Tx) error {
		return v.withContent(tx, m, func(content []byte) error {
			if !bytes.Contains(content, []byte(`"Claim"`)) {
				t.Errorf("content %q is not the Claim", content)
			}
			kept = content[:cap(content)]
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) == 0 || bytes.ContainsFunc(kept, func(r rune) bool { return r != 0 }) {
		t.Errorf("the content buffer was not wiped: %q", kept)
	}
}

// A full verify while records are added reports no damage and does not
// crash: bbolt's page check read the freelist while commits changed it
// (pages "already freed", then a fatal concurrent map access).
func TestVerifyWhileWriting(t *testing.T) {
	v := newTestVault(t)
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := v.Add(bytes.NewReader([]byte("x")), NewRecord{Category: record.Notes}); err != nil {
				done <- err
				return
			}
		}
	}()
	// 300 verifies, or as many as 3 s allow (the race detector makes
	// each one slow); without the fix, most runs failed within 100.
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		if rep, err := v.Verify(true); err != nil {
			close(stop)
			<-done
			t.Fatalf("verify while adding: %v %v", err, rep.Problems)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
