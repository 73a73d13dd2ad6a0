package vault

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
)

// Condition versions: v1 uncoded, v2 coded as an MH diagnosis.
const (
	gapCondV1 = `{"resourceType":"Condition","id":"g","clinicalStatus":{"text":"active"}}`
	gapCondV2 = `{"resourceType":"Condition","id":"g","code":{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}}`
)

func propagatedEntries(t *testing.T, v *Vault) int {
	t.Helper()
	n := 0
	v.view(func(tx *bbolt.Tx) error {
		return v.ledger.log.Scan(tx, 0, func(_ int64, e *ledger.Entry) error {
			if e.Action == ledger.ActionLabel && e.Reason == LabelPropagated {
				n++
			}
			return nil
		})
	})
	return n
}

// Labels a version gets from its own codes cover the earlier versions too:
// in one file, and across imports (a propagated label entry for v1).
func TestOwnLabelsReachEarlierVersions(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "both.ndjson", gapCondV1+"\n"+gapCondV2+"\n")
	checkAllMH(t, v, "one file", "Condition/g")
	mustVerify(t, v, "one file")

	w := newTestVault(t)
	importString(t, w, "v1.ndjson", gapCondV1+"\n")
	st := importString(t, w, "v2.ndjson", gapCondV2+"\n")
	checkAllMH(t, w, "two files", "Condition/g")
	if st.Relabelled != 1 {
		t.Errorf("two files: %d relabelled, want 1", st.Relabelled)
	}
	if n := propagatedEntries(t, w); n != 1 {
		t.Errorf("two files: %d propagated label entries, want 1", n)
	}
	mustVerify(t, w, "two files")
}

// damageMeta flips a byte of the sealed metadata of the record of
// resource key ("Type/id", version 1).
func damageMeta(t *testing.T, v *Vault, key string) {
	t.Helper()
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.FHIR.Type+"/"+m.FHIR.ID == key {
			if err := v.update(func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketRecords)
				p := bytes.Clone(b.Get(m.ID[:]))
				p[len(p)-5] ^= 1
				return b.Put(m.ID[:], p)
			}); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("%s not stored", key)
}

// A damaged earlier version stops an import that brings a new version:
// its labels, which the new version keeps, are unknown.
func TestImportNewVersionOfDamagedRecord(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "v1.ndjson", gapCondV1+"\n")
	damageMeta(t, v, "Condition/g")
	if _, err := v.Import("v2.ndjson", strings.NewReader(gapCondV2+"\n"), nil); !errors.Is(err, ErrTampered) {
		t.Fatalf("import over a damaged version: %v, want ErrTampered", err)
	}
}

// Building the reference index of an older vault stops at a damaged
// record: its references, which later imports must reach, are unknown.
func TestReferenceIndexBuildDamagedRecord(t *testing.T) {
	for _, what := range []string{"metadata", "content"} {
		v := newTestVault(t)
		importString(t, v, "Claim.ndjson", versClaim+"\n")
		v.update(func(tx *bbolt.Tx) error {
			tx.DeleteBucket(bucketRefs)
			return tx.DeleteBucket(bucketTargets)
		})
		if what == "metadata" {
			damageMeta(t, v, "Claim/cl")
		} else {
			v.update(func(tx *bbolt.Tx) error {
				c := tx.Bucket(bucketChunks).Cursor()
				k, val := c.Last()
				val = bytes.Clone(val)
				val[len(val)-1] ^= 1
				return tx.Bucket(bucketChunks).Put(bytes.Clone(k), val)
			})
		}
		if _, err := v.IndexReferences(nil); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: IndexReferences: %v, want ErrTampered", what, err)
		}
		if _, err := v.Import("Encounter.ndjson", strings.NewReader(versEncMH+"\n"), nil); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: import: %v, want ErrTampered", what, err)
		}
	}
}

// An Encounter the vault holds (from NDJSON, no fullUrl) comes again,
// unchanged, in a Bundle under urn:uuid:e2 with a Claim that references
// it only that way. The Condition that makes the Encounter MH comes in a
// later import: the Claim becomes MH too, as the Encounter's record now
// lists the fullUrl it was seen under. A kill before the Bundle's import
// became visible leaves no trace of it, and verify passes either way.
func TestUnchangedEntryFullURLLater(t *testing.T) {
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[` +
		`{"fullUrl":"urn:uuid:e2","resource":` + versEncV1Ref + `},` +
		`{"fullUrl":"urn:uuid:cl","resource":{"resourceType":"Claim","id":"cl","status":"active","item":[{"sequence":1,"encounter":[{"reference":"urn:uuid:e2"}]}]}}]}`
	for _, kill := range []bool{false, true} {
		v := newTestVault(t)
		importString(t, v, "Encounter.ndjson", versEncV1Ref+"\n")
		if kill {
			dieAt(t, "indexed", nil)
			if _, err := v.Import("bundle.json", strings.NewReader(bundle), nil); !errors.Is(err, errTestDied) {
				t.Fatalf("import: %v", err)
			}
			dir, id := v.dir, v.id
			v.Close()
			var err error
			if v, err = Open(dir, id, Options{LockTimeout: 100 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			mustVerify(t, v, "after the kill")
			ms, _ := v.List(Filter{})
			if len(ms) != 1 || len(ms[0].FHIR.FullURLs) != 0 {
				t.Fatalf("after the kill: %d records, %+v", len(ms), ms[0].FHIR)
			}
		}
		if st := importString(t, v, "bundle.json", bundle); st.Unchanged != 1 || st.Added != 1 {
			t.Fatalf("stats %+v", *st)
		}
		mustVerify(t, v, "after the bundle")
		importString(t, v, "Condition.ndjson", versCondition+"\n")
		checkAllMH(t, v, "after the Condition", "Condition/c", "Encounter/e", "Claim/cl")
		mustVerify(t, v, "after the Condition")
		// Seen again under the same fullUrl: nothing more.
		importString(t, v, "bundle.json", bundle)
		mustVerify(t, v, "again")
	}
}

// One Bundle holds the same Encounter twice, under urn:uuid:e1 and
// urn:uuid:e2, and a Claim that references urn:uuid:e2: the Claim is MH,
// and so is a Claim of a later import that references urn:uuid:e2.
func TestRepeatedEntrySecondFullURL(t *testing.T) {
	claim := func(id string) string {
		return `{"resourceType":"Claim","id":"` + id + `","status":"active","item":[{"sequence":1,"encounter":[{"reference":"urn:uuid:e2"}]}]}`
	}
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[` +
		`{"fullUrl":"urn:uuid:c","resource":` + versCondition + `},` +
		`{"fullUrl":"urn:uuid:e1","resource":` + versEncV1Ref + `},` +
		`{"fullUrl":"urn:uuid:e2","resource":` + versEncV1Ref + `},` +
		`{"fullUrl":"urn:uuid:cl","resource":` + claim("cl") + `}]}`
	v := newTestVault(t)
	if st := importString(t, v, "bundle.json", bundle); st.Added != 3 {
		t.Fatalf("stats %+v", *st)
	}
	checkAllMH(t, v, "one file", "Condition/c", "Encounter/e", "Claim/cl")
	mustVerify(t, v, "one file")
	importString(t, v, "later.json", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:cl2","resource":`+claim("cl2")+`}]}`)
	checkAllMH(t, v, "later", "Claim/cl2")
	mustVerify(t, v, "later")
}

// An export that gives the same unchanged resource a new fullUrl every
// time adds at most maxFullURLs of them to its record, each once.
func TestFullURLsBounded(t *testing.T) {
	v := newTestVault(t)
	for i := range maxFullURLs + 4 {
		importString(t, v, "again.json", fmt.Sprintf(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:e%d","resource":%s}]}`, i, versEncV1Ref))
	}
	ms, err := v.List(Filter{})
	if err != nil || len(ms) != 1 {
		t.Fatalf("%d records (%v)", len(ms), err)
	}
	if got := len(ms[0].FHIR.FullURLs); got != maxFullURLs {
		t.Fatalf("the record keeps %d other fullUrls, want %d", got, maxFullURLs)
	}
	mustVerify(t, v, "after the imports")
}
