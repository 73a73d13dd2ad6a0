package fhir

import (
	"strings"

	"github.com/medvault/medvault/vault/record"
)

// typeCategories maps resource types to categories. Observation,
// DiagnosticReport, Consent and DocumentReference are refined by their
// category (see CategoryOf). Every other valid type maps to record.Other.
// CATEGORIES.md holds the same table; a test checks they agree.
var typeCategories = map[string]record.Category{
	"Patient":       record.Demographics,
	"RelatedPerson": record.Demographics,
	"Person":        record.Demographics,

	"AllergyIntolerance": record.Allergies,

	"Condition":    record.Problems,
	"AdverseEvent": record.Problems,

	"Medication":               record.Medications,
	"MedicationRequest":        record.Medications,
	"MedicationStatement":      record.Medications,
	"MedicationAdministration": record.Medications,
	"MedicationDispense":       record.Medications,

	"Immunization":               record.Immunizations,
	"ImmunizationEvaluation":     record.Immunizations,
	"ImmunizationRecommendation": record.Immunizations,

	"Observation":      record.Labs,  // refined by category
	"DiagnosticReport": record.Notes, // refined by category
	"Specimen":         record.Labs,

	"ImagingStudy": record.Imaging,
	"Media":        record.Imaging,

	"Procedure": record.Procedures,

	"Encounter":     record.Encounters,
	"EpisodeOfCare": record.Encounters,
	"Appointment":   record.Encounters,

	"CarePlan":       record.CarePlans,
	"CareTeam":       record.CarePlans,
	"Goal":           record.CarePlans,
	"ServiceRequest": record.CarePlans,
	"NutritionOrder": record.CarePlans,
	"RequestGroup":   record.CarePlans,

	"DocumentReference":     record.Notes, // advance directives refined by category
	"Composition":           record.Notes,
	"DocumentManifest":      record.Notes,
	"ClinicalImpression":    record.Notes,
	"RiskAssessment":        record.Notes,
	"Communication":         record.Notes,
	"QuestionnaireResponse": record.Notes,

	"Device":             record.Devices,
	"DeviceRequest":      record.Devices,
	"DeviceUseStatement": record.Devices,
	"DeviceMetric":       record.Devices,
	"VisionPrescription": record.Devices,

	"Claim":                       record.Billing,
	"ClaimResponse":               record.Billing,
	"ExplanationOfBenefit":        record.Billing,
	"Coverage":                    record.Billing,
	"CoverageEligibilityRequest":  record.Billing,
	"CoverageEligibilityResponse": record.Billing,
	"Account":                     record.Billing,
	"ChargeItem":                  record.Billing,
	"Invoice":                     record.Billing,
	"PaymentNotice":               record.Billing,
	"PaymentReconciliation":       record.Billing,

	"MolecularSequence": record.Genomics,

	"Consent": record.Other, // advance directives refined by category
}

// observationCategories maps the codes of
// http://terminology.hl7.org/CodeSystem/observation-category.
var observationCategories = map[string]record.Category{
	"laboratory":     record.Labs,
	"vital-signs":    record.Vitals,
	"social-history": record.SocialHistory,
	"survey":         record.SocialHistory,
	"imaging":        record.Imaging,
	"procedure":      record.Procedures,
	"therapy":        record.Procedures,
	"activity":       record.Vitals,
	"exam":           record.Notes,
}

// vitalSignCodes are the LOINC codes of the FHIR R4 vital signs profiles.
var vitalSignCodes = map[string]bool{
	"85353-1": true, // vital signs panel
	"9279-1":  true, // respiratory rate
	"8867-4":  true, // heart rate
	"2708-6":  true, // oxygen saturation
	"59408-5": true, // oxygen saturation by pulse oximetry
	"8310-5":  true, // body temperature
	"8302-2":  true, // body height
	"8306-3":  true, // body height, lying
	"9843-4":  true, // head circumference
	"8287-5":  true, // head circumference by tape
	"29463-7": true, // body weight
	"39156-5": true, // body mass index
	"85354-9": true, // blood pressure panel
	"8480-6":  true, // systolic blood pressure
	"8462-4":  true, // diastolic blood pressure
}

// reportCategories maps DiagnosticReport category codes: HL7 v2 table 0074
// (diagnostic service section) and the LOINC groups US Core uses for
// report notes.
var reportCategories = map[string]record.Category{
	// laboratory sections
	"LAB": record.Labs, "CH": record.Labs, "HM": record.Labs, "MB": record.Labs,
	"MCB": record.Labs, "SR": record.Labs, "IMM": record.Labs, "BLB": record.Labs,
	"CP": record.Labs, "SP": record.Labs, "PAT": record.Labs, "TX": record.Labs,
	"VR": record.Labs, "URN": record.Labs, "HLA": record.Labs,
	// imaging sections
	"RAD": record.Imaging, "RX": record.Imaging, "CT": record.Imaging, "NMR": record.Imaging,
	"NMS": record.Imaging, "RUS": record.Imaging, "VUS": record.Imaging, "OUS": record.Imaging,
	"XRC": record.Imaging, "CUS": record.Imaging,
	// cardiac catheterization
	"CTH": record.Procedures,
	// genetics
	"GE": record.Genomics, "CG": record.Genomics,
	// US Core report categories (LOINC)
	"LP29684-5": record.Imaging, // Radiology
	"LP7839-6":  record.Labs,    // Pathology
	"LP29708-2": record.Notes,   // Cardiology
}

// advanceDirectiveCodes are category/scope/type codes that mark a Consent
// or DocumentReference as an advance directive. The LOINC document types
// after the first two are those of the PACIO Advance Directive Interoperability
// IG's "Advance Directive Categories" value set (VSAC
// 2.16.840.1.113883.11.20.9.69.4): a directive typed by one of them, with a
// category such as US Core's clinical-note, was filed as a note.
var advanceDirectiveCodes = map[string]string{
	"adr":      sysConsentScope,    // advanced care directive
	"acd":      sysConsentCategory, // advance directive
	"dnr":      sysConsentCategory, // do not resuscitate
	"polst":    sysConsentCategory, // POLST
	"hcd":      sysConsentCategory, // health care directive
	"42348-3":  sysLOINC,           // Advance directives
	"75320-2":  sysLOINC,           // Advance directive
	"64298-3":  sysLOINC,           // Power of attorney (healthcare agent)
	"81334-5":  sysLOINC,           // Patient Personal advance care plan
	"86533-7":  sysLOINC,           // Patient Living will
	"92664-2":  sysLOINC,           // Power of attorney and Living will
	"93037-0":  sysLOINC,           // Portable medical order form (POLST, MOLST and the like)
	"100821-8": sysLOINC,           // National POLST form: portable medical order panel
}

// The code systems of the consent codes above (R4).
const (
	sysConsentScope    = "http://terminology.hl7.org/CodeSystem/consentscope"
	sysConsentCategory = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
)

// CategoryOf returns the medvault category of a resource of type typ with
// the given category codings and clinical codings. An unknown but valid
// type maps to record.Other.
func CategoryOf(typ string, categories, codes []Coding) record.Category {
	switch typ {
	case "Observation":
		for _, c := range categories {
			if cat, ok := observationCategories[strings.TrimSpace(c.Code)]; ok {
				return cat
			}
		}
		// No category (it is optional): a LOINC-coded result is a vital
		// sign if its code is one of the FHIR vital signs (whose profile
		// requires the category anyway), else a lab result. Left in other,
		// the results of a lab report were out of every lab grant while
		// the report was in.
		for _, c := range codes {
			if c.System == sysLOINC {
				if vitalSignCodes[strings.TrimSpace(c.Code)] {
					return record.Vitals
				}
				return record.Labs
			}
		}
		return record.Other
	case "DiagnosticReport":
		for _, c := range categories {
			if cat, ok := reportCategories[strings.TrimSpace(c.Code)]; ok {
				return cat
			}
		}
		return record.Notes
	case "Consent":
		if hasAdvanceDirective(categories) || hasAdvanceDirective(codes) {
			return record.AdvanceDirectives
		}
		return record.Other
	case "DocumentReference":
		if hasAdvanceDirective(categories) || hasAdvanceDirective(codes) {
			return record.AdvanceDirectives
		}
		return record.Notes
	}
	if c, ok := typeCategories[typ]; ok {
		return c
	}
	return record.Other
}

// hasAdvanceDirective reports whether a coding of cs is one of
// advanceDirectiveCodes in its own code system, or with no system (an
// export that leaves it out): "acd" in a hospital's local system may mean
// anything.
func hasAdvanceDirective(cs []Coding) bool {
	for _, c := range cs {
		sys, ok := advanceDirectiveCodes[strings.TrimSpace(c.Code)]
		s := strings.TrimSpace(c.System)
		if cs := canonicalSystem(s); cs != "" {
			s = cs // LOINC by its OID
		}
		if ok && (s == "" || s == sys) {
			return true
		}
	}
	return false
}
