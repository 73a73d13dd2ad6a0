package share

import (
	"fmt"
	"strings"
)

// Purpose is a purpose of use from the HL7 v3 PurposeOfUse value set
// (code system 2.16.840.1.113883.5.8, ActReason). A grant carries exactly
// one. The purpose is a statement the patient signs and the provider
// accepts; medvault records it and shows it, it cannot enforce it.
type Purpose string

// The purposes of use medvault knows. Their one-byte codes in the binary
// form are fixed forever (see TOKEN.md).
const (
	Treatment          Purpose = "TREAT"    // treatment
	EmergencyTreatment Purpose = "ETREAT"   // emergency treatment
	CoordinationOfCare Purpose = "COC"      // coordination of care
	CareManagement     Purpose = "CAREMGT"  // care management
	Payment            Purpose = "HPAYMT"   // healthcare payment
	Operations         Purpose = "HOPERAT"  // healthcare operations
	Research           Purpose = "HRESCH"   // healthcare research
	ClinicalTrial      Purpose = "CLINTRCH" // clinical trial research
	PatientRequest     Purpose = "PATRQT"   // patient requested
	FamilyRequest      Purpose = "FAMRQT"   // family requested
	PowerOfAttorney    Purpose = "PWATRNY"  // power of attorney
	SupportNetwork     Purpose = "SUPNWK"   // support network
	PublicHealth       Purpose = "PUBHLTH"  // public health
	Legal              Purpose = "HLEGAL"   // legal
	Disaster           Purpose = "DISASTER" // disaster
)

// PurposeInfo describes one purpose of use for help texts.
type PurposeInfo struct {
	Purpose     Purpose
	Name        string // HL7 display name
	Description string // what it means, in words a patient understands
	code        byte
}

var purposes = []PurposeInfo{
	{Treatment, "treatment", "to treat you: diagnosis, care and follow-up by this provider", 1},
	{EmergencyTreatment, "emergency treatment", "to treat you in an emergency, for immediately needed care", 2},
	{CoordinationOfCare, "coordination of care", "to coordinate your care between the providers who treat you", 3},
	{CareManagement, "care management", "to manage a care plan or a chronic condition with you", 4},
	{Payment, "healthcare payment", "to bill, claim or pay for care you received", 5},
	{Operations, "healthcare operations", "for the provider's own operations: quality review, audit, training", 6},
	{Research, "healthcare research", "for research you agreed to take part in", 7},
	{ClinicalTrial, "clinical trial research", "for a clinical trial you are enrolled in", 8},
	{PatientRequest, "patient requested", "because you asked for it yourself (for example to another of your own devices or a service you use)", 9},
	{FamilyRequest, "family requested", "because a family member asked, with your consent", 10},
	{PowerOfAttorney, "power of attorney", "for someone who holds power of attorney for your health care", 11},
	{SupportNetwork, "support network", "for a caregiver or another person in your support network", 12},
	{PublicHealth, "public health", "for public health reporting or surveillance", 13},
	{Legal, "legal", "for a legal matter (court order, lawyer, insurer dispute)", 14},
	{Disaster, "disaster", "to locate or treat you during a disaster", 15},
}

// Purposes returns every known purpose of use, in display order.
func Purposes() []PurposeInfo { return append([]PurposeInfo(nil), purposes...) }

// Valid reports whether p is a known purpose of use.
func (p Purpose) Valid() bool { return p.code() != 0 }

func (p Purpose) code() byte {
	for _, i := range purposes {
		if i.Purpose == p {
			return i.code
		}
	}
	return 0
}

func purposeFromCode(c byte) (Purpose, bool) {
	for _, i := range purposes {
		if i.code == c {
			return i.Purpose, true
		}
	}
	return "", false
}

// Describe returns the purpose's description, or "" when it is unknown.
func (p Purpose) Describe() string {
	for _, i := range purposes {
		if i.Purpose == p {
			return i.Description
		}
	}
	return ""
}

// ParsePurpose parses a purpose of use code, case-insensitively ("treat"
// and "TREAT" both give Treatment).
func ParsePurpose(s string) (Purpose, error) {
	p := Purpose(strings.ToUpper(strings.TrimSpace(s)))
	if !p.Valid() {
		if len(s) > 32 {
			s = s[:32] + "..."
		}
		return "", fmt.Errorf("%w %q (known: %s)", ErrUnknownPurpose, s, purposeList())
	}
	return p, nil
}

func purposeList() string {
	s := make([]string, len(purposes))
	for i, p := range purposes {
		s[i] = string(p.Purpose)
	}
	return strings.Join(s, ", ")
}
