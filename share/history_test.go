package share

import (
	"slices"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
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
	ms, err := patient.List(vault.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	older := vault.Superseded(ms)
	var latest []string
	for _, m := range ms {
		if !older[m.ID] {
			latest = append(latest, m.Title)
		}
	}
	if strings.Join(latest, ",") != "Asthma (active),Pneumonia (resolved)" && strings.Join(latest, ",") != "Pneumonia (resolved),Asthma (active)" {
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
