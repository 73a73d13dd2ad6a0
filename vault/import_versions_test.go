package vault

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

// Versions of one resource across imports: labels cover every version, and
// a reference by Type/id inherits the labels of all of them.
const (
	versCondition = `{"resourceType":"Condition","id":"c","code":{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}}`
	versEncMH     = `{"resourceType":"Encounter","id":"e","status":"finished","reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}`
	versEncV1     = `{"resourceType":"Encounter","id":"e","status":"planned"}`
	versEncV2     = `{"resourceType":"Encounter","id":"e","status":"finished","reasonReference":[{"reference":"Condition/c"}]}`
	versEncV1Ref  = `{"resourceType":"Encounter","id":"e","status":"planned","reasonReference":[{"reference":"Condition/c"}]}`
	versEncV2Bare = `{"resourceType":"Encounter","id":"e","status":"finished"}`
	versClaim     = `{"resourceType":"Claim","id":"cl","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e"}]}]}`
)

func importString(t *testing.T, v *Vault, name, data string) *ImportStats {
	t.Helper()
	st, err := v.Import(name, strings.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkAllMH fails unless every version of each resource ("Type/id") is
// stored and labelled MH.
func checkAllMH(t *testing.T, v *Vault, what string, keys ...string) {
	t.Helper()
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		n := 0
		for _, m := range ms {
			if m.FHIR.Type+"/"+m.FHIR.ID != k {
				continue
			}
			n++
			if !slices.Contains(m.Labels, record.MH) {
				t.Errorf("%s: %s version %d has labels %v, want MH", what, k, m.FHIR.Version, m.Labels)
			}
		}
		if n == 0 {
			t.Errorf("%s: %s not stored", what, k)
		}
	}
}

// One file holds two versions of the Encounter (a history export); the
// second gains MH through the Condition. The Claim that references the
// Encounter ends MH whether it is imported after that file, before it, or
// in the same file, and so does the first version.
func TestCrossFileVersionsInOneFile(t *testing.T) {
	encs := versEncV1 + "\n" + versEncV2 + "\n"
	for _, c := range []struct {
		what  string
		files []string
	}{
		{"Claim after", []string{versCondition + "\n", encs, versClaim + "\n"}},
		{"Claim before", []string{versCondition + "\n", versClaim + "\n", encs}},
		{"one file", []string{versCondition + "\n" + encs + versClaim + "\n"}},
	} {
		v := newTestVault(t)
		for i, f := range c.files {
			importString(t, v, "part"+string(rune('0'+i))+".ndjson", f)
		}
		checkAllMH(t, v, c.what, "Condition/c", "Encounter/e", "Claim/cl")
		mustVerify(t, v, c.what)
	}
}

// A label an import spreads to one version of an earlier resource reaches
// its other versions, each with its own label entry; a Claim imported
// afterwards, or before, inherits it.
func TestCrossFileRelabelCoversVersions(t *testing.T) {
	for _, claimFirst := range []bool{false, true} {
		v := newTestVault(t)
		if claimFirst {
			importString(t, v, "Claim.ndjson", versClaim+"\n")
		}
		importString(t, v, "enc1.ndjson", versEncV1Ref+"\n")
		importString(t, v, "enc2.ndjson", versEncV2Bare+"\n")
		st := importString(t, v, "Condition.ndjson", versCondition+"\n")
		if !claimFirst {
			importString(t, v, "Claim.ndjson", versClaim+"\n")
		}
		what := "Claim last"
		want := 2 // both versions of the Encounter
		if claimFirst {
			what, want = "Claim first", 3
		}
		checkAllMH(t, v, what, "Condition/c", "Encounter/e", "Claim/cl")
		if st.Relabelled != want {
			t.Errorf("%s: %d relabelled, want %d", what, st.Relabelled, want)
		}
		n := propagatedEntries(t, v)
		if n != want {
			t.Errorf("%s: %d propagated label entries, want %d", what, n, want)
		}
		mustVerify(t, v, what)
	}
}

// A Bundle brings again, unchanged, an MH Encounter the vault holds from an
// NDJSON import (no fullUrl), under fullUrl urn:uuid:e, with a new Claim
// that references urn:uuid:e: the Claim is MH, as it is when the Bundle is
// imported into an empty vault.
func TestCrossFileUnchangedEntryFullURL(t *testing.T) {
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[` +
		`{"fullUrl":"urn:uuid:e","resource":` + versEncMH + `},` +
		`{"fullUrl":"urn:uuid:cl","resource":{"resourceType":"Claim","id":"cl","status":"active","item":[{"sequence":1,"encounter":[{"reference":"urn:uuid:e"}]}]}}]}`
	v := newTestVault(t)
	importString(t, v, "Encounter.ndjson", versEncMH+"\n")
	if st := importString(t, v, "bundle.json", bundle); st.Unchanged != 1 || st.Added != 1 {
		t.Fatalf("stats %+v", *st)
	}
	checkAllMH(t, v, "after the NDJSON", "Encounter/e", "Claim/cl")
	mustVerify(t, v, "after the NDJSON")
	w := newTestVault(t)
	importString(t, w, "bundle.json", bundle)
	checkAllMH(t, w, "whole", "Encounter/e", "Claim/cl")
}

// Within one file, versions are numbered per series (seriesOf) as across
// files: a server's second version of Condition/1 follows its own first,
// not the other server's resource that the file brought between them,
// also when import batches (importBatch) and so the scratch file's tables
// lie between them.
func TestInFileVersionsNumberedPerServer(t *testing.T) {
	v := newTestVault(t)
	cond := func(base, text string) string {
		return `{"fullUrl":"` + base + `/Condition/1","resource":{"resourceType":"Condition","id":"1","code":{"text":"` + text + `"}}}`
	}
	importString(t, v, "clinic.json", `{"resourceType":"Bundle","type":"collection","entry":[`+cond("https://clinic.example/r4", "clinic 1")+`]}`)
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	filler := func(from int) {
		for i := from; i < from+importBatch+10; i++ {
			fmt.Fprintf(&b, `{"resource":{"resourceType":"Observation","id":"o%d","status":"final","code":{"text":"x"}}},`, i)
		}
	}
	b.WriteString(cond("https://hospital.example/fhir", "hospital 1") + ",")
	filler(0)
	b.WriteString(cond("https://clinic.example/r4", "clinic 2") + ",")
	filler(importBatch + 10)
	b.WriteString(cond("https://hospital.example/fhir", "hospital 2") + ",")
	b.WriteString(cond("https://clinic.example/r4", "clinic 3") + ",")
	b.WriteString(cond("", "no server 1") + ",")
	b.WriteString(cond("https://hospital.example/fhir", "hospital 3"))
	b.WriteString(`]}`)
	st := importString(t, v, "both.json", b.String())
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, m := range ms {
		if m.FHIR.Type == "Condition" {
			got[m.Title] = m.FHIR.Version
		}
	}
	want := map[string]int{"clinic 1": 1, "hospital 1": 1, "clinic 2": 2, "hospital 2": 2, "clinic 3": 3, "hospital 3": 3}
	for title, n := range want {
		if got[title] != n {
			t.Errorf("%s: version %d, want %d (all: %v)", title, got[title], n, got)
		}
	}
	// "/Condition/1" names no server: a series of its own.
	if got["no server 1"] != 1 {
		t.Errorf("no server 1: version %d, want 1", got["no server 1"])
	}
	if st.Versions != 4 {
		t.Errorf("import stats: %d new versions, want 4 (clinic 2, 3 and hospital 2, 3)", st.Versions)
	}
}
