package share

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/identity"
)

func fhirBundle(entries ...string) string {
	return `{"resourceType":"Bundle","type":"collection","entry":[` + strings.Join(entries, ",") + `]}`
}

func condition(id, clinical, verification, text string) string {
	s := `{"resource":{"resourceType":"Condition","id":"` + id + `","code":{"text":"` + text + `"}`
	if clinical != "" {
		s += `,"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"` + clinical + `"}]}`
	}
	if verification != "" {
		s += `,"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"` + verification + `"}]}`
	}
	return s + `}}`
}

// The emergency summary lists what holds now: not a Condition or allergy
// entered in error or refuted, and not an older version of a resource a
// newer one resolved.
func TestEmergencySummaryCurrentOnly(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	first := fhirBundle(
		condition("htn", "active", "confirmed", "Hypertension"),
		condition("oops", "", "entered-in-error", "Wrong patient's diabetes"),
		condition("asthma", "active", "refuted", "Asthma"),
		condition("ckd", "active", "", "Chronic kidney disease"),
		`{"resource":{"resourceType":"AllergyIntolerance","id":"pen","code":{"text":"Penicillin"},"verificationStatus":{"coding":[{"code":"confirmed"}]}}}`,
		`{"resource":{"resourceType":"AllergyIntolerance","id":"nut","code":{"text":"Peanut"},"verificationStatus":{"coding":[{"code":"entered-in-error"}]}}}`,
	)
	if _, err := patient.Import("first.json", strings.NewReader(first), nil); err != nil {
		t.Fatal(err)
	}
	// A later version: the hypertension resolved.
	if _, err := patient.Import("later.json", strings.NewReader(fhirBundle(condition("htn", "resolved", "confirmed", "Hypertension"))), nil); err != nil {
		t.Fatal(err)
	}
	infos, err := RecordInfos(patient)
	if err != nil {
		t.Fatal(err)
	}
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	g, err := IssueGrant(patient.Owner(), GrantParams{Audience: provider.Owner().ID(), Vault: VaultID(patient.VaultID()),
		Scope: Scope{EmergencySummary: true}, Purpose: "ETREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range Select(g, infos).Items {
		m, err := patient.Show(id)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Title)
	}
	slices.Sort(got)
	if want := []string{"Chronic kidney disease", "Penicillin"}; !slices.Equal(got, want) {
		t.Fatalf("emergency summary lists %q, want %q", got, want)
	}
}
