package vault

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// importLabelsMatchPropagate imports data into a fresh vault and checks that
// every record carries exactly the labels fhir.Propagate gives the same
// resources in memory: the import propagates on disk, in a scratch file,
// and must not drift from the reference.
func importLabelsMatchPropagate(t *testing.T, name string, data []byte) {
	t.Helper()
	rs, err := fhir.ReadAll(bytes.NewReader(data), name, fhir.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	fhir.Propagate(rs)
	want := map[string][]record.Label{}
	for _, r := range rs {
		want[r.Type+"/"+r.ID] = r.Labels
	}
	v := newTestVault(t)
	if _, err := v.Import(name, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	labelled := 0
	for _, m := range ms {
		k := m.FHIR.Type + "/" + m.FHIR.ID
		w := normLabels(want[k])
		if !slices.Equal(m.Labels, w) {
			t.Errorf("%s %s: import labels %v, Propagate %v", name, k, m.Labels, w)
		}
		if len(w) > 0 {
			labelled++
		}
	}
	if len(ms) != len(want) {
		t.Fatalf("%s: %d records for %d resources", name, len(ms), len(want))
	}
	t.Logf("%s: %d records, %d labelled, all as Propagate labels them", name, len(ms), labelled)
}

func TestImportLabelsMatchPropagateGenerated(t *testing.T) {
	var b bytes.Buffer
	if err := fhir.Generate(&b, 20_000, 3); err != nil {
		t.Fatal(err)
	}
	importLabelsMatchPropagate(t, "generated.ndjson", b.Bytes())
}

func TestImportLabelsMatchPropagateSynthea(t *testing.T) {
	for _, f := range syntheaFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		importLabelsMatchPropagate(t, f, data)
	}
}

// Rule 2 and chains through fullUrl references, in one bundle: a source
// labels one Condition MH; another Condition with the same code, an
// Encounter whose reason is the first, a Claim pointing at the Encounter by
// urn:uuid and an ExplanationOfBenefit pointing at the Claim all get MH; the
// Patient (an actor) and an unrelated Observation do not.
func TestImportLabelsMatchPropagateChains(t *testing.T) {
	entry := func(url, res string) string { return `{"fullUrl":"` + url + `","resource":` + res + `}` }
	code := `{"coding":[{"system":"http://snomed.info/sct","code":"123456"}]}`
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[` + strings.Join([]string{
		entry("urn:uuid:p", `{"resourceType":"Patient","id":"p"}`),
		entry("urn:uuid:c1", `{"resourceType":"Condition","id":"c1","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},"code":`+code+`,"subject":{"reference":"urn:uuid:p"}}`),
		entry("urn:uuid:c2", `{"resourceType":"Condition","id":"c2","code":`+code+`,"subject":{"reference":"urn:uuid:p"}}`),
		entry("urn:uuid:e", `{"resourceType":"Encounter","id":"e","reasonReference":[{"reference":"Condition/c1"}],"subject":{"reference":"urn:uuid:p"}}`),
		entry("urn:uuid:cl", `{"resourceType":"Claim","id":"cl","item":[{"encounter":[{"reference":"urn:uuid:e"}]}],"patient":{"reference":"urn:uuid:p"}}`),
		entry("urn:uuid:eob", `{"resourceType":"ExplanationOfBenefit","id":"eob","claim":{"reference":"urn:uuid:cl"},"patient":{"reference":"urn:uuid:p"}}`),
		entry("urn:uuid:o", `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"weight"},"subject":{"reference":"urn:uuid:p"}}`),
	}, ",") + `]}`
	importLabelsMatchPropagate(t, "chains.json", []byte(bundle))
	// And the reference itself labels what it should.
	v := newTestVault(t)
	if _, err := v.Import("chains.json", strings.NewReader(bundle), nil); err != nil {
		t.Fatal(err)
	}
	ms, _ := v.List(Filter{})
	for _, m := range ms {
		mh := m.HasLabel(record.MH)
		switch m.FHIR.ID {
		case "c1", "c2", "e", "cl", "eob":
			if !mh {
				t.Errorf("%s/%s is not labelled MH", m.FHIR.Type, m.FHIR.ID)
			}
		default:
			if mh {
				t.Errorf("%s/%s is labelled MH", m.FHIR.Type, m.FHIR.ID)
			}
		}
	}
}

// uuidReferences turns every "Type/<uuid>" reference of an NDJSON file
// into "urn:uuid:<uuid>", as NDJSON exports that kept a Bundle's
// references write them.
func uuidReferences(data []byte) []byte {
	re := regexp.MustCompile(`"reference":"[A-Za-z]+/([0-9a-f-]{36})"`)
	return re.ReplaceAll(data, []byte(`"reference":"urn:uuid:$1"`))
}

// NDJSON has no fullUrls: a urn:uuid reference finds the one resource of
// the file with that id, as fhir.Propagate resolves it, across the
// import's batches; the labels are those the same file gets with
// Type/id references.
func TestImportNDJSONUUIDReferences(t *testing.T) {
	var b bytes.Buffer
	if err := fhir.Generate(&b, 20_000, 5); err != nil {
		t.Fatal(err)
	}
	urn := uuidReferences(b.Bytes())
	if bytes.Equal(urn, b.Bytes()) {
		t.Fatal("no reference changed")
	}
	importLabelsMatchPropagate(t, "urn.ndjson", urn)
	plain, byURN := newTestVault(t), newTestVault(t)
	if _, err := plain.Import("plain.ndjson", bytes.NewReader(b.Bytes()), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := byURN.Import("urn.ndjson", bytes.NewReader(urn), nil); err != nil {
		t.Fatal(err)
	}
	want, got := labelsByResource(t, plain), labelsByResource(t, byURN)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("labels by urn:uuid differ from labels by Type/id: %v, want %v", labelCounts(got), labelCounts(want))
	}
}

// A urn:uuid that two resources of the file (of different types) have as
// their id names neither: the import does not guess, even when the second
// comes batches later; versions of one resource are one resource; and an
// unchanged resource the vault holds already counts too.
func TestImportNDJSONUUIDReferenceAmbiguous(t *testing.T) {
	const id = "2b3c1f9e-0000-4000-8000-00000000000e"
	enc := `{"resourceType":"Encounter","id":"` + id + `","status":"finished","reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}`
	enc2 := strings.Replace(enc, `"finished"`, `"cancelled"`, 1)
	obs := `{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"x"}}`
	claim := `{"resourceType":"Claim","id":"cl","status":"active","item":[{"sequence":1,"encounter":[{"reference":"urn:uuid:` + id + `"}]}]}`
	var filler strings.Builder
	for i := range importBatch + 10 {
		fmt.Fprintf(&filler, `{"resourceType":"Observation","id":"f%d","status":"final","code":{"text":"x"}}`+"\n", i)
	}
	file := func(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }
	for _, tc := range []struct {
		name string
		data []byte
		mh   bool
	}{
		{"one", file(enc, claim), true},
		{"two types", file(enc, claim, obs), false},
		{"two types, batches apart", file(enc, claim, filler.String(), obs), false},
		{"two versions, batches apart", file(enc, claim, filler.String(), enc2), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(tc.name, "versions") { // one record per resource
				importLabelsMatchPropagate(t, "a.ndjson", tc.data)
			}
			v := newTestVault(t)
			if _, err := v.Import("a.ndjson", bytes.NewReader(tc.data), nil); err != nil {
				t.Fatal(err)
			}
			ms, _ := v.List(Filter{Category: record.Billing})
			if len(ms) != 1 || ms[0].HasLabel(record.MH) != tc.mh {
				t.Errorf("Claims %v, want MH: %v", ms, tc.mh)
			}
			mustVerify(t, v, tc.name)
		})
	}
	// The vault holds the Encounter; a file brings it again, unchanged,
	// with a Claim that references it by urn:uuid (and then, in a second
	// vault, an Observation with its id as well).
	for _, tc := range []struct {
		name string
		data []byte
		mh   bool
	}{
		{"held", file(enc, claim), true},
		{"held, two types", file(enc, claim, obs), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVault(t)
			if _, err := v.Import("e.ndjson", strings.NewReader(enc+"\n"), nil); err != nil {
				t.Fatal(err)
			}
			st, err := v.Import("a.ndjson", bytes.NewReader(tc.data), nil)
			if err != nil || st.Unchanged != 1 {
				t.Fatalf("%+v, %v", st, err)
			}
			if got := labelsByResource(t, v)["Claim/cl"]; slices.Contains(got, record.MH) != tc.mh {
				t.Errorf("Claim %v, want MH: %v", got, tc.mh)
			}
			ms, _ := v.List(Filter{Category: record.Encounters})
			if len(ms) != 1 || len(ms[0].FHIR.FullURLs) != 0 {
				t.Errorf("the Encounter's records: %d, fullUrls %v", len(ms), ms[0].FHIR.FullURLs)
			}
			mustVerify(t, v, tc.name)
		})
	}
}
