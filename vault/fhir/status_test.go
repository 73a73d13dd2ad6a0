package fhir

import (
	"strings"
	"testing"
)

// TestCurrent: the emergency summary's "active medications" and "active
// problems" are read from each type's own status value set; a status that
// says nothing (none, unknown, draft) is not current, and types whose
// status is not about the patient (Medication, MedicationDispense,
// AdverseEvent) never are.
func TestCurrent(t *testing.T) {
	tests := []struct {
		typ, status string
		want        bool
	}{
		{"Condition", "active", true},
		{"Condition", "recurrence", true},
		{"Condition", "relapse", true},
		{"Condition", "resolved", false},
		{"Condition", "remission", false},
		{"Condition", "inactive", false},
		{"Condition", "", false},
		{"Condition", "refuted", false},
		{"AllergyIntolerance", "active", true},
		{"AllergyIntolerance", "", true},
		{"AllergyIntolerance", "inactive", false},
		{"AllergyIntolerance", "resolved", false},
		{"AllergyIntolerance", "entered-in-error", false},
		{"MedicationRequest", "active", true},
		{"MedicationRequest", "on-hold", true},
		{"MedicationRequest", "draft", false},
		{"MedicationRequest", "unknown", false},
		{"MedicationRequest", "stopped", false},
		{"MedicationRequest", "completed", false},
		{"MedicationRequest", "cancelled", false},
		{"MedicationRequest", "", false},
		{"MedicationStatement", "active", true},
		{"MedicationStatement", "intended", true},
		{"MedicationStatement", "on-hold", true},
		{"MedicationStatement", "completed", false},
		{"MedicationStatement", "not-taken", false},
		{"MedicationStatement", "unknown", false},
		{"MedicationAdministration", "in-progress", true},
		{"MedicationAdministration", "completed", false},
		{"MedicationAdministration", "not-done", false},
		{"MedicationDispense", "completed", false},
		{"MedicationDispense", "in-progress", false},
		{"Medication", "active", false},
		{"Medication", "", false},
		{"AdverseEvent", "", false},
		{"Immunization", "completed", true},
		{"Immunization", "not-done", false},
		{"ImmunizationRecommendation", "", true},
		{"Consent", "active", true},
		{"Consent", "inactive", false},
		{"Consent", "proposed", false},
		{"DocumentReference", "current", true},
		{"DocumentReference", "superseded", false},
		{"Observation", "final", false},
	}
	for _, tt := range tests {
		if got := Current(tt.typ, tt.status); got != tt.want {
			t.Errorf("Current(%s, %q) = %v, want %v", tt.typ, tt.status, got, tt.want)
		}
	}
	for typ := range currentStatuses {
		if !IsResourceType(typ) {
			t.Errorf("currentStatuses lists unknown type %s", typ)
		}
	}
}

// clinicalStatus is read from its FHIR code system's coding, wherever it
// stands among the codings: a server's own local coding first must not
// make an active problem read as over (and leave it out of the emergency
// summary).
func TestClinicalStatusCoding(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"resourceType":"Condition","id":"a","clinicalStatus":{"coding":[{"system":"urn:oid:1.2.840.114350","code":"A"},{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]}}`, "active"},
		{`{"resourceType":"AllergyIntolerance","id":"b","clinicalStatus":{"coding":[{"system":"local","code":"x"},{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"Active"}]}}`, "active"},
		{`{"resourceType":"Condition","id":"c","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"},{"system":"local","code":"active"}]}}`, "resolved"},
		{`{"resourceType":"Condition","id":"d","clinicalStatus":{"coding":[{"code":"active"}]}}`, "active"}, // no system: the only coding
		{`{"resourceType":"Condition","id":"e","verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"refuted"}]},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]}}`, "refuted"},
	} {
		rs, err := ReadAll(strings.NewReader(c.in), "s.json", Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if got := rs[0].Status; got != c.want {
			t.Errorf("%s: status %q, want %q", rs[0].Key(), got, c.want)
		}
	}
}
