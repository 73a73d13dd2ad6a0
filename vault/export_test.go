package vault

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// receiveFHIR stores raw as a FHIR resource shared by patient from.
func receiveFHIR(t *testing.T, v *Vault, from identity.ID, typ, id, fullURL, raw string) {
	t.Helper()
	n := NewRecord{Category: record.Other, Title: typ, FHIR: &FHIRInfo{Type: typ, ID: id, FullURL: fullURL, Version: 1}}
	rc := Received{From: from, SourceID: record.NewID(), Size: int64(len(raw))}
	if _, err := v.AddCiphertext(bytes.NewReader(receivedFile(t, v, []byte(raw))), n, rc); err != nil {
		t.Fatal(err)
	}
}

// Two patients of one hospital share its Organization with the same
// provider: the provider's export holds it once, since a Bundle may not
// repeat a fullUrl without distinct meta.versionId (R4 bdl-7). A resource
// that differs under a fullUrl already written keeps its content but not
// the fullUrl.
func TestExportSharedByTwoPatients(t *testing.T) {
	v := newTestVault(t)
	ada, _ := identity.Generate("ada", identity.Patient)
	bob, _ := identity.Generate("bob", identity.Patient)
	const url = "urn:uuid:2b3c1f9e-0000-4000-8000-00000000000a"
	org := `{"resourceType":"Organization","id":"2b3c1f9e-0000-4000-8000-00000000000a","name":"General Hospital"}`
	receiveFHIR(t, v, ada.ID(), "Organization", "2b3c1f9e-0000-4000-8000-00000000000a", url, org)
	receiveFHIR(t, v, bob.ID(), "Organization", "2b3c1f9e-0000-4000-8000-00000000000a", url, org)
	const url2 = "urn:uuid:2b3c1f9e-0000-4000-8000-00000000000b"
	receiveFHIR(t, v, ada.ID(), "Location", "2b3c1f9e-0000-4000-8000-00000000000b", url2, `{"resourceType":"Location","id":"2b3c1f9e-0000-4000-8000-00000000000b","name":"Ward 1"}`)
	receiveFHIR(t, v, bob.ID(), "Location", "2b3c1f9e-0000-4000-8000-00000000000b", url2, `{"resourceType":"Location","id":"2b3c1f9e-0000-4000-8000-00000000000b","name":"Ward 1 (renamed)"}`)

	var out bytes.Buffer
	st, err := v.ExportFHIR(Filter{}, ExportBundle, &out)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(out.Bytes(), &b); err != nil {
		t.Fatalf("export is not JSON: %v", err)
	}
	seen := map[string]bool{}
	for _, e := range b.Entry {
		if e.FullURL != "" && seen[e.FullURL] {
			t.Errorf("fullUrl %s appears twice (bdl-7)", e.FullURL)
		}
		seen[e.FullURL] = true
	}
	if len(b.Entry) != 3 || st.Records != 3 || st.Duplicates != 1 {
		t.Errorf("%d entries, %+v; want 3 records and 1 duplicate left out", len(b.Entry), st)
	}
	if strings.Count(out.String(), "General Hospital") != 1 || !strings.Contains(out.String(), "renamed") {
		t.Errorf("export:\n%s", out.String())
	}
}

// A Bundle counts the urn: references that name no entry of it: a lab
// result's Patient left out by the selection, or never shared.
func TestExportCountsUnresolvedReferences(t *testing.T) {
	v := newTestVault(t)
	ada, _ := identity.Generate("ada", identity.Patient)
	const pat = "urn:uuid:2b3c1f9e-0000-4000-8000-0000000000a1"
	const enc = "urn:uuid:2b3c1f9e-0000-4000-8000-0000000000a2"
	receiveFHIR(t, v, ada.ID(), "Patient", "2b3c1f9e-0000-4000-8000-0000000000a1", pat,
		`{"resourceType":"Patient","id":"2b3c1f9e-0000-4000-8000-0000000000a1"}`)
	for i, id := range []string{"2b3c1f9e-0000-4000-8000-0000000000b1", "2b3c1f9e-0000-4000-8000-0000000000b2"} {
		ref := `"encounter":{"reference":"` + enc + `"},`
		if i == 1 {
			ref = ""
		}
		receiveFHIR(t, v, ada.ID(), "Observation", id, "urn:uuid:"+id,
			`{"resourceType":"Observation","id":"`+id+`",`+ref+`"subject":{"reference":"`+pat+`"}}`)
	}
	var out bytes.Buffer
	st, err := v.ExportFHIR(Filter{}, ExportBundle, &out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 3 || st.Unresolved != 1 {
		t.Errorf("whole vault: %+v; want 3 records and 1 unresolved (the Encounter never shared)", st)
	}
	// Without the Patient: its reference, made twice, counts once.
	out.Reset()
	if err := v.Remove(mustResolvePatient(t, v)); err != nil {
		t.Fatal(err)
	}
	if st, err = v.ExportFHIR(Filter{}, ExportBundle, &out); err != nil {
		t.Fatal(err)
	}
	if st.Records != 2 || st.Unresolved != 2 {
		t.Errorf("without the Patient: %+v; want 2 records and 2 unresolved", st)
	}
	// NDJSON has no fullUrls to resolve against: nothing is counted.
	out.Reset()
	if st, err = v.ExportFHIR(Filter{}, ExportNDJSON, &out); err != nil || st.Unresolved != 0 {
		t.Errorf("NDJSON: %+v, %v", st, err)
	}
}

func mustResolvePatient(t *testing.T, v *Vault) record.ID {
	t.Helper()
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.FHIR != nil && m.FHIR.Type == "Patient" {
			return m.ID
		}
	}
	t.Fatal("no Patient record")
	return record.ID{}
}
