package vault

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// sharedFHIR holds public FHIR test data outside the repository
// (/work/shared/fhir/README.md); FHIR_DATA=DIR names another folder, as
// for docs/interop/validate.sh (a worktree elsewhere). Tests that need it
// skip when it is absent.
var sharedFHIR = cmp.Or(os.Getenv("FHIR_DATA"), "../../shared/fhir")

func syntheaFiles(tb testing.TB) []string {
	files, _ := filepath.Glob(filepath.Join(sharedFHIR, "synthea-r4", "[A-Z]*_*.json"))
	if len(files) == 0 {
		tb.Skip("../shared/fhir not present: skipping tests on real Synthea data")
	}
	return files
}

// Every resource of the Synthea bundles round-trips through import and
// export byte for byte but for the labels export adds to meta.security
// (fhir.AddSecurityLabels), and importing again adds nothing.
func TestImportExportRoundTrip(t *testing.T) {
	files := syntheaFiles(t)
	v := newTestVault(t)
	want := map[string][]byte{}
	total := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := fhir.ReadAll(bytes.NewReader(data), f, fhir.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			want[r.Type+"/"+r.ID] = r.Raw
		}
		st, err := v.Import(f, bytes.NewReader(data), nil)
		if err != nil {
			t.Fatal(err)
		}
		total += st.Added
	}
	if total != len(want) {
		t.Fatalf("imported %d records, the files hold %d distinct resources", total, len(want))
	}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		st, err := v.Import(f, bytes.NewReader(data), nil)
		if err != nil || st.Added != 0 || st.Versions != 0 {
			t.Fatalf("re-import of %s: %+v, %v", f, st, err)
		}
	}
	var out bytes.Buffer
	st, err := v.ExportFHIR(Filter{}, ExportBundle, &out)
	if err != nil || st.Records != len(want) {
		t.Fatalf("export: %+v, %v", st, err)
	}
	rs, err := fhir.ReadAll(&out, "export.json", fhir.Limits{})
	if err != nil {
		t.Fatalf("the exported bundle does not parse: %v", err)
	}
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string][]record.Label{}
	for _, m := range ms {
		labels[m.FHIR.Type+"/"+m.FHIR.ID] = m.Labels
	}
	for _, r := range rs {
		k := r.Type + "/" + r.ID
		var w bytes.Buffer
		if err := fhir.AddSecurityLabels(&w, want[k], labels[k]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Raw, w.Bytes()) {
			t.Fatalf("%s did not round-trip byte for byte (but for its labels %v)", k, labels[k])
		}
	}
	if len(rs) != len(want) {
		t.Fatalf("exported %d resources, want %d", len(rs), len(want))
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify after import: %v %v", err, rep.Problems)
	}
}

// The sensitive conditions in the Synthea data come out labelled; ordinary
// ones do not.
func TestImportLabelsRealData(t *testing.T) {
	files := syntheaFiles(t)
	v := newTestVault(t)
	for _, f := range files {
		fh, _ := os.Open(f)
		if _, err := v.Import(f, fh, nil); err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
	ms, _ := v.List(Filter{Category: record.Problems})
	has := func(sub string, l record.Label) (found, labelled bool) {
		for _, m := range ms {
			if strings.Contains(strings.ToLower(m.Title), sub) {
				found = true
				labelled = labelled || m.HasLabel(l)
			}
		}
		return
	}
	for _, tc := range []struct {
		title string
		label record.Label
		want  bool
	}{
		{"major depression", record.MH, true},
		{"opioid abuse", record.SUD, true},
		{"miscarriage", record.SEX, true},
		{"hypertension", record.MH, false},
		{"viral sinusitis", record.MH, false},
	} {
		found, labelled := has(tc.title, tc.label)
		if !found {
			t.Errorf("no %q condition in the data", tc.title)
		} else if labelled != tc.want {
			t.Errorf("%q labelled %s = %v, want %v", tc.title, tc.label, labelled, tc.want)
		}
	}
}

const bundleV1 = `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"A1c"},"valueQuantity":{"value":6.1}}}]}`
const bundleV2 = `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","id":"o1","status":"amended","code":{"text":"A1c"},"valueQuantity":{"value":6.3}}}]}`

// A changed resource with the same id becomes a new version beside the old.
func TestImportVersions(t *testing.T) {
	v := newTestVault(t)
	if st, err := v.Import("a.json", strings.NewReader(bundleV1), nil); err != nil || st.Added != 1 {
		t.Fatalf("%+v %v", st, err)
	}
	st, err := v.Import("b.json", strings.NewReader(bundleV2), nil)
	if err != nil || st.Versions != 1 || st.Added != 0 {
		t.Fatalf("changed resource: %+v %v", st, err)
	}
	ms, _ := v.List(Filter{})
	if len(ms) != 2 {
		t.Fatalf("%d records, want both versions", len(ms))
	}
	versions := map[int]bool{}
	for _, m := range ms {
		versions[m.FHIR.Version] = true
	}
	if !versions[1] || !versions[2] {
		t.Fatalf("versions %v", versions)
	}
	if st, _ := v.Import("b.json", strings.NewReader(bundleV2), nil); st.Unchanged != 1 {
		t.Fatalf("re-import of v2: %+v", st)
	}
	// Removing one version keeps the other findable for dedup.
	v.Remove(ms[0].ID)
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// A file with a bad entry late in it imports nothing at all.
func TestImportAllOrNothing(t *testing.T) {
	v := newTestVault(t)
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	for i := range 3000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"resource":{"resourceType":"Observation","id":"o` + itoa(i) + `","status":"final","code":{"text":"x"}}}`)
	}
	good := b.String() + "]}"
	for name, bad := range map[string]string{
		"truncated":   good[:len(good)-100],
		"no id":       strings.Replace(good, `"id":"o2999",`, "", 1),
		"bad type":    strings.Replace(good, `"resourceType":"Observation","id":"o2500"`, `"resourceType":"Observatory","id":"o2500"`, 1),
		"no resource": strings.Replace(good, `{"resource":{"resourceType":"Observation","id":"o2998","status":"final","code":{"text":"x"}}}`, `{"fullUrl":"urn:uuid:x"}`, 1),
		"not json":    "this is not json",
	} {
		_, err := v.Import(name, strings.NewReader(bad), nil)
		var pe *fhir.ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s: error %v is not a ParseError", name, err)
		} else if pe.File != name {
			t.Errorf("%s: error names file %q", name, pe.File)
		}
		assertEmpty(t, v)
	}
	if st, err := v.Import("good", strings.NewReader(good), nil); err != nil || st.Added != 3000 {
		t.Fatalf("good file: %+v %v", st, err)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// kill -9 during an import leaves nothing visible.
func TestImportStagedIsInvisible(t *testing.T) {
	v := newTestVault(t)
	// Stage the file as an import does, then "die" before any commit.
	dieAt(t, "staged", nil)
	if _, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); !errors.Is(err, errTestDied) {
		t.Fatalf("import did not stop where the test asked: %v", err)
	}
	if ms, _ := v.List(Filter{}); len(ms) != 0 {
		t.Fatal("staged record is visible")
	}
	v.Close()
	reopen(t, v)
	assertEmpty(t, v)
	v.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketIndex).Stats().KeyN != 0 {
			t.Error("index entry left by an unfinished import")
		}
		return nil
	})
}

// A label added by hand carries over to a new version of the resource, and
// versions keep counting after one is removed.
func TestImportVersionKeepsLabelsAndNumbering(t *testing.T) {
	v := newTestVault(t)
	st, _ := v.Import("a.json", strings.NewReader(bundleV1), nil)
	ms, _ := v.List(Filter{})
	if st.Added != 1 || len(ms) != 1 {
		t.Fatal("v1 not imported")
	}
	if _, _, err := v.SetLabels(ms[0].ID, []record.Label{record.MH}, nil); err != nil {
		t.Fatal(err)
	}
	v.Import("b.json", strings.NewReader(bundleV2), nil)
	var v1 record.ID
	ms, _ = v.List(Filter{})
	for _, m := range ms {
		if m.FHIR.Version == 1 {
			v1 = m.ID
		}
		if m.FHIR.Version == 2 && !m.HasLabel(record.MH) {
			t.Fatal("the hand-added MH label fell off the new version")
		}
	}
	// Removing version 1 must not make the next version another "2".
	v.Remove(v1)
	v3 := strings.Replace(bundleV2, "6.3", "6.4", 1)
	v.Import("c.json", strings.NewReader(v3), nil)
	ms, _ = v.List(Filter{})
	seen := map[int]bool{}
	for _, m := range ms {
		if seen[m.FHIR.Version] {
			t.Fatalf("version %d appears twice", m.FHIR.Version)
		}
		seen[m.FHIR.Version] = true
	}
	if !seen[2] || !seen[3] || len(seen) != 2 {
		t.Fatalf("versions %v, want 2 and 3", seen)
	}
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// An import that dies after committing some records (hidden) but before its
// last transaction is rolled back at the next open, with ledger entries,
// and the vault verifies.
func TestImportDiesMidCommit(t *testing.T) {
	v := newTestVault(t)
	keep, _ := v.Add(strings.NewReader("kept"), NewRecord{Category: record.Labs})
	dieAt(t, "committed", func() {
		if ms, _ := v.List(Filter{}); len(ms) != 1 {
			t.Fatalf("%d records visible mid-commit, want only the one added", len(ms))
		}
		hidden := hiddenIDs(t, v)
		if len(hidden) != 3 {
			t.Fatalf("%d hidden records, want 3", len(hidden))
		}
		if _, err := v.Show(hidden[0]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a hidden record is visible to Show: %v", err)
		}
	})
	if _, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); !errors.Is(err, errTestDied) {
		t.Fatalf("import did not stop where the test asked: %v", err)
	}
	// "Die" here and open again.
	v.Close()
	reopen(t, v)
	if ms, _ := v.List(Filter{}); len(ms) != 1 || ms[0].ID != keep.ID {
		t.Fatalf("after the rollback: %d records", len(ms))
	}
	assertOnly := func() {
		v.view(func(tx *bbolt.Tx) error {
			if n := tx.Bucket(bucketRecords).Stats().KeyN; n != 1 {
				t.Errorf("%d records stored", n)
			}
			if n := tx.Bucket(bucketPending).Stats().KeyN; n != 0 {
				t.Errorf("%d pending marks left", n)
			}
			if n := tx.Bucket(bucketIndex).Stats().KeyN; n != 0 {
				t.Errorf("%d index entries left", n)
			}
			return nil
		})
	}
	assertOnly()
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify after rollback: %v %v", err, rep.Problems)
	}
	// The same file imports cleanly afterwards.
	if st, err := v.Import("tiny.json", strings.NewReader(tinyBundle), nil); err != nil || st.Added != 3 {
		t.Fatalf("re-import: %+v %v", st, err)
	}
}
