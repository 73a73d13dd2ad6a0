package share

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// A FHIR history Bundle lists the newest version first (R4: "sorted with
// oldest versions last"), and a portal download may be older than the one
// imported before it: which version is the latest is the resource's
// meta.lastUpdated (else meta.versionId) says, not the order they arrived
// in. The emergency summary, export and what a provider stores follow it.
func TestLatestVersionByItsMeta(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	hist := `{"resourceType":"Bundle","type":"history","entry":[
{"fullUrl":"http://ex.org/fhir/Condition/c1","resource":{"resourceType":"Condition","id":"c1","meta":{"versionId":"2","lastUpdated":"2024-05-01T00:00:00Z"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"}]},"code":{"text":"Pneumonia (resolved)"}},"request":{"method":"PUT","url":"Condition/c1"}},
{"fullUrl":"http://ex.org/fhir/Condition/c1","resource":{"resourceType":"Condition","id":"c1","meta":{"versionId":"1","lastUpdated":"2024-01-01T00:00:00Z"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":{"text":"Pneumonia (active)"}},"request":{"method":"POST","url":"Condition"}},
{"fullUrl":"http://ex.org/fhir/Condition/c2","resource":{"resourceType":"Condition","id":"c2","meta":{"versionId":"3"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":{"text":"Asthma (active)"}},"request":{"method":"PUT","url":"Condition/c2"}},
{"fullUrl":"http://ex.org/fhir/Condition/c2","resource":{"resourceType":"Condition","id":"c2","meta":{"versionId":"2"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"inactive"}]},"code":{"text":"Asthma (inactive)"}},"request":{"method":"PUT","url":"Condition/c2"}}
]}`
	if _, err := patient.Import("history.json", strings.NewReader(hist), nil); err != nil {
		t.Fatal(err)
	}
	if latest := latestTitles(t, patient); !slices.Equal(latest, []string{"Asthma (active)", "Pneumonia (resolved)"}) {
		t.Errorf("latest versions (what export writes): %q", latest)
	}
	// The summary names FHIR records by Type/id: only c2 (the asthma is
	// active in its latest version; the pneumonia resolved in its).
	if got := emergencySummary(t, patient); !slices.Equal(got, []string{"Condition/c2"}) {
		t.Errorf("emergency summary: %q, want only the asthma", got)
	}
}

// FHIRInfo.Newer: lastUpdated first, then a numeric versionId, then the
// order of arrival.
func TestNewer(t *testing.T) {
	at := func(u, v string, n int) *vault.FHIRInfo { return &vault.FHIRInfo{Updated: u, VersionID: v, Version: n} }
	for _, c := range []struct {
		a, b *vault.FHIRInfo
		want bool
	}{
		{at("2024-05-01T00:00:00Z", "1", 1), at("2024-01-01T00:00:00Z", "2", 2), true},
		{at("2024-05-01T02:00:00+02:00", "", 1), at("2024-05-01T00:30:00Z", "", 2), false}, // 00:00Z is earlier
		{at("", "10", 1), at("", "9", 2), true},                                            // numbers, not text
		{at("", "b", 2), at("", "a", 1), true},                                             // not numbers: arrival
		{at("2024-05-01T00:00:00Z", "", 1), at("", "", 2), false},                          // one without: arrival
		{at("x", "", 3), at("2024-05-01T00:00:00Z", "", 2), true},                          // invalid instant: arrival
	} {
		if got := c.a.Newer(c.b); got != c.want {
			t.Errorf("%+v newer than %+v: %v, want %v", *c.a, *c.b, got, c.want)
		}
	}
}

// An id is unique on one server only. Condition/1 from a hospital and
// Condition/1 from a clinic are two resources: neither hides the other as
// its older version, in the patient's export and emergency summary or in
// what a provider received. Versions from one server (its base spelled in
// another case, or with a trailing slash) and versions that name no server
// (NDJSON, urn:uuid fullUrls, the base medvault's own export invents) are
// one resource; a version with no server is never hidden behind one from
// a named server, nor hides it.
func TestSameIDFromTwoServers(t *testing.T) {
	patient := openVault(t, "Ada", identity.Patient)
	provider := openVault(t, "Dr. Hopper", identity.Provider)
	cond := func(fullURL, updated, text string) string {
		entry := `{"resourceType":"Condition","id":"1","meta":{"lastUpdated":"` + updated + `"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":{"text":"` + text + `"}}`
		if fullURL == "" {
			return entry // NDJSON: no fullUrl
		}
		return `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"` + fullURL + `","resource":` + entry + `}]}`
	}
	for i, f := range []string{
		cond("https://hospital.example/fhir/Condition/1", "2024-01-01T00:00:00Z", "Asthma"),
		cond("https://clinic.example/r4/Condition/1", "2024-06-01T00:00:00Z", "Diabetes"),
		// The hospital again, later: a new version of its Asthma.
		cond("HTTPS://Hospital.Example/fhir/Condition/1", "2024-03-01T00:00:00Z", "Asthma, controlled"),
		// No server named, at two times: versions of one resource.
		cond("", "2023-01-01T00:00:00Z", "Migraine"),
		cond("urn:uuid:0b0b0b0b-0000-4000-8000-000000000001", "2025-01-01T00:00:00Z", "Migraine, rare"),
		cond(vault.ExportBase+"Condition/1", "2022-01-01T00:00:00Z", "Migraine, first"),
	} {
		if _, err := patient.Import(fmt.Sprintf("f%d.json", i), strings.NewReader(f), nil); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"Asthma, controlled", "Diabetes", "Migraine, rare"}
	// Versions are numbered per server.
	versions := versionsByTitle(t, patient)
	if w := map[string]int{"Asthma": 1, "Diabetes": 1, "Asthma, controlled": 2, "Migraine": 1, "Migraine, rare": 2, "Migraine, first": 3}; !maps.Equal(versions, w) {
		t.Errorf("versions: %v, want %v", versions, w)
	}
	if got := latestTitles(t, patient); !slices.Equal(got, want) {
		t.Errorf("latest versions: %q, want %q", got, want)
	}
	var out strings.Builder
	st, err := patient.ExportFHIR(vault.Filter{}, vault.ExportBundle, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !strings.Contains(out.String(), `"`+w+`"`) {
			t.Errorf("export lacks %q", w)
		}
	}
	if st.Records != 3 || st.Older != 3 || st.SameID != 0 {
		t.Errorf("export: %+v, want 3 records and 3 older versions left out", st)
	}
	// NDJSON names a resource by type and id only: the export says so.
	out.Reset()
	if st, err = patient.ExportFHIR(vault.Filter{}, vault.ExportNDJSON, &out); err != nil {
		t.Fatal(err)
	}
	if st.Records != 3 || st.SameID != 3 {
		t.Errorf("NDJSON export: %+v, want 3 records, 3 sharing type and id", st)
	}
	// One entry per current resource in the summary, each its own
	// server's Condition/1.
	if got := emergencySummary(t, patient); !slices.Equal(got, []string{"Condition/1", "Condition/1", "Condition/1"}) {
		t.Errorf("emergency summary: %q, want three Condition/1", got)
	}
	// A provider granted conditions gets only the current versions, and
	// keeps them apart as well.
	fetchCategory(t, patient, provider, record.Problems)
	if got := latestTitles(t, provider); !slices.Equal(got, want) {
		t.Errorf("provider's latest versions: %q, want %q", got, want)
	}
}

// latestTitles returns the titles of v's records that are no older
// version of a resource v also holds (what export writes), sorted.
func latestTitles(t *testing.T, v *vault.Vault) []string {
	t.Helper()
	ms, err := v.List(vault.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	older := vault.Superseded(ms)
	var out []string
	for _, m := range ms {
		if !older[m.ID] {
			out = append(out, m.Title)
		}
	}
	slices.Sort(out)
	return out
}

// fetchCategory pins provider as the patient's contact "dr", grants it
// cat for an hour and fetches under that grant.
func fetchCategory(t *testing.T, patient, provider *vault.Vault, cat record.Category) {
	t.Helper()
	if _, err := SaveContact(patient, "dr", cardOf(t, provider), false); err != nil {
		t.Fatal(err)
	}
	g, err := IssueAndStore(patient, GrantParams{Audience: provider.Owner().ID(), Scope: Scope{Categories: []record.Category{cat}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exchange(t, patient, provider, provider.Owner().ID(), g); err != nil {
		t.Fatal(err)
	}
}
