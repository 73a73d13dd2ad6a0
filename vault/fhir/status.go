package fhir

import "slices"

// currentStatuses lists, for each resource type the emergency summary can
// include, the Resource.Status codes under which a resource holds now: the
// clinicalStatus of a Condition or AllergyIntolerance, the status of the
// others ("" is no status; a verificationStatus of entered-in-error or
// refuted is the Status whatever the clinicalStatus). The codes are those
// of the FHIR R4 value sets of each element. CATEGORIES.md holds the same
// table; a test checks they agree.
var currentStatuses = map[string][]string{
	// condition-clinical: inactive, remission and resolved are over. No
	// clinicalStatus (allowed for an encounter diagnosis) says nothing.
	"Condition": {"active", "recurrence", "relapse"},
	// allergyintolerance-clinical: an allergy without clinicalStatus (an
	// export that sends only verificationStatus) still warns.
	"AllergyIntolerance": {"", "active"},
	// medicationrequest-status: draft is not yet prescribed, unknown says
	// nothing; on-hold (say an anticoagulant paused for surgery) still
	// matters in an emergency.
	"MedicationRequest": {"active", "on-hold"},
	// medication-statement-status: intended is about to be taken.
	"MedicationStatement": {"active", "intended", "on-hold"},
	// medication-admin-status: an administration under way (an infusion),
	// not one that is completed.
	"MedicationAdministration": {"in-progress", "on-hold"},
	// immunization-status, immunization-evaluation-status; a
	// recommendation has no status.
	"Immunization":               {"", "completed"},
	"ImmunizationEvaluation":     {"", "completed"},
	"ImmunizationRecommendation": {""},
	// consent-state-codes and document-reference-status: a directive
	// revoked (inactive), not yet in force (draft, proposed), rejected or
	// replaced (superseded) is not the patient's directive.
	"Consent":           {"", "active"},
	"DocumentReference": {"", "current"},
}

// Current reports whether a resource of type typ whose Resource.Status is
// status holds now, as the emergency summary reads it (currentStatuses).
// It is false for every other type: an AdverseEvent is an event, not a
// problem the patient has; a MedicationDispense's status is about the
// dispensing; and a Medication's status is about the product, not whether
// the patient takes it (the vault counts a Medication current when a
// current medication record references it).
func Current(typ, status string) bool {
	ss, ok := currentStatuses[typ]
	return ok && slices.Contains(ss, status)
}
