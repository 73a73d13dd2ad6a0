package fhir

import (
	"bufio"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

func TestValueListsLoad(t *testing.T) {
	if _, err := loadTables(); err != nil {
		t.Fatal(err)
	}
	stats, err := ValueListStats()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range record.Labels() {
		if stats[l] < 5 {
			t.Errorf("label %s has only %d rules", l, stats[l])
		}
	}
	if n := len(ResourceTypes()); n != 146 {
		t.Errorf("%d R4 resource types, want 146", n)
	}
	for _, typ := range []string{"Patient", "Observation", "MolecularSequence", "Bundle", "VisionPrescription"} {
		if !IsResourceType(typ) {
			t.Errorf("%s is not accepted", typ)
		}
	}
	for _, typ := range []string{"", "patient", "Resource", "DomainResource", "Spaceship", "NutritionProduct"} {
		if IsResourceType(typ) {
			t.Errorf("%q is accepted", typ)
		}
	}
}

// TestValueListsCiteSources: every list starts with a comment block that
// names its sources.
func TestValueListsCiteSources(t *testing.T) {
	files, _ := filepath.Glob("valuesets/*.txt")
	if len(files) != len(record.Labels()) {
		t.Fatalf("%d value lists, want one per label", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head := string(b[:min(len(b), 3000)])
		if !strings.HasPrefix(head, "# ") || !strings.Contains(head, "Sources:") {
			t.Errorf("%s: no sources block at the top", f)
		}
	}
}

func TestParseListErrors(t *testing.T) {
	bad := []string{
		"http://snomed.info/sct|123\n",
		"http://snomed.info/sct||x\n",
		"urn:oid:2.16.840.1.113883.6.96|123|x\n",
		"http://example.org|123|x\n",
		"http://snomed.info/sct|12*|x\n",
		"http://hl7.org/fhir/sid/icd-10-cm|F40-F3|x\n",
		"http://hl7.org/fhir/sid/icd-10-cm|F40-F399|x\n",
		"http://hl7.org/fhir/sid/icd-10-cm|T36-T65@6=|x\n",
		"http://hl7.org/fhir/sid/icd-10-cm|T36-T65@x=2|x\n",
		"http://hl7.org/fhir/sid/icd-10-cm|T36-T65@6=.|x\n",
		"http://hl7.org/fhir/sid/icd-10-cm|T36*@2=2|x\n",  // the position is inside the prefix
		"http://hl7.org/fhir/sid/icd-10-cm|F32.9@6=2|x\n", // not a prefix or range
		"http://loinc.org|44249-1@6=2|x\n",
		"http://hl7.org/fhir/sid/icd-10-cm|T36-T65@5=2@5=X|x\n", // one position twice
		"http://hl7.org/fhir/sid/icd-10-cm|T36-T65@5=2@|x\n",
		"http://hl7.org/fhir/sid/icd-10-cm|T36-T65@5=2@2=3|x\n", // the second inside the range
	}
	for _, in := range bad {
		tb := &tables{exact: map[codeKey][]rule{}, pattern: map[string][]rule{}}
		if err := tb.addList(record.MH, "x.txt", []byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestCodeLabels(t *testing.T) {
	const (
		sct   = "http://snomed.info/sct"
		icd   = "http://hl7.org/fhir/sid/icd-10-cm"
		who   = "http://hl7.org/fhir/sid/icd-10"
		icd9  = "http://hl7.org/fhir/sid/icd-9-cm"
		loinc = "http://loinc.org"
		rx    = "http://www.nlm.nih.gov/research/umls/rxnorm"
	)
	L := func(ls ...record.Label) []record.Label { return ls }
	tests := []struct {
		system, code string
		want         []record.Label
	}{
		// the sensitive conditions of the Synthea sample patients
		{sct, "370143000", L(record.MH)},   // major depressive disorder
		{sct, "36923009", L(record.MH)},    // major depression, single episode
		{sct, "47505003", L(record.MH)},    // PTSD
		{sct, "5602001", L(record.SUD)},    // opioid abuse
		{sct, "313071005", L(record.SUD)},  // counseling for substance abuse (a care plan's activity)
		{loinc, "69548-6", L(record.GDIS)}, // genetic variant assessment
		{loinc, "21636-6", L(record.GDIS)}, // BRCA1 gene mutations found
		{sct, "72892002", L(record.SEX)},   // normal pregnancy
		{sct, "19169002", L(record.SEX)},   // miscarriage in first trimester
		{sct, "714812005", L(record.SEX)},  // induced termination of pregnancy
		{rx, "748962", L(record.SEX)},      // Camila (contraceptive)
		// medicines, programmes and claims for opioid and alcohol use disorder
		{rx, "1010600", L(record.SUD)},    // buprenorphine/naloxone film
		{rx, "1996184", L(record.SUD)},    // extended-release buprenorphine injection
		{rx, "197623", L(record.SUD)},     // disulfiram
		{rx, "238129", nil},               // buprenorphine injection for pain
		{rx, "1551468", nil},              // bupropion/naltrexone for weight loss
		{sct, "792902005", L(record.SUD)}, // addiction therapy using buprenorphine and naloxone
		{sct, "408935001", nil},           // substance abuse prevention education (offered to everyone)
		{sct, "424589009", nil},           // "substance use" cessation: counts tobacco
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "H0020", L(record.SUD)}, // methadone administration
		{"https://bluebutton.cms.gov/resources/codesystem/hcpcs", "G2086", L(record.SUD)},   // office-based OUD treatment
		{"urn:oid:2.16.840.1.113883.6.285", "G2068", L(record.SUD)},
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "H0033", nil}, // directly observed oral medication, any drug
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "H0031", L(record.MH)},
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "H0015", L(record.SUD)},
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "H0004", L(record.MH, record.SUD)}, // behavioral health counselling
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "H2019", nil},                      // names neither
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "H0017", L(record.MH, record.SUD)}, // behavioral health residential
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "H2030", L(record.MH)},             // mental health clubhouse
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "G0177", L(record.MH)},             // education for disabling mental health problems
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "J0572", L(record.SUD)},            // buprenorphine/naloxone, oral
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "T1010", L(record.SUD)},            // meals for people in SUD services
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "H0003", nil},                      // a drug test: employment, pain care
		{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "H0025", nil},                      // prevention education for everyone
		// ordinary ones stay unlabelled
		{sct, "38341003", nil},        // hypertension
		{sct, "59621000", nil},        // essential hypertension
		{sct, "444814009", nil},       // viral sinusitis
		{sct, "10509002", nil},        // acute bronchitis
		{sct, "15777000", nil},        // prediabetes
		{sct, "271737000", nil},       // anemia
		{sct, "26929004", nil},        // Alzheimer's disease (not the familial form)
		{sct, "5880005", nil},         // physical examination (generic)
		{sct, "185347001", nil},       // encounter for problem (generic)
		{sct, "428191000124101", nil}, // documentation of current medications
		{rx, "1049221", nil},          // oxycodone/acetaminophen: an analgesic
		{rx, "406022", nil},           // fluoxetine: labelled through propagation only
		{loinc, "72166-2", nil},       // tobacco smoking status
		{loinc, "8867-4", nil},        // heart rate
		// ICD-10 ranges, prefixes, exclusions and spellings
		{icd, "F32.9", L(record.MH)},
		{icd, "F329", L(record.MH)},
		{icd, "f32.9", L(record.MH)},
		{who, "F32.9", L(record.MH)},
		{"urn:oid:2.16.840.1.113883.6.90", "F41.1", L(record.MH)},
		{icd, "F11.20", L(record.SUD)},
		{icd, "F10.10", L(record.SUD)},
		{icd, "F17.210", nil}, // nicotine: 42 CFR 2.11 excludes tobacco
		{icd, "F03.90", nil},  // dementia: COGN, not modelled
		{icd, "F70", nil},     // intellectual disability: DVD, not modelled
		{icd, "F84.0", L(record.MH)},
		{icd, "O09.90", L(record.SEX)},
		{icd, "O9A.311", L(record.SEX, record.SDV)},
		{icd, "O99.320", L(record.SUD, record.SEX)},
		{icd, "O98.711", L(record.SEX, record.HIV)},
		{icd, "Z33.1", L(record.SEX)},
		{icd, "Z38.00", nil}, // the newborn's own birth record
		// intentional self-harm: the 6th character of a poisoning is its intent
		{icd, "T39.012A", L(record.MH)}, // aspirin, intentional self-harm
		{icd, "T51.0X2A", L(record.MH)}, // ethanol, intentional self-harm
		{icd, "T39.011A", nil},          // aspirin, accidental
		{icd, "T36.0X5A", nil},          // penicillin, adverse effect
		{icd, "T39.01", nil},            // too short to say
		// where the subcategory has four characters, the intent is the 5th
		// and the 6th is the placeholder X
		{icd, "T36.92XA", L(record.MH)}, // unspecified systemic antibiotic, intentional self-harm
		{icd, "T58.02XA", L(record.MH)}, // carbon monoxide from motor vehicle exhaust, intentional self-harm
		{icd, "t65.92xd", L(record.MH)}, // unspecified substance, intentional self-harm, lower case
		{icd, "T36.91XA", nil},          // accidental
		{icd, "T36.95XA", nil},          // adverse effect
		{icd, "T40.421A", nil},          // tramadol, accidental: its 5th character 2 is the drug
		{icd, "T40.42", nil},            // tramadol, no intent given
		{icd, "T71.162A", L(record.MH)}, // asphyxiation due to hanging, intentional self-harm
		{icd, "T71.222A", L(record.MH)}, // trapped in a car trunk, intentional self-harm
		{icd, "T71.161A", nil},          // hanging, accidental
		{icd, "T71.9XXA", nil},          // asphyxiation, unspecified cause
		// WHO ICD-10 (read as ICD-10-CM) gives self-poisoning X60-X69 and hanging X70
		{"http://hl7.org/fhir/sid/icd-10", "X61", L(record.MH)},
		{"http://hl7.org/fhir/sid/icd-10", "X70", L(record.MH)},
		{"http://hl7.org/fhir/sid/icd-10", "X84", L(record.MH)},
		{"http://hl7.org/fhir/sid/icd-10", "X85", nil}, // assault
		{"http://hl7.org/fhir/sid/icd-10", "X59", nil}, // accident
		{icd, "T66.XXXA", nil},                         // radiation sickness: outside T36-T65
		{icd9, "E950.0", L(record.MH)},                 // suicide by analgesics
		{icd9, "E949", nil},
		{icd, "B20", L(record.HIV)},
		{icd, "Z21", L(record.HIV)},
		{icd, "A56.01", L(record.STD)},
		{icd, "A64", L(record.STD)},
		{icd, "A65", nil},
		{icd, "Q90.9", L(record.GDIS)},
		{icd, "Q89.9", nil},
		{icd, "E84.0", L(record.GDIS)},
		{icd, "T74.21XA", L(record.SDV)},
		{icd, "Z69.11", L(record.MH, record.SDV)},
		{icd, "I10", nil},
		{icd, "J01.90", nil},
		{icd, "E11.9", nil},
		// ICD-9
		{icd9, "296.20", L(record.MH)},
		{icd9, "304.00", L(record.SUD)},
		{icd9, "305.1", nil},
		{icd9, "042", L(record.HIV)},
		{icd9, "V22.0", L(record.SEX)},
		{icd9, "401.9", nil},
		// other systems and edge cases
		{loinc, "44261-6", L(record.MH)},
		{loinc, "55277-8", L(record.HIV)},
		{"http://example.org/codes", "370143000", nil},
		{"", "370143000", nil},
		{sct, "", nil},
		{sct, " 370143000 ", L(record.MH)},
	}
	for _, tc := range tests {
		got := CodeLabels(Coding{System: tc.system, Code: tc.code})
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s|%s: %v, want %v", tc.system, tc.code, got, tc.want)
		}
	}
}

func TestSecurityLabels(t *testing.T) {
	tests := []struct {
		system, code string
		want         []record.Label
	}{
		{"http://terminology.hl7.org/CodeSystem/v3-ActCode", "PSY", []record.Label{record.MH}},
		{"http://terminology.hl7.org/CodeSystem/v3-ActCode", "ETH", []record.Label{record.SUD}},
		{"http://terminology.hl7.org/CodeSystem/v3-ActCode", "BH", []record.Label{record.MH, record.SUD}},
		{"http://hl7.org/fhir/v3/ActCode", "HIV", []record.Label{record.HIV}},
		{"urn:oid:2.16.840.1.113883.5.4", "SDV", []record.Label{record.SDV}},
		{"http://terminology.hl7.org/CodeSystem/v3-ActCode", "SICKLE", []record.Label{record.GDIS}},
		{"http://terminology.hl7.org/CodeSystem/v3-ActCode", "R", nil},
		{"http://terminology.hl7.org/CodeSystem/v3-ActCode", "COGN", nil},
		{"http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "MH", nil},
		{"http://example.org", "MH", nil},
	}
	for _, tc := range tests {
		got := LabelsOf(nil, []Coding{{System: tc.system, Code: tc.code}})
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s|%s: %v, want %v", tc.system, tc.code, got, tc.want)
		}
	}
	for code, ls := range securityLabels {
		for _, l := range ls {
			if !l.Valid() {
				t.Errorf("%s maps to invalid label %q", code, l)
			}
		}
	}
}

// TestImports enforces the package's import rule: the standard library and
// vault/record only.
func TestImports(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(p, "/")
			if strings.Contains(first, ".") && p != "github.com/medvault/medvault/vault/record" {
				t.Errorf("%s imports %s: only the standard library and vault/record are allowed", f, p)
			}
		}
	}
}

// TestCategoriesDocMatchesCode compares the tables of CATEGORIES.md with the
// Go tables, both ways.
func TestCategoriesDocMatchesCode(t *testing.T) {
	doc := readDocTables(t, "CATEGORIES.md")
	check := func(name string, code map[string]string) {
		t.Helper()
		got := doc[name]
		if got == nil {
			t.Fatalf("CATEGORIES.md has no %q table", name)
		}
		if !reflect.DeepEqual(got, code) {
			for k, v := range code {
				if got[k] != v {
					t.Errorf("%s: code maps %s to %q, CATEGORIES.md to %q", name, k, v, got[k])
				}
			}
			for k, v := range got {
				if _, ok := code[k]; !ok {
					t.Errorf("%s: CATEGORIES.md lists %s → %q, the code does not", name, k, v)
				}
			}
		}
	}
	str := func(m map[string]record.Category) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = string(v)
		}
		return out
	}
	check("types", str(typeCategories))
	check("observation", str(observationCategories))
	check("report", str(reportCategories))
	sec := map[string]string{}
	for k, ls := range securityLabels {
		var s []string
		for _, l := range ls {
			s = append(s, string(l))
		}
		sec[k] = strings.Join(s, ", ")
	}
	check("security", sec)
	cur := map[string]string{}
	for typ, ss := range currentStatuses {
		var s []string
		for _, st := range ss {
			if st == "" {
				st = "(no status)"
			}
			s = append(s, st)
		}
		cur[typ] = strings.Join(s, ", ")
	}
	check("current", cur)
	for k, c := range typeCategories {
		if !IsResourceType(k) {
			t.Errorf("typeCategories has unknown type %s", k)
		}
		if !c.Valid() {
			t.Errorf("%s maps to invalid category %q", k, c)
		}
	}
}

// readDocTables reads the two-column tables between <!-- name:begin -->
// and <!-- name:end --> markers.
func readDocTables(t *testing.T, path string) map[string]map[string]string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string]string{}
	var cur map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ln := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(ln, "<!-- ") && strings.HasSuffix(ln, ":begin -->"):
			cur = map[string]string{}
			out[strings.TrimSuffix(strings.TrimPrefix(ln, "<!-- "), ":begin -->")] = cur
		case strings.HasSuffix(ln, ":end -->"):
			cur = nil
		case cur != nil && strings.HasPrefix(ln, "|"):
			cells := strings.Split(strings.Trim(ln, "|"), "|")
			if len(cells) != 2 {
				t.Fatalf("bad table row %q", ln)
			}
			k, v := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
			if strings.HasPrefix(k, "---") || k == "FHIR resource type" || strings.HasSuffix(k, "code") || k == "v3 ActCode" {
				continue // header
			}
			if _, dup := cur[k]; dup {
				t.Fatalf("duplicate row %q", k)
			}
			cur[k] = v
		}
	}
	return out
}

func TestCategoryOf(t *testing.T) {
	oc := func(code string) []Coding {
		return []Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: code}}
	}
	clinicalNote := []Coding{{System: "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", Code: "clinical-note"}}
	tests := []struct {
		typ        string
		categories []Coding
		codes      []Coding
		want       record.Category
	}{
		{"Observation", oc("laboratory"), nil, record.Labs},
		{"Observation", oc("vital-signs"), nil, record.Vitals},
		{"Observation", oc("social-history"), nil, record.SocialHistory},
		{"Observation", oc("survey"), nil, record.SocialHistory},
		{"Observation", append(oc("unknown"), oc("imaging")...), nil, record.Imaging},
		{"Observation", nil, nil, record.Other},
		// No category: a LOINC result is a lab, unless it is a vital sign.
		{"Observation", nil, []Coding{{System: "http://loinc.org", Code: "2093-3"}}, record.Labs},
		{"Observation", nil, []Coding{{System: "http://loinc.org", Code: "8867-4"}}, record.Vitals},
		{"Observation", oc("social-history"), []Coding{{System: "http://loinc.org", Code: "2093-3"}}, record.SocialHistory},
		{"Observation", nil, []Coding{{System: "http://snomed.info/sct", Code: "1234"}}, record.Other},
		{"DiagnosticReport", []Coding{{Code: "LAB"}}, nil, record.Labs},
		{"DiagnosticReport", []Coding{{Code: "RAD"}}, nil, record.Imaging},
		{"DiagnosticReport", []Coding{{Code: "LP29684-5"}}, nil, record.Imaging},
		{"DiagnosticReport", nil, nil, record.Notes},
		{"Consent", []Coding{{Code: "59284-0"}}, nil, record.Other},
		{"Consent", []Coding{{Code: "acd"}}, nil, record.AdvanceDirectives},
		{"Consent", nil, []Coding{{Code: "adr"}}, record.AdvanceDirectives},
		{"DocumentReference", nil, []Coding{{System: "http://loinc.org", Code: "42348-3"}}, record.AdvanceDirectives},
		// Typed by a PACIO advance-directive document type, whatever the
		// category (US Core files documents as clinical-note).
		{"DocumentReference", clinicalNote, []Coding{{System: "http://loinc.org", Code: "86533-7"}}, record.AdvanceDirectives},  // living will
		{"DocumentReference", clinicalNote, []Coding{{System: "http://loinc.org", Code: "64298-3"}}, record.AdvanceDirectives},  // power of attorney
		{"DocumentReference", clinicalNote, []Coding{{System: "http://loinc.org", Code: "92664-2"}}, record.AdvanceDirectives},  // power of attorney and living will
		{"DocumentReference", clinicalNote, []Coding{{System: "http://loinc.org", Code: "81334-5"}}, record.AdvanceDirectives},  // personal advance care plan
		{"DocumentReference", clinicalNote, []Coding{{System: "http://loinc.org", Code: "100821-8"}}, record.AdvanceDirectives}, // National POLST form
		{"DocumentReference", clinicalNote, []Coding{{System: "http://loinc.org", Code: "93037-0"}}, record.AdvanceDirectives},  // portable medical order form
		{"DocumentReference", clinicalNote, []Coding{{System: "http://loinc.org", Code: "11506-3"}}, record.Notes},              // progress note
		{"Consent", []Coding{{System: "http://loinc.org", Code: "64298-3"}}, nil, record.AdvanceDirectives},
		{"Consent", []Coding{{System: "urn:oid:2.16.840.1.113883.6.1", Code: "64298-3"}}, nil, record.AdvanceDirectives},
		{"Consent", []Coding{{System: "http://terminology.hl7.org/CodeSystem/consentcategorycodes", Code: "dnr"}}, nil, record.AdvanceDirectives},
		{"Consent", nil, []Coding{{System: "http://terminology.hl7.org/CodeSystem/consentscope", Code: "adr"}}, record.AdvanceDirectives},
		// The same codes in another system are that system's: not a directive.
		{"Consent", []Coding{{System: "urn:oid:1.2.3.4.5", Code: "acd"}}, nil, record.Other},
		{"DocumentReference", nil, []Coding{{System: "http://snomed.info/sct", Code: "42348-3"}}, record.Notes},
		{"DocumentReference", nil, nil, record.Notes},
		{"Patient", nil, nil, record.Demographics},
		{"ExplanationOfBenefit", nil, nil, record.Billing},
		{"MolecularSequence", nil, nil, record.Genomics},
		{"CareTeam", nil, nil, record.CarePlans},
		{"Practitioner", nil, nil, record.Other},
		{"Basic", nil, nil, record.Other},
	}
	for _, tc := range tests {
		if got := CategoryOf(tc.typ, tc.categories, tc.codes); got != tc.want {
			t.Errorf("CategoryOf(%s, %v, %v) = %s, want %s", tc.typ, tc.categories, tc.codes, got, tc.want)
		}
	}
}

// TestScreeningItemLabels: the item questions of the screening instruments
// carry the instrument's label on their own. Exports store each answer as an
// Observation that the panel references through hasMember, and labels run
// from the referenced resource to the referrer, so an item Observation gets
// nothing from its (labelled) panel: "Thoughts that you would be better off
// dead" was shared under a plain social-history grant.
func TestScreeningItemLabels(t *testing.T) {
	const loinc = "http://loinc.org"
	tests := []struct {
		code string
		want record.Label
	}{
		// PHQ-9 items
		{"44250-9", record.MH}, {"44255-8", record.MH}, {"44259-0", record.MH},
		{"44254-1", record.MH}, {"44251-7", record.MH}, {"44258-2", record.MH},
		{"44252-5", record.MH}, {"44253-3", record.MH}, {"44260-8", record.MH},
		{"69722-7", record.MH},
		// GAD-7 items
		{"69725-0", record.MH}, {"68509-9", record.MH}, {"69733-4", record.MH},
		{"69734-2", record.MH}, {"69735-9", record.MH}, {"69689-8", record.MH},
		{"69736-7", record.MH},
		// AUDIT-C items, AUDIT, DAST-10 panel
		{"68518-0", record.SUD}, {"68519-8", record.SUD}, {"68520-6", record.SUD},
		{"72110-0", record.SUD}, {"75624-7", record.SUD}, {"82666-9", record.SUD},
		// HARK intimate partner violence screen
		{"76499-3", record.SDV}, {"76500-8", record.SDV}, {"76501-6", record.SDV},
		{"76502-4", record.SDV}, {"76503-2", record.SDV}, {"76504-0", record.SDV},
	}
	for _, tt := range tests {
		got := CodeLabels(Coding{System: loinc, Code: tt.code})
		if !reflect.DeepEqual(got, []record.Label{tt.want}) {
			t.Errorf("LOINC %s: labels %v, want [%s]", tt.code, got, tt.want)
		}
	}

	// An item stored on its own, referenced by its panel: labelled by its
	// code, not through the panel.
	ndjson := `{"resourceType":"Observation","id":"panel","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"44249-1"}]},"hasMember":[{"reference":"Observation/item9"}]}
{"resourceType":"Observation","id":"item9","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"44260-8"}]},"valueCodeableConcept":{"coding":[{"system":"http://loinc.org","code":"LA6570-1"}]}}
`
	rs, err := ReadAll(strings.NewReader(ndjson), "phq9.ndjson", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	Propagate(rs)
	for _, r := range rs {
		if !reflect.DeepEqual(r.Labels, []record.Label{record.MH}) {
			t.Errorf("%s: labels %v, want [MH]", r.Key(), r.Labels)
		}
	}
}

func TestIsLOINC(t *testing.T) {
	for _, s := range []string{"44249-1", "44260-8", "4548-4", "69722-7", "82666-9", "1-8", "10000-8"} {
		if !isLOINC(s) {
			t.Errorf("isLOINC(%q) = false", s)
		}
	}
	for _, s := range []string{"44249-2", "44260-0", "1.1", "q1", "", "-1", "123456-1", "4424a-1", "44249-", "44249-12"} {
		if isLOINC(s) {
			t.Errorf("isLOINC(%q) = true", s)
		}
	}
}

// A screening filed as a QuestionnaireResponse is labelled from the LOINC
// form its questionnaire names, its items' LOINC linkIds, or a sensitive
// answer code, at any depth; a form of local linkIds with harmless answers
// is not.
func TestQuestionnaireResponseLabels(t *testing.T) {
	qr := func(id, body string) string {
		return `{"resourceType":"QuestionnaireResponse","id":"` + id + `","status":"completed"` + body + "}\n"
	}
	ndjson := qr("form", `,"questionnaire":"http://loinc.org/q/44249-1|2.74","item":[{"linkId":"1.1","answer":[{"valueCoding":{"system":"http://loinc.org","code":"LA6568-5"}}]}]`) +
		qr("link", `,"questionnaire":"Questionnaire/local","item":[{"linkId":"g1","item":[{"linkId":"44260-8","answer":[{"valueCoding":{"system":"http://loinc.org","code":"LA6570-1"}}]}]}]`) +
		qr("answer", `,"item":[{"linkId":"hx","answer":[{"valueString":"history","item":[{"linkId":"hx.1","answer":[{"valueCoding":{"system":"http://snomed.info/sct","code":"5602001","display":"Opioid abuse"}}]}]}]}]`) +
		qr("plain", `,"questionnaire":"Questionnaire/intake","item":[{"linkId":"1","text":"Any allergies?","answer":[{"valueBoolean":false}]},{"linkId":"4548-4","answer":[{"valueDecimal":6.1}]}]`)
	rs, err := ReadAll(strings.NewReader(ndjson), "qr.ndjson", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]record.Label{"form": {record.MH}, "link": {record.MH}, "answer": {record.SUD}, "plain": nil}
	for _, r := range rs {
		if !reflect.DeepEqual(r.Labels, want[r.ID]) {
			t.Errorf("QuestionnaireResponse/%s: labels %v, want %v", r.ID, r.Labels, want[r.ID])
		}
		if r.Category != record.Notes {
			t.Errorf("QuestionnaireResponse/%s: category %s", r.ID, r.Category)
		}
	}
}

// A Consent that restricts records by their security labels tells that
// there are such records: it carries the labels its provisions name, at
// any depth, but not confidentiality codes.
func TestConsentProvisionLabels(t *testing.T) {
	ndjson := `{"resourceType":"Consent","id":"psy","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"provision":{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}],"provision":[{"type":"permit","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]}]}}
{"resourceType":"Consent","id":"plain","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"provision":{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}}
`
	rs, err := ReadAll(strings.NewReader(ndjson), "consent.ndjson", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]record.Label{"psy": {record.MH}, "plain": nil}
	for _, r := range rs {
		if !reflect.DeepEqual(r.Labels, want[r.ID]) {
			t.Errorf("Consent/%s: labels %v, want %v", r.ID, r.Labels, want[r.ID])
		}
	}
}
