package fhir

import "testing"

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
