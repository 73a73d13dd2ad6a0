package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// splitByType splits a FHIR file (a Bundle or NDJSON) into one NDJSON file
// per resource type, as a bulk-data export delivers the same data: a
// reference to a bundle entry by its fullUrl (Synthea's "urn:uuid:...")
// becomes the entry's "Type/id", the form bulk exports use. Files are
// returned in the alphabetical order of their names.
func splitByType(t *testing.T, data []byte) (names []string, files [][]byte) {
	t.Helper()
	type entry struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
	}
	var es []entry
	var b struct {
		ResourceType string  `json:"resourceType"`
		Entry        []entry `json:"entry"`
	}
	if json.Unmarshal(data, &b) == nil && b.ResourceType == "Bundle" {
		es = b.Entry
	} else {
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var r map[string]any
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatal(err)
			}
			es = append(es, entry{Resource: r})
		}
	}
	byURL := map[string]string{}
	for _, e := range es {
		if e.FullURL != "" {
			byURL[e.FullURL] = fmt.Sprintf("%s/%s", e.Resource["resourceType"], e.Resource["id"])
		}
	}
	var rewrite func(x any)
	rewrite = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for k, v := range x {
				if s, ok := v.(string); ok && k == "reference" && byURL[s] != "" {
					x[k] = byURL[s]
				} else {
					rewrite(v)
				}
			}
		case []any:
			for _, v := range x {
				rewrite(v)
			}
		}
	}
	byType := map[string]*bytes.Buffer{}
	for _, e := range es {
		rewrite(e.Resource)
		line, err := json.Marshal(e.Resource)
		if err != nil {
			t.Fatal(err)
		}
		typ := e.Resource["resourceType"].(string)
		if byType[typ] == nil {
			byType[typ] = &bytes.Buffer{}
		}
		byType[typ].Write(append(line, '\n'))
	}
	for typ := range byType {
		names = append(names, typ+".ndjson")
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, byType[strings.TrimSuffix(n, ".ndjson")].Bytes())
	}
	return names, files
}

// labelsByResource returns the labels of every record, by "Type/id".
func labelsByResource(t *testing.T, v *Vault) map[string][]record.Label {
	t.Helper()
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]record.Label{}
	for _, m := range ms {
		k := m.FHIR.Type + "/" + m.FHIR.ID
		if _, dup := out[k]; dup {
			t.Fatalf("%s imported twice", k)
		}
		out[k] = m.Labels
	}
	return out
}

func mustVerify(t *testing.T, v *Vault, what string) {
	t.Helper()
	for _, full := range []bool{false, true} {
		if rep, err := v.Verify(full); err != nil {
			t.Fatalf("%s: verify (full %v): %v %v", what, full, err, rep.Problems)
		}
	}
}

// splitImportsMatchWhole imports data whole into one vault, and split by
// resource type, one file per Import, in alphabetical and in reverse
// order into two others, and checks that every record ends with the same
// labels in all three: labels cross file boundaries both ways.
func splitImportsMatchWhole(t *testing.T, name string, data []byte) {
	t.Helper()
	whole := newTestVault(t)
	if _, err := whole.Import(name, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	want := labelsByResource(t, whole)
	names, files := splitByType(t, data)
	for _, reverse := range []bool{false, true} {
		order := make([]int, len(files))
		for i := range order {
			order[i] = i
		}
		if reverse {
			slices.Reverse(order)
		}
		v := newTestVault(t)
		relabelled := 0
		for _, i := range order {
			st, err := v.Import(names[i], bytes.NewReader(files[i]), nil)
			if err != nil {
				t.Fatal(err)
			}
			relabelled += st.Relabelled
		}
		got := labelsByResource(t, v)
		if len(got) != len(want) {
			t.Fatalf("%s: %d records split, %d whole", name, len(got), len(want))
		}
		labelled, bad := 0, 0
		for k, w := range want {
			if !slices.Equal(got[k], w) {
				if bad++; bad <= 10 {
					t.Errorf("%s (reverse %v): %s labelled %v, whole %v", name, reverse, k, got[k], w)
				}
			}
			if len(w) > 0 {
				labelled++
			}
		}
		if bad > 10 {
			t.Errorf("%s (reverse %v): and %d more", name, reverse, bad-10)
		}
		mustVerify(t, v, name)
		t.Logf("%s (reverse %v): %d files, %d records, %d labelled, %d relabelled after their import", name, reverse, len(files), len(got), labelled, relabelled)
	}
}

func TestSplitImportsMatchWholeGenerated(t *testing.T) {
	var b bytes.Buffer
	if err := fhir.Generate(&b, 20_000, 3); err != nil {
		t.Fatal(err)
	}
	splitImportsMatchWhole(t, "generated.ndjson", b.Bytes())
}

func TestSplitImportsMatchWholeSynthea(t *testing.T) {
	for _, f := range syntheaFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		splitImportsMatchWhole(t, f, data)
	}
}

// A small chain across four files: the Condition is MH by its code; the
// Encounter, Claim, EOB and MedicationRequest inherit it only through
// references, whatever the order of the files.
var chainFiles = map[string]string{
	"Claim.ndjson":                `{"resourceType":"Claim","id":"cl","status":"active","patient":{"reference":"Patient/p"},"item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}` + "\n",
	"Condition.ndjson":            `{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"370143000","display":"Major depressive disorder"}]}}` + "\n",
	"Encounter.ndjson":            `{"resourceType":"Encounter","id":"e","status":"finished","subject":{"reference":"Patient/p"},"reasonReference":[{"reference":"Condition/c"}]}` + "\n",
	"ExplanationOfBenefit.ndjson": `{"resourceType":"ExplanationOfBenefit","id":"eob","status":"active","patient":{"reference":"Patient/p"},"claim":{"reference":"Claim/cl"}}` + "\n",
	"MedicationRequest.ndjson":    `{"resourceType":"MedicationRequest","id":"rx","status":"active","intent":"order","subject":{"reference":"Patient/p"},"encounter":{"reference":"Encounter/e"},"medicationCodeableConcept":{"text":"fluoxetine"}}` + "\n",
	"Observation.ndjson":          `{"resourceType":"Observation","id":"o","status":"final","subject":{"reference":"Patient/p"},"code":{"text":"weight"}}` + "\n",
	"Patient.ndjson":              `{"resourceType":"Patient","id":"p"}` + "\n",
}

func importChain(t *testing.T, v *Vault, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := v.Import(n, strings.NewReader(chainFiles[n]), nil); err != nil {
			t.Fatal(err)
		}
	}
}

func checkChainMH(t *testing.T, v *Vault, mh ...string) {
	t.Helper()
	for k, ls := range labelsByResource(t, v) {
		if got, want := slices.Contains(ls, record.MH), slices.Contains(mh, k); got != want {
			t.Errorf("%s: MH %v, want %v", k, got, want)
		}
	}
}

// A kill at any point of an import that relabels earlier records leaves
// them as they were, and verify passes; the import done again relabels
// them, with label entries in the ledger.
func TestCrossFileLabelsKilledImport(t *testing.T) {
	for _, point := range []string{"staged", "committed", "indexed"} {
		t.Run(point, func(t *testing.T) {
			v := newTestVault(t)
			importChain(t, v, "Claim.ndjson", "ExplanationOfBenefit.ndjson", "MedicationRequest.ndjson", "Encounter.ndjson")
			dieAt(t, point, nil)
			if _, err := v.Import("Condition.ndjson", strings.NewReader(chainFiles["Condition.ndjson"]), nil); !errors.Is(err, errTestDied) {
				t.Fatalf("import: %v", err)
			}
			dir, id := v.dir, v.id
			v.Close()
			v, err := Open(dir, id, Options{LockTimeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			checkChainMH(t, v)
			mustVerify(t, v, "after the kill")
			importChain(t, v, "Condition.ndjson")
			checkChainMH(t, v, "Condition/c", "Encounter/e", "Claim/cl", "ExplanationOfBenefit/eob", "MedicationRequest/rx")
			mustVerify(t, v, "after the import")
			n := propagatedEntries(t, v)
			if n != 4 {
				t.Errorf("%d propagated label entries, want 4", n)
			}
		})
	}
}

// rm (crypto-shred) takes a record's reference-index entries with it, and
// full verify checks the index.
func TestRemoveDropsReferenceEntries(t *testing.T) {
	v := newTestVault(t)
	importChain(t, v, "Claim.ndjson", "ExplanationOfBenefit.ndjson", "MedicationRequest.ndjson")
	count := func() (n int) {
		v.view(func(tx *bbolt.Tx) error { n = tx.Bucket(bucketRefs).Stats().KeyN; return nil })
		return n
	}
	if n := count(); n != 3 {
		t.Fatalf("%d reference entries, want 3 (Patient references carry nothing)", n)
	}
	ms, _ := v.List(Filter{})
	for _, m := range ms {
		if err := v.Remove(m.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("%d reference entries left after removing every record", n)
	}
	mustVerify(t, v, "after rm")
	// An entry naming no record is reported.
	v.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRefs).Put(append(make([]byte, refKeyLen), ms[0].ID[:]...), nil)
	})
	if rep, err := v.Verify(true); !errors.Is(err, ErrTampered) || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Detail, "reference index") {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// A vault created before the reference index gets it at its next import,
// built from its records' content, and that import's labels then reach
// them.
func TestReferenceIndexBuiltForOlderVault(t *testing.T) {
	v := newTestVault(t)
	importChain(t, v, "Claim.ndjson", "MedicationRequest.ndjson", "Encounter.ndjson")
	v.update(func(tx *bbolt.Tx) error {
		tx.DeleteBucket(bucketRefs)
		return tx.DeleteBucket(bucketTargets)
	})
	mustVerify(t, v, "without the index")
	var calls [][2]int
	built, err := v.IndexReferences(func(done, total int) { calls = append(calls, [2]int{done, total}) })
	if err != nil || !built || len(calls) < 2 || calls[0] != [2]int{0, 3} || calls[len(calls)-1] != [2]int{3, 3} {
		t.Fatalf("IndexReferences: built %v, %v, progress %v", built, err, calls)
	}
	if built, err := v.IndexReferences(func(int, int) { t.Error("progress with the index built") }); built || err != nil {
		t.Fatalf("IndexReferences again: built %v, %v", built, err)
	}
	importChain(t, v, "Condition.ndjson")
	checkChainMH(t, v, "Condition/c", "Encounter/e", "Claim/cl", "MedicationRequest/rx")
	mustVerify(t, v, "with the index built")
}

// fullUrl references (urn:uuid) across files: per-type Bundles keep their
// entries' fullUrls, and a reference in one finds a resource of another
// through the vault's targets.
func TestCrossFileLabelsByFullURL(t *testing.T) {
	bundle := func(entries ...string) string {
		return `{"resourceType":"Bundle","type":"collection","entry":[` + strings.Join(entries, ",") + `]}`
	}
	enc := bundle(`{"fullUrl":"urn:uuid:e","resource":{"resourceType":"Encounter","id":"e","status":"finished","reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}}`)
	claim := bundle(`{"fullUrl":"urn:uuid:cl","resource":{"resourceType":"Claim","id":"cl","status":"active","item":[{"sequence":1,"encounter":[{"reference":"urn:uuid:e"}]}]}}`)
	eob := bundle(`{"fullUrl":"urn:uuid:eob","resource":{"resourceType":"ExplanationOfBenefit","id":"eob","status":"active","claim":{"reference":"urn:uuid:cl"}}}`)
	for _, order := range [][]string{{claim, eob, enc}, {enc, eob, claim}, {eob, enc, claim}} {
		v := newTestVault(t)
		for i, f := range order {
			if _, err := v.Import(fmt.Sprint("part", i), strings.NewReader(f), nil); err != nil {
				t.Fatal(err)
			}
		}
		checkChainMH(t, v, "Encounter/e", "Claim/cl", "ExplanationOfBenefit/eob")
		mustVerify(t, v, "fullUrl")
	}
}

// The file alone does not say which record references which: no refs key
// (nor value) is a key of the FHIR index or a targets key's ref key.
func TestReferenceIndexUnlinkable(t *testing.T) {
	v := newTestVault(t)
	importChain(t, v, "Claim.ndjson", "Encounter.ndjson", "ExplanationOfBenefit.ndjson")
	// An absolute reference (a fallback entry, with a value) and one by fullUrl.
	importString(t, v, "bundle.json", `{"resourceType":"Bundle","type":"collection","entry":[`+
		`{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Condition","id":"a"}},`+
		`{"fullUrl":"urn:uuid:b","resource":{"resourceType":"Observation","id":"b","status":"final","code":{"text":"x"},"hasMember":[{"reference":"urn:uuid:a"},{"reference":"http://h/fhir/Encounter/e"}]}}]}`)
	n, vals := 0, 0
	v.view(func(tx *bbolt.Tx) error {
		idx, tg := tx.Bucket(bucketIndex), tx.Bucket(bucketTargets)
		linked := func(h []byte) bool {
			k, _ := tg.Cursor().Seek(h)
			return idx.Get(h) != nil || hasPrefix(k, h)
		}
		return tx.Bucket(bucketRefs).ForEach(func(k, val []byte) error {
			n++
			if linked(k[:refKeyLen]) {
				t.Errorf("refs key %x names its referent", k[:refKeyLen])
			}
			if len(val) > 0 {
				vals++
				if linked(val) {
					t.Errorf("refs value %x names its referent", val)
				}
			}
			return nil
		})
	})
	if n < 4 || vals == 0 {
		t.Fatalf("%d refs entries, %d with a value", n, vals)
	}
	mustVerify(t, v, "unlinkable")
}

// A vault with the first build's index (refs keys that were ref keys) has
// it replaced at its next import; verify passes before and after.
func TestReferenceIndexFirstBuildReplaced(t *testing.T) {
	v := newTestVault(t)
	importChain(t, v, "Claim.ndjson", "MedicationRequest.ndjson", "Encounter.ndjson")
	var claim record.ID
	ms, _ := v.List(Filter{})
	for _, m := range ms {
		if m.FHIR.Type == "Claim" {
			claim = m.ID
		}
	}
	v.update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketRefs); err != nil {
			return err
		}
		old, err := tx.CreateBucket(bucketRefsV1)
		if err != nil {
			return err
		}
		return old.Put(append(v.refKey("Encounter/e"), claim[:]...), nil)
	})
	mustVerify(t, v, "with the first build's index")
	importChain(t, v, "Condition.ndjson")
	checkChainMH(t, v, "Condition/c", "Encounter/e", "Claim/cl", "MedicationRequest/rx")
	v.view(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketRefsV1) != nil {
			t.Error("the first build's index is still there")
		}
		return nil
	})
	mustVerify(t, v, "with the index rebuilt")
}
