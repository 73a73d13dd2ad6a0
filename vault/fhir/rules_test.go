package fhir

import (
	"errors"
	"reflect"
	"regexp"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

// The rules' name is stable within a build and says the derivation
// revision; a vault compares it to decide whether to derive labels again.
func TestLabelRules(t *testing.T) {
	r := LabelRules()
	if !regexp.MustCompile(`^r[0-9]+-[0-9a-f]{24}$`).MatchString(r) {
		t.Fatalf("LabelRules() = %q", r)
	}
	if LabelRules() != r {
		t.Fatal("LabelRules changes between calls")
	}
}

// ResourceLabels gives a stored resource the labels its own content gives
// it at import (here PHQ-9 item 9 as its own Observation), and nothing it
// would inherit from resources it references; content that does not parse
// is an error.
func TestResourceLabels(t *testing.T) {
	item9 := `{"resourceType":"Observation","id":"item9","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44260-8"}]},"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"ETH"}]}}`
	got, err := ResourceLabels([]byte(item9), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []record.Label{record.MH, record.SUD}; !reflect.DeepEqual(got, want) {
		t.Errorf("item 9 with meta.security ETH: %v, want %v", got, want)
	}
	panel := `{"resourceType":"Observation","id":"panel","status":"final","code":{"text":"panel"},"hasMember":[{"reference":"Observation/item9"}]}`
	if got, err := ResourceLabels([]byte(panel), ""); err != nil || len(got) != 0 {
		t.Errorf("panel: %v %v, want none", got, err)
	}
	noID := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44260-8"}]}}`
	if got, err := ResourceLabels([]byte(noID), "urn:uuid:4b6f7a1c-0d5e-4f1a-9c2b-3e8d7f6a5b4c"); err != nil || !reflect.DeepEqual(got, []record.Label{record.MH}) {
		t.Errorf("resource known by its fullUrl: %v %v", got, err)
	}
	for _, bad := range []string{`{`, `[]`, `{"resourceType":"NoSuchType","id":"x"}`} {
		if _, err := ResourceLabels([]byte(bad), ""); err == nil {
			t.Errorf("%s: no error", bad)
		} else if !errors.Is(err, ErrNotJSON) && !errors.Is(err, ErrNotFHIR) && !errors.Is(err, ErrUnknownType) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
