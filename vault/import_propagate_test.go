package vault

import (
	"bytes"
	"os"
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
