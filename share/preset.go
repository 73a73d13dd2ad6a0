package share

import (
	"fmt"
	"slices"
	"strings"

	"github.com/medvault/medvault/vault/record"
)

// Preset is a ready-made scope and purpose for a role a patient
// understands. Presets never include a sensitivity label: a grant includes
// sensitive records only when the patient names each label.
type Preset struct {
	Name        string
	Description string
	Scope       Scope
	Purpose     Purpose
}

var presets = []Preset{
	{
		Name:        "nurse",
		Description: "medications, allergies, vitals and immunizations, for nursing care",
		Scope:       Scope{Categories: []record.Category{record.Medications, record.Allergies, record.Vitals, record.Immunizations}},
		Purpose:     Treatment,
	},
	{
		Name:        "emergency",
		Description: "the emergency summary: allergies, active medications, active problems, immunizations, advance directives",
		Scope:       Scope{EmergencySummary: true},
		Purpose:     EmergencyTreatment,
	},
	{
		Name:        "primary-care",
		Description: "the clinical record a family doctor needs: demographics, problems, medications, allergies, immunizations, vitals, labs, imaging, procedures, encounters, care plans, notes, devices, advance directives",
		Scope: Scope{Categories: []record.Category{
			record.Demographics, record.Problems, record.Medications, record.Allergies, record.Immunizations,
			record.Vitals, record.Labs, record.Imaging, record.Procedures, record.Encounters,
			record.CarePlans, record.Notes, record.Devices, record.AdvanceDirectives,
		}},
		Purpose: Treatment,
	},
	{
		Name:        "pharmacist",
		Description: "medications and allergies, to dispense safely and check interactions",
		Scope:       Scope{Categories: []record.Category{record.Medications, record.Allergies}},
		Purpose:     Treatment,
	},
	{
		Name:        "lab",
		Description: "lab results only, for a lab or a specialist reviewing them",
		Scope:       Scope{Categories: []record.Category{record.Labs}},
		Purpose:     Treatment,
	},
	{
		Name:        "billing",
		Description: "billing records only (claims, coverage), for payment",
		Scope:       Scope{Categories: []record.Category{record.Billing}},
		Purpose:     Payment,
	},
}

// Presets returns the presets, in display order.
func Presets() []Preset {
	out := make([]Preset, len(presets))
	for i, p := range presets {
		out[i] = p.clone()
	}
	return out
}

// LookupPreset returns the preset with the given name (case-insensitive).
func LookupPreset(name string) (Preset, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, p := range presets {
		if p.Name == n {
			return p.clone(), nil
		}
	}
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.Name
	}
	return Preset{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownPreset, truncate(name), strings.Join(names, ", "))
}

func (p Preset) clone() Preset {
	p.Scope.Categories = slices.Clone(p.Scope.Categories)
	p.Scope.Records = slices.Clone(p.Scope.Records)
	return p
}
