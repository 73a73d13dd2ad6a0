package fhir

import (
	"bytes"
	"cmp"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

// sharedDir holds public FHIR test data outside the repository; see
// /work/shared/fhir/README.md. FHIR_DATA=DIR names another folder, as for
// docs/interop/validate.sh. Tests that need it skip when it is absent.
var sharedDir = cmp.Or(os.Getenv("FHIR_DATA"), "../../../shared/fhir")

func sharedFiles(t testing.TB, sub string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(sharedDir, sub, "*.json"))
	if len(files) == 0 {
		t.Skip("../shared/fhir not present: public FHIR test data (Synthea, HL7 examples) is optional")
	}
	return files
}

type batch struct {
	name string
	data []byte
	rs   []*Resource
}

func readSynthea(t testing.TB) map[string]*batch {
	t.Helper()
	out := map[string]*batch{}
	for _, f := range sharedFiles(t, "synthea-r4") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		rs, err := ReadAll(bytes.NewReader(data), name, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		Propagate(rs)
		short, _, _ := strings.Cut(name, "_")
		if strings.HasPrefix(name, "hospital") || strings.HasPrefix(name, "practitioner") {
			short = strings.TrimRight(strings.TrimSuffix(name, ".json"), "0123456789")
		}
		out[short] = &batch{name, data, rs}
	}
	return out
}

// TestSyntheaCategories asserts the category counts of every Synthea
// bundle. The expected numbers were checked against an independent count
// of the JSON with a separate script.
func TestSyntheaCategories(t *testing.T) {
	want := map[string]map[record.Category]int{
		"Chet":                    {"billing": 22, "demographics": 1, "encounters": 10, "imaging": 1, "immunizations": 3, "labs": 25, "medications": 2, "notes": 1, "other": 4, "problems": 4, "procedures": 8, "social-history": 21, "vitals": 15},
		"Florida":                 {"billing": 49, "care-plans": 2, "demographics": 1, "encounters": 22, "immunizations": 4, "labs": 39, "medications": 5, "other": 2, "problems": 5, "procedures": 15, "social-history": 3, "vitals": 15},
		"Fredrick":                {"billing": 21, "care-plans": 2, "demographics": 1, "encounters": 9, "imaging": 1, "immunizations": 6, "labs": 44, "medications": 3, "other": 4, "problems": 4, "procedures": 5, "social-history": 4, "vitals": 20},
		"Gilberto":                {"billing": 50, "care-plans": 9, "demographics": 1, "encounters": 24, "immunizations": 11, "labs": 131, "medications": 2, "notes": 1, "other": 4, "problems": 7, "procedures": 10, "social-history": 13, "vitals": 46},
		"Jonah":                   {"billing": 35, "care-plans": 4, "demographics": 1, "encounters": 15, "immunizations": 9, "labs": 35, "medications": 5, "notes": 1, "other": 4, "problems": 5, "procedures": 5, "social-history": 9, "vitals": 26},
		"Kermit":                  {"allergies": 3, "billing": 30, "care-plans": 2, "demographics": 1, "encounters": 12, "immunizations": 8, "labs": 15, "medications": 6, "other": 2, "problems": 6, "procedures": 2, "social-history": 5, "vitals": 25},
		"Luigi":                   {"billing": 8, "demographics": 1, "encounters": 4, "immunizations": 12, "labs": 12, "other": 2, "procedures": 2, "social-history": 4, "vitals": 16},
		"Milan":                   {"billing": 33, "care-plans": 12, "demographics": 1, "encounters": 15, "immunizations": 9, "labs": 99, "medications": 3, "other": 2, "problems": 5, "procedures": 5, "social-history": 6, "vitals": 30},
		"hospitalInformation":     {"other": 102},
		"practitionerInformation": {"other": 102},
	}
	bs := readSynthea(t)
	total := 0
	for name, b := range bs {
		got := map[record.Category]int{}
		for _, r := range b.rs {
			got[r.Category]++
		}
		total += len(b.rs)
		if !reflect.DeepEqual(got, want[name]) {
			t.Errorf("%s: categories %v\nwant %v", name, got, want[name])
		}
	}
	if total != 1468 {
		t.Errorf("%d resources in all, want 1468", total)
	}
}

// TestSyntheaRawExact compares every resource's Raw with the bytes an
// independent json.Unmarshal into json.RawMessage keeps for it, and with
// the file at Offset.
func TestSyntheaRawExact(t *testing.T) {
	for name, b := range readSynthea(t) {
		var doc struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b.data, &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Entry) != len(b.rs) {
			t.Fatalf("%s: %d entries, %d resources", name, len(doc.Entry), len(b.rs))
		}
		for i, r := range b.rs {
			if !bytes.Equal(r.Raw, doc.Entry[i].Resource) || !bytes.Equal(b.data[r.Offset:r.Offset+int64(len(r.Raw))], r.Raw) {
				t.Fatalf("%s entry %d: Raw differs from the input", name, i)
			}
			// What verify reads back from a record's content.
			if got := References(r.Raw); !slices.Equal(got, r.References) {
				t.Fatalf("%s entry %d: References(Raw) = %q, Next gave %q", name, i, got, r.References)
			}
		}
	}
}

// labelled returns the titles of the resources of type typ that carry l,
// and of those that do not.
func labelled(rs []*Resource, typ string, l record.Label) (with, without []string) {
	for _, r := range rs {
		if r.Type != typ {
			continue
		}
		if r.HasLabel(l) {
			with = append(with, r.Title)
		} else {
			without = append(without, r.Title)
		}
	}
	return with, without
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestSyntheaLabels(t *testing.T) {
	bs := readSynthea(t)
	type check struct {
		patient, typ, title string
		label               record.Label
		want                bool
	}
	checks := []check{
		// Milan_Beatty: major depression, its encounters, plans, prescriptions and claims
		{"Milan", "Condition", "Major depression disorder", record.MH, true},
		{"Milan", "Encounter", "Initial Psychiatric Interview with mental status evaluation", record.MH, true},
		{"Milan", "Encounter", "Follow-up encounter", record.MH, true},
		{"Milan", "CarePlan", "Major depressive disorder clinical management plan", record.MH, true},
		{"Milan", "MedicationRequest", "Fluoxetine 25MG", record.MH, true},
		{"Milan", "Claim", "Claim: Initial Psychiatric Interview with mental status evaluation", record.MH, true},
		{"Milan", "ExplanationOfBenefit", "Explanation of benefit: Initial Psychiatric Interview with mental status evaluation", record.MH, true},
		{"Milan", "Condition", "Viral sinusitis (disorder)", record.MH, false},
		{"Milan", "Condition", "Prediabetes", record.MH, false},
		{"Milan", "Condition", "Anemia (disorder)", record.MH, false},
		{"Milan", "Condition", "Acute bronchitis (disorder)", record.MH, false},
		// Gilberto_Orosco: opioid abuse and its claim; PTSD; familial early-onset Alzheimer's
		{"Gilberto", "Condition", "Opioid abuse (disorder)", record.SUD, true},
		{"Gilberto", "Encounter", "Initial Psychiatric Interview with mental status evaluation", record.MH, true},
		{"Gilberto", "MedicationRequest", "Sertraline 100MG", record.MH, true},
		{"Gilberto", "Condition", "Familial Alzheimer's disease of early onset (disorder)", record.GDIS, true},
		{"Gilberto", "Condition", "Traumatic brain injury (disorder)", record.SUD, false},
		{"Gilberto", "Condition", "Streptococcal sore throat (disorder)", record.MH, false},
		{"Gilberto", "Condition", "Polyp of colon", record.SUD, false},
		// Florida_Rutherford: pregnancy, miscarriage, termination, contraception
		{"Florida", "Condition", "Normal pregnancy", record.SEX, true},
		{"Florida", "Condition", "Miscarriage in first trimester", record.SEX, true},
		{"Florida", "Encounter", "Prenatal initial visit", record.SEX, true},
		{"Florida", "Procedure", "Induced termination of pregnancy", record.SEX, true},
		{"Florida", "Procedure", "Physical exam following abortion", record.SEX, true},
		{"Florida", "MedicationRequest", "Camila 28 Day Pack", record.SEX, true},
		{"Florida", "Claim", "Claim: Prenatal initial visit", record.SEX, true},
		{"Florida", "Condition", "Viral sinusitis (disorder)", record.SEX, false},
		{"Florida", "Condition", "Concussion with loss of consciousness", record.SEX, false},
		// Chet_Thompson: SDOH questions
		{"Chet", "Observation", "HIV status", record.HIV, true},
		{"Chet", "Observation", "Sexual orientation", record.SEX, true},
		{"Chet", "Observation", "Abuse Status [OMAHA]", record.SDV, true},
		{"Chet", "Observation", "Tobacco smoking status NHIS", record.SUD, false},
	}
	for _, c := range checks {
		b := bs[c.patient]
		with, without := labelled(b.rs, c.typ, c.label)
		list := without
		if c.want {
			list = with
		}
		if !contains(list, c.title) {
			t.Errorf("%s %s %q: %s = %v not found (with %v, without %v)", c.patient, c.typ, c.title, c.label, c.want, with, without)
		}
		if !c.want && contains(with, c.title) {
			t.Errorf("%s %s %q wrongly labelled %s", c.patient, c.typ, c.title, c.label)
		}
	}

	// No ordinary condition of any sample patient carries a label.
	ordinary := []string{"Hypertension", "Viral sinusitis (disorder)", "Acute bronchitis (disorder)", "Prediabetes",
		"Anemia (disorder)", "Childhood asthma", "Coronary Heart Disease", "Myocardial Infarction",
		"Fracture of clavicle", "Laceration of foot", "Osteoarthritis of hip", "Streptococcal sore throat (disorder)",
		"Body mass index 30+ - obesity (finding)", "Perennial allergic rhinitis with seasonal variation"}
	for name, b := range bs {
		for _, r := range b.rs {
			if r.Type == "Condition" && contains(ordinary, r.Title) && len(r.Labels) > 0 {
				t.Errorf("%s: %q labelled %v (%v)", name, r.Title, r.Labels, r.Why)
			}
		}
	}
	// Patients with no sensitive history get no label at all.
	for _, name := range []string{"Kermit", "Luigi", "Fredrick", "hospitalInformation", "practitionerInformation"} {
		for _, r := range bs[name].rs {
			if len(r.Labels) > 0 {
				t.Errorf("%s: %s %q labelled %v (%v)", name, r.Type, r.Title, r.Labels, r.Why)
			}
		}
	}
}

// TestSyntheaPropagation: Milan_Beatty's encounter for depression and the
// claim for it carry MH because of propagation, not of their own codes.
func TestSyntheaPropagation(t *testing.T) {
	b := readSynthea(t)["Milan"]
	byURL := map[string]*Resource{}
	for _, r := range b.rs {
		byURL[r.FullURL] = r
	}
	var claims int
	for _, r := range b.rs {
		if r.Type != "Claim" || !r.HasLabel(record.MH) {
			continue
		}
		for _, w := range r.Why {
			if strings.HasPrefix(w.Reason, "references Encounter/") {
				claims++
			}
		}
	}
	if claims == 0 {
		t.Error("no claim labelled MH through its encounter")
	}
	// The fluoxetine prescriptions have no code of their own in the lists.
	for _, r := range b.rs {
		if r.Type == "MedicationRequest" && strings.HasPrefix(r.Title, "Fluoxetine") {
			if len(r.Why) == 0 || !strings.HasPrefix(r.Why[0].Reason, "references Encounter/") {
				t.Errorf("fluoxetine labelled %v because %v", r.Labels, r.Why)
			}
		}
	}
	// EOBs inherit from their claims.
	for _, r := range b.rs {
		if r.Type != "ExplanationOfBenefit" {
			continue
		}
		for _, ref := range r.References {
			if c := byURL[ref]; c != nil && c.Type == "Claim" && c.HasLabel(record.MH) && !r.HasLabel(record.MH) {
				t.Errorf("EOB %s not labelled like its claim", r.ID)
			}
		}
	}
}

// TestHL7Examples reads the official R4 examples: every resource file and
// bundle parses, with the expected format and category.
func TestHL7Examples(t *testing.T) {
	for _, f := range sharedFiles(t, "hl7-r4-examples") {
		name := filepath.Base(f)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := NewReader(bytes.NewReader(data), name)
		rs, err := ReadAll(bytes.NewReader(data), name, Limits{})
		if name == "package.json" {
			if err == nil {
				t.Error("package.json accepted as FHIR")
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		r.Next()
		typ, _, _ := strings.Cut(name, "-")
		switch {
		case typ == "Bundle" && r.Format() != FormatBundle:
			t.Errorf("%s: format %v", name, r.Format())
		case typ != "Bundle" && (len(rs) != 1 || rs[0].Type != typ || r.Format() != FormatResource):
			t.Errorf("%s: %d resources, format %v", name, len(rs), r.Format())
		}
		for _, res := range rs {
			if !bytes.Equal(data[res.Offset:res.Offset+int64(len(res.Raw))], res.Raw) {
				t.Errorf("%s: Raw differs from the input", name)
			}
			if got := References(res.Raw); !slices.Equal(got, res.References) {
				t.Errorf("%s: References(Raw) = %q, Next gave %q", name, got, res.References)
			}
		}
	}
}
