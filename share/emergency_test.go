package share

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
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

	// The resolved problem's first version, asked for by ID, is held to
	// the same rule: the node's lookup marks it Superseded, and the
	// emergency summary does not cover it.
	var old record.ID
	for _, in := range infos {
		if in.Superseded {
			old = in.ID
		}
	}
	if old == (record.ID{}) {
		t.Fatal("no superseded record among the infos")
	}
	stop := errors.New("stop")
	_, err = patient.Admit(func(st *vault.AdmitState) (vault.Decision, error) {
		info, ok, err := admitState(patient, st).Lookup(old)
		switch {
		case err != nil || !ok:
			t.Errorf("lookup of the first version: %v %v", ok, err)
		case !info.Superseded:
			t.Error("the first version of a resolved problem, looked up by ID, is not Superseded")
		case g.sc.covers(&info) == ReasonAllowed:
			t.Error("the emergency summary covers the first version of a resolved problem asked for by ID")
		}
		return vault.Decision{}, stop
	})
	if !errors.Is(err, stop) {
		t.Fatal(err)
	}
	if sup, err := patient.Superseded(mustShow(t, patient, old)); err != nil || !sup {
		t.Errorf("Vault.Superseded of the first version: %v %v", sup, err)
	}
}

func mustShow(t *testing.T, v *vault.Vault, id record.ID) *vault.Meta {
	t.Helper()
	m, err := v.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
