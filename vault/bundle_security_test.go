package vault

import (
	"slices"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

// A Bundle marked sensitive as a whole (Bundle.meta.security, before or
// after its entries) labels every resource in it: a methadone prescription
// in a 42 CFR Part 2 bundle must not reach a nurse's grant unlabelled.
func TestBundleSecurityLabelsEntries(t *testing.T) {
	entry := `"entry":[{"resource":{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order","medicationCodeableConcept":{"text":"methadone hydrochloride 10 MG"}}}]`
	meta := `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"SUD"}]}`
	for _, file := range []string{
		`{"resourceType":"Bundle","type":"collection",` + meta + `,` + entry + `}`,
		`{"resourceType":"Bundle","type":"collection",` + entry + `,` + meta + `}`,
	} {
		v := newTestVault(t)
		if _, err := v.Import("b.json", strings.NewReader(file), nil); err != nil {
			t.Fatal(err)
		}
		ms, err := v.List(Filter{})
		if err != nil || len(ms) != 1 {
			t.Fatalf("%d records: %v", len(ms), err)
		}
		if !slices.Contains(ms[0].Labels, record.SUD) {
			t.Errorf("labels %v, want SUD (file %s)", ms[0].Labels, file[:60])
		}
	}
}

// Versions of a resource with the same date are listed (and exported)
// oldest first, whatever their record IDs: a system that keeps the last
// entry must get the latest.
func TestVersionsListedInOrder(t *testing.T) {
	// Each export gives the resource a new urn:uuid fullUrl; the later one
	// sorts first by fullUrl, which must not decide.
	med := func(status, uuid string) string {
		return `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:` + uuid + `","resource":{"resourceType":"MedicationRequest","id":"m1","status":"` + status +
			`","intent":"order","authoredOn":"2024-03-01","medicationCodeableConcept":{"text":"amlodipine"}}}]}`
	}
	for range 8 { // record IDs are random: one order in two would pass by chance
		v := newTestVault(t)
		for _, s := range [][2]string{{"active", "f0000000-0000-4000-8000-000000000000"}, {"stopped", "10000000-0000-4000-8000-000000000000"}} {
			if _, err := v.Import("m.json", strings.NewReader(med(s[0], s[1])), nil); err != nil {
				t.Fatal(err)
			}
		}
		ms, err := v.List(Filter{})
		if err != nil || len(ms) != 2 {
			t.Fatalf("%d records: %v", len(ms), err)
		}
		if ms[0].FHIR.Version != 1 || ms[1].FHIR.Version != 2 {
			t.Fatalf("listed versions %d, %d; want 1, 2", ms[0].FHIR.Version, ms[1].FHIR.Version)
		}
	}
}

// A FHIR export holds each resource once, in its latest version: a Bundle
// may not repeat a fullUrl without distinct meta.versionId (R4 bdl-7).
func TestExportLatestVersionOnly(t *testing.T) {
	v := newTestVault(t)
	med := func(status string) string {
		return `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:5f0c3b6e-0000-4000-8000-000000000001","resource":{"resourceType":"MedicationRequest","id":"m1","status":"` + status +
			`","intent":"order","authoredOn":"2024-03-01","medicationCodeableConcept":{"text":"amlodipine"}}}]}`
	}
	for _, s := range []string{"active", "stopped"} {
		if _, err := v.Import("m.json", strings.NewReader(med(s)), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []ExportFormat{ExportBundle, ExportNDJSON} {
		var out strings.Builder
		st, err := v.ExportFHIR(Filter{}, f, &out)
		if err != nil {
			t.Fatal(err)
		}
		if st.Records != 1 || st.Older != 1 || strings.Count(out.String(), `"MedicationRequest"`) != 1 || !strings.Contains(out.String(), `"stopped"`) {
			t.Errorf("%s: %+v\n%s", f, st, out.String())
		}
	}
}

// A label set by hand on one version of a resource is set on its other
// versions too, and taken off them all.
func TestLabelAllVersions(t *testing.T) {
	v := newTestVault(t)
	cond := func(status string) string {
		return `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Condition","id":"c1","clinicalStatus":{"coding":[{"code":"` + status + `"}]},"code":{"text":"Hypertension"}}}]}`
	}
	for _, s := range []string{"active", "resolved"} {
		if _, err := v.Import("c.json", strings.NewReader(cond(s)), nil); err != nil {
			t.Fatal(err)
		}
	}
	ms, _ := v.List(Filter{})
	if len(ms) != 2 {
		t.Fatalf("%d records", len(ms))
	}
	check := func(want bool) {
		t.Helper()
		ms, _ := v.List(Filter{})
		for _, m := range ms {
			if m.HasLabel(record.MH) != want {
				t.Fatalf("version %d: MH %v, want %v", m.FHIR.Version, !want, want)
			}
		}
	}
	if _, others, err := v.SetLabels(ms[1].ID, []record.Label{record.MH}, nil); err != nil || others.Versions != 1 {
		t.Fatalf("label: %d others, %v", others, err)
	}
	check(true)
	if _, _, err := v.SetLabels(ms[0].ID, nil, []record.Label{record.MH}); err != nil {
		t.Fatal(err)
	}
	check(false)
	if rep, err := v.Verify(true); err != nil {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}
