package fhir

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

// parseNDJSON reads resources written one per line.
func parseNDJSON(t *testing.T, lines ...string) []*Resource {
	t.Helper()
	rs, err := ReadAll(strings.NewReader(strings.Join(lines, "\n")+"\n"), "t.ndjson", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func labelsOf(rs []*Resource) map[string][]record.Label {
	out := map[string][]record.Label{}
	for _, r := range rs {
		out[r.Key()] = r.Labels
	}
	return out
}

func TestPropagateChain(t *testing.T) {
	rs := parseNDJSON(t,
		`{"resourceType":"Patient","id":"p","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]}}`,
		`{"resourceType":"Condition","id":"c","code":{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]},"subject":{"reference":"Patient/p"}}`,
		`{"resourceType":"Encounter","id":"e","reasonReference":[{"reference":"Condition/c"}],"subject":{"reference":"Patient/p"}}`,
		`{"resourceType":"Claim","id":"cl","patient":{"reference":"Patient/p"},"item":[{"encounter":[{"reference":"Encounter/e"}]}]}`,
		`{"resourceType":"ExplanationOfBenefit","id":"eob","claim":{"reference":"https://ehr.example/fhir/Claim/cl/_history/3"}}`,
		`{"resourceType":"Observation","id":"o","subject":{"reference":"Patient/p"},"code":{"text":"weight"}}`,
		`{"resourceType":"Provenance","id":"prov","target":[{"reference":"ExplanationOfBenefit/eob"},{"reference":"Observation/o"}]}`,
	)
	if n := Propagate(rs); n != 4 {
		t.Errorf("Propagate changed %d resources, want 4", n)
	}
	want := map[string][]record.Label{
		"Patient/p":                {record.HIV},
		"Condition/c":              {record.MH},
		"Encounter/e":              {record.MH},
		"Claim/cl":                 {record.MH},
		"ExplanationOfBenefit/eob": {record.MH},
		"Observation/o":            nil, // references only the Patient: actors carry nothing
		"Provenance/prov":          {record.MH},
	}
	if got := labelsOf(rs); !reflect.DeepEqual(got, want) {
		t.Errorf("labels %v\nwant %v", got, want)
	}
	var why string
	for _, r := range rs {
		if r.Key() == "Claim/cl" {
			why = fmt.Sprint(r.Why)
		}
	}
	if !strings.Contains(why, "references Encounter/e") {
		t.Errorf("claim reason %q", why)
	}
	if n := Propagate(rs); n != 0 {
		t.Errorf("second Propagate changed %d resources", n)
	}
}

func TestPropagateByFullURL(t *testing.T) {
	b := `{"resourceType":"Bundle","type":"transaction","entry":[
{"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"B20"}]}}},
{"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222","resource":{"resourceType":"MedicationRequest","reasonReference":[{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"}]}},
{"fullUrl":"http://ehr.example/fhir/Claim/9","resource":{"resourceType":"Claim","id":"9","prescription":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"}}},
{"fullUrl":"urn:uuid:33333333-3333-4333-8333-333333333333","resource":{"resourceType":"ExplanationOfBenefit","claim":{"reference":"Claim/9"}}},
{"fullUrl":"urn:uuid:44444444-4444-4444-8444-444444444444","resource":{"resourceType":"ExplanationOfBenefit","claim":{"reference":"urn:uuid:99999999-9999-4999-8999-999999999999"}}}
]}`
	rs, err := ReadAll(strings.NewReader(b), "b.json", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	Propagate(rs)
	for i, want := range []bool{true, true, true, true, false} {
		if got := rs[i].HasLabel(record.HIV); got != want {
			t.Errorf("entry %d (%s): HIV %v, want %v", i, rs[i].Type, got, want)
		}
	}
}

func TestPropagateCycleAndNil(t *testing.T) {
	rs := parseNDJSON(t,
		`{"resourceType":"Observation","id":"a","hasMember":[{"reference":"Observation/b"}],"code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]}}`,
		`{"resourceType":"Observation","id":"b","hasMember":[{"reference":"Observation/a"}],"code":{"coding":[{"system":"http://loinc.org","code":"55277-8"}]}}`,
		`{"resourceType":"Observation","id":"c","hasMember":[{"reference":"Observation/c"}]}`,
	)
	rs = append(rs, nil)
	Propagate(rs)
	want := []record.Label{record.MH, record.HIV}
	if !reflect.DeepEqual(rs[0].Labels, want) || !reflect.DeepEqual(rs[1].Labels, want) || rs[2].Labels != nil {
		t.Errorf("labels %v %v %v", rs[0].Labels, rs[1].Labels, rs[2].Labels)
	}
}

func TestPropagateSameCode(t *testing.T) {
	rs := parseNDJSON(t,
		`{"resourceType":"Condition","id":"a","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"SDV"}]},"code":{"coding":[{"system":"urn:oid:2.16.840.1.113883.6.96","code":"999999"}]}}`,
		`{"resourceType":"Condition","id":"b","code":{"coding":[{"system":"http://snomed.info/sct","code":"999999"}]}}`,
		`{"resourceType":"Condition","id":"c","code":{"coding":[{"system":"http://snomed.info/sct","code":"888888"}]}}`,
		`{"resourceType":"Condition","id":"d","category":[{"coding":[{"system":"http://snomed.info/sct","code":"999999"}]}]}`,
	)
	Propagate(rs)
	got := labelsOf(rs)
	if !reflect.DeepEqual(got["Condition/b"], []record.Label{record.SDV}) || got["Condition/c"] != nil || got["Condition/d"] != nil {
		t.Errorf("labels %v", got)
	}
}

// TestPropagateAcrossBatches: propagation reaches earlier records only when
// the caller passes them.
func TestPropagateAcrossBatches(t *testing.T) {
	first := parseNDJSON(t, `{"resourceType":"Condition","id":"c","code":{"coding":[{"system":"http://snomed.info/sct","code":"5602001"}]}}`)
	second := parseNDJSON(t, `{"resourceType":"Claim","id":"x","diagnosis":[{"diagnosisReference":{"reference":"Condition/c"}}]}`)
	Propagate(second)
	if second[0].HasLabel(record.SUD) {
		t.Fatal("labelled without the referenced resource")
	}
	Propagate(append(second, first...))
	if !second[0].HasLabel(record.SUD) {
		t.Fatal("not labelled with the referenced resource passed")
	}
}
