package share

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
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

// emergencySummary returns the records an emergency-summary grant naming
// labels covers in v, as "Type/id" (or the title of a record added by
// hand), sorted.
func emergencySummary(t *testing.T, v *vault.Vault, labels ...record.Label) []string {
	t.Helper()
	infos, err := RecordInfos(v)
	if err != nil {
		t.Fatal(err)
	}
	g, err := IssueGrant(v.Owner(), GrantParams{Audience: seedSigner(0x02).ID(), Vault: VaultID(v.VaultID()),
		Scope: Scope{EmergencySummary: true}, Labels: labels, Purpose: EmergencyTreatment, Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range Select(g, infos).Items {
		m := mustShow(t, v, id)
		if m.FHIR == nil {
			got = append(got, m.Title)
			continue
		}
		got = append(got, m.FHIR.Type+"/"+m.FHIR.ID)
	}
	slices.Sort(got)
	return got
}

// The emergency summary's "active medications" and "active problems" are
// read from each resource type's own status: not a Medication whose only
// prescription was stopped (Medication.status is about the product), not
// a draft prescription, not an AdverseEvent from 2009, not a dispense,
// and not an allergy resolved or a directive revoked.
func TestEmergencySummaryActiveOnly(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	const subj = `"subject":{"reference":"Patient/p"}`
	b := fhirBundle(
		// In the summary.
		`{"resource":{"resourceType":"Medication","id":"metformin","status":"active","code":{"text":"metformin 500 MG Oral Tablet"}}}`,
		`{"resource":{"resourceType":"MedicationRequest","id":"rx-metformin","status":"active","intent":"order",`+subj+`,"medicationReference":{"reference":"Medication/metformin"}}}`,
		`{"resource":{"resourceType":"MedicationRequest","id":"rx-warfarin","status":"on-hold","intent":"order",`+subj+`,"medicationCodeableConcept":{"text":"warfarin, held for surgery"}}}`,
		`{"resource":{"resourceType":"MedicationStatement","id":"st-aspirin","status":"intended",`+subj+`,"medicationCodeableConcept":{"text":"aspirin"}}}`,
		`{"resource":{"resourceType":"MedicationAdministration","id":"adm-heparin","status":"in-progress",`+subj+`,"medicationCodeableConcept":{"text":"heparin infusion"}}}`,
		condition("htn", "active", "confirmed", "Hypertension"),
		condition("asthma", "relapse", "", "Asthma"),
		`{"resource":{"resourceType":"AllergyIntolerance","id":"pen","clinicalStatus":{"coding":[{"code":"active"}]},"code":{"text":"Penicillin"}}}`,
		`{"resource":{"resourceType":"Immunization","id":"flu","status":"completed","vaccineCode":{"text":"influenza"},"patient":{"reference":"Patient/p"}}}`,
		`{"resource":{"resourceType":"Consent","id":"dnr","status":"active","scope":{"coding":[{"code":"adr"}]},"category":[{"coding":[{"code":"dnr"}]}]}}`,
		`{"resource":{"resourceType":"DocumentReference","id":"will","status":"current","type":{"coding":[{"system":"http://loinc.org","code":"86533-7"}]}}}`,
		// Not in it.
		`{"resource":{"resourceType":"Medication","id":"sertraline","status":"active","code":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"312938","display":"sertraline 100 MG Oral Tablet"}]}}}`,
		`{"resource":{"resourceType":"MedicationRequest","id":"rx-sertraline","status":"stopped","intent":"order",`+subj+`,"medicationReference":{"reference":"Medication/sertraline","display":"sertraline (stopped rx)"}}}`,
		`{"resource":{"resourceType":"MedicationRequest","id":"rx-draft","status":"draft","intent":"proposal",`+subj+`,"medicationCodeableConcept":{"text":"draft proposal never prescribed"}}}`,
		`{"resource":{"resourceType":"MedicationRequest","id":"rx-unknown","status":"unknown","intent":"order",`+subj+`,"medicationCodeableConcept":{"text":"status unknown"}}}`,
		`{"resource":{"resourceType":"MedicationDispense","id":"disp","status":"completed",`+subj+`,"medicationReference":{"reference":"Medication/sertraline"}}}`,
		`{"resource":{"resourceType":"MedicationStatement","id":"st-old","status":"completed",`+subj+`,"medicationCodeableConcept":{"text":"amoxicillin 2015"}}}`,
		`{"resource":{"resourceType":"MedicationAdministration","id":"adm-old","status":"completed",`+subj+`,"medicationReference":{"reference":"Medication/sertraline"}}}`,
		`{"resource":{"resourceType":"AdverseEvent","id":"ae1","actuality":"actual",`+subj+`,"date":"2009-01-01","event":{"text":"Fall in 2009"}}}`,
		condition("sinusitis", "resolved", "confirmed", "Viral sinusitis"),
		condition("visit-dx", "", "", "Encounter diagnosis without clinical status"),
		`{"resource":{"resourceType":"AllergyIntolerance","id":"latex","clinicalStatus":{"coding":[{"code":"resolved"}]},"code":{"text":"Latex"}}}`,
		`{"resource":{"resourceType":"AllergyIntolerance","id":"egg","clinicalStatus":{"coding":[{"code":"inactive"}]},"code":{"text":"Egg"}}}`,
		`{"resource":{"resourceType":"Consent","id":"old-dnr","status":"inactive","category":[{"coding":[{"code":"dnr"}]}]}}`,
		`{"resource":{"resourceType":"DocumentReference","id":"old-will","status":"superseded","type":{"coding":[{"system":"http://loinc.org","code":"86533-7"}]}}}`,
	)
	if _, err := patient.Import("b.json", strings.NewReader(b), nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []vault.NewRecord{{Title: "current meds.pdf", Category: record.Medications}, {Title: "peanut allergy card.pdf", Category: record.Allergies}} {
		if _, err := patient.Add(strings.NewReader("scan"), n); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"AllergyIntolerance/pen", "Condition/asthma", "Condition/htn", "Consent/dnr", "DocumentReference/will",
		"Immunization/flu", "Medication/metformin", "MedicationAdministration/adm-heparin",
		"MedicationRequest/rx-metformin", "MedicationRequest/rx-warfarin", "MedicationStatement/st-aspirin",
		"current meds.pdf", "peanut allergy card.pdf",
	}
	if got := emergencySummary(t, patient); !slices.Equal(got, want) {
		t.Errorf("emergency summary lists\n%q\nwant\n%q", got, want)
	}

	// Stopped in a later version: the prescription and the Medication it
	// made current leave the summary.
	later := `{"resource":{"resourceType":"MedicationRequest","id":"rx-metformin","status":"stopped","intent":"order",` + subj + `,"medicationReference":{"reference":"Medication/metformin"}}}`
	if _, err := patient.Import("later.json", strings.NewReader(fhirBundle(later)), nil); err != nil {
		t.Fatal(err)
	}
	got := emergencySummary(t, patient)
	if slices.Contains(got, "Medication/metformin") || slices.Contains(got, "MedicationRequest/rx-metformin") {
		t.Errorf("after the prescription stopped, the emergency summary lists %q", got)
	}
}

// A Medication is in the emergency summary only with a prescription the
// grant covers: sent alone, it would tell of a prescription withheld for
// its label. Asked for by ID, it is held to the same rule.
func TestEmergencySummaryMedicationGoesWithItsPrescription(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	b := fhirBundle(
		`{"resource":{"resourceType":"Medication","id":"sertraline","code":{"text":"sertraline 100 MG Oral Tablet"}}}`,
		`{"resource":{"resourceType":"MedicationRequest","id":"rx","status":"active","intent":"order","subject":{"reference":"Patient/p"},`+
			`"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},"medicationReference":{"reference":"Medication/sertraline"}}}`,
	)
	if _, err := patient.Import("b.json", strings.NewReader(b), nil); err != nil {
		t.Fatal(err)
	}
	if got := emergencySummary(t, patient); len(got) != 0 {
		t.Errorf("without MH, the emergency summary lists %q; want nothing", got)
	}
	want := []string{"Medication/sertraline", "MedicationRequest/rx"}
	if got := emergencySummary(t, patient, record.MH); !slices.Equal(got, want) {
		t.Errorf("with MH, the emergency summary lists %q, want %q", got, want)
	}

	infos, err := RecordInfos(patient)
	if err != nil {
		t.Fatal(err)
	}
	var med record.ID
	for _, in := range infos {
		if len(in.UsedBy) > 0 {
			med = in.ID
		}
	}
	if med == (record.ID{}) {
		t.Fatal("no record is a Medication in use")
	}
	g, err := IssueGrant(patient.Owner(), GrantParams{Audience: seedSigner(0x02).ID(), Vault: VaultID(patient.VaultID()),
		Scope: Scope{EmergencySummary: true}, Purpose: EmergencyTreatment, Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	_, err = patient.Admit(func(st *vault.AdmitState) (vault.Decision, error) {
		info, ok, err := admitState(patient, st).Lookup(med)
		switch {
		case err != nil || !ok:
			t.Errorf("lookup of the Medication: %v %v", ok, err)
		case !info.Active || len(info.UsedBy) != 1:
			t.Errorf("the Medication looked up by ID: Active %v, UsedBy %v", info.Active, info.UsedBy)
		case g.sc.covers(&info) == ReasonAllowed:
			t.Error("a grant without MH covers the Medication of an MH prescription asked for by ID")
		}
		return vault.Decision{}, stop
	})
	if !errors.Is(err, stop) {
		t.Fatal(err)
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

// sharedFHIR holds public FHIR test data outside the repository (see
// /work/shared/fhir/README.md); tests that read it skip when it is absent.
const sharedFHIR = "../../shared/fhir"

// On Synthea's patients the emergency summary is every allergy not
// resolved, every active prescription, every active condition and every
// immunization given, and nothing else: no stopped prescription, no
// resolved condition, no encounter or observation.
func TestEmergencySummarySynthea(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(sharedFHIR, "synthea-r4", "[A-Z]*_*.json"))
	if len(files) == 0 {
		t.Skip("../shared/fhir not present: skipping the emergency summary of real Synthea data")
	}
	patient := openVault(t, "Ada", identity.Patient)
	var want []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := patient.Import(filepath.Base(f), bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				FullURL  string `json:"fullUrl"`
				Resource struct {
					Type           string `json:"resourceType"`
					Status         string `json:"status"`
					ClinicalStatus struct {
						Coding []struct{ Code string } `json:"coding"`
					} `json:"clinicalStatus"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entry {
			r := e.Resource
			clinical := ""
			if len(r.ClinicalStatus.Coding) > 0 {
				clinical = r.ClinicalStatus.Coding[0].Code
			}
			if r.Type == "Condition" && clinical == "active" || r.Type == "AllergyIntolerance" && clinical == "active" ||
				r.Type == "MedicationRequest" && r.Status == "active" || r.Type == "Immunization" && r.Status == "completed" {
				want = append(want, r.Type+" "+e.FullURL)
			}
		}
	}
	infos, err := RecordInfos(patient)
	if err != nil {
		t.Fatal(err)
	}
	g, err := IssueGrant(patient.Owner(), GrantParams{Audience: seedSigner(0x02).ID(), Vault: VaultID(patient.VaultID()),
		Scope: Scope{EmergencySummary: true}, Labels: record.Labels(), Purpose: EmergencyTreatment, Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range Select(g, infos).Items {
		m := mustShow(t, patient, id)
		got = append(got, m.FHIR.Type+" "+m.FHIR.FullURL)
	}
	slices.Sort(got)
	slices.Sort(want)
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("emergency summary of the Synthea patients: %d records, want %d\ngot  %q\nwant %q", len(got), len(want), got, want)
	}
}
