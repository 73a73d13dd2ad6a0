package vault

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/fhir"
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
// that differs under a fullUrl already written keeps its content under a
// urn:uuid of its own, the same at every export (it had no fullUrl once,
// and a collection Bundle's entries need one).
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
		if e.FullURL == "" || seen[e.FullURL] {
			t.Errorf("fullUrl %q missing or seen twice (bdl-7)", e.FullURL)
		}
		seen[e.FullURL] = true
	}
	for _, e := range b.Entry {
		if strings.Contains(string(e.Resource), "renamed") && (!strings.HasPrefix(e.FullURL, "urn:uuid:") || e.FullURL == url2) {
			t.Errorf("the renamed Location's fullUrl is %s", e.FullURL)
		}
	}
	var again bytes.Buffer
	if _, err := v.ExportFHIR(Filter{}, ExportBundle, &again); err != nil || again.String() != out.String() {
		t.Errorf("a second export differs (%v)", err)
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
	// NDJSON has no fullUrls: references to exported resources become
	// "Type/id", and the urn: references left name nothing in it.
	out.Reset()
	if st, err = v.ExportFHIR(Filter{}, ExportNDJSON, &out); err != nil || st.Unresolved != 2 {
		t.Errorf("NDJSON: %+v, %v; want 2 unresolved", st, err)
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

// exportBundle holds an Encounter whose reason is depression (MH by its
// code), a Claim that references it by urn:uuid (MH by propagation), and
// a lab result with no label of its own.
const exportBundle = `{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Encounter","id":"11111111-1111-4111-8111-111111111111","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p"},"reasonCode":[{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F32.9"}]}]}},
{"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222","resource":{"resourceType":"Claim","id":"22222222-2222-4222-8222-222222222222","status":"active","patient":{"reference":"Patient/p"},"item":[{"sequence":1,"productOrService":{"text":"visit"},"encounter":[{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"}]}]}},
{"fullUrl":"urn:uuid:33333333-3333-4333-8333-333333333333","resource":{"resourceType":"Observation","id":"33333333-3333-4333-8333-333333333333","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/p"}}}
]}`

// Export carries every label a record has into its resource's
// meta.security, the propagated MH of the Claim and the SDV the patient
// set by hand on the lab result alike, and a vault that imports the
// export, as a Bundle or as NDJSON, gets the same labels back. Before,
// the resources went out unmarked.
func TestExportLabelsRoundTrip(t *testing.T) {
	a := newTestVault(t)
	if _, err := a.Import("a.json", strings.NewReader(exportBundle), nil); err != nil {
		t.Fatal(err)
	}
	labs, _ := a.List(Filter{Category: record.Labs})
	if _, _, err := a.SetLabels(labs[0].ID, []record.Label{record.SDV}, nil); err != nil {
		t.Fatal(err)
	}
	want := labelsByResource(t, a)
	if len(want["Claim/22222222-2222-4222-8222-222222222222"]) == 0 || len(want["Observation/33333333-3333-4333-8333-333333333333"]) == 0 {
		t.Fatalf("source labels %v", want)
	}
	for _, format := range []ExportFormat{ExportBundle, ExportNDJSON} {
		var out bytes.Buffer
		if _, err := a.ExportFHIR(Filter{}, format, &out); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out.String(), `"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"`); n != 3 {
			t.Errorf("%s: %d ActCode codings, want 3 (MH twice, SDV):\n%s", format, n, out.String())
		}
		b := newTestVault(t)
		if _, err := b.Import("export", bytes.NewReader(out.Bytes()), nil); err != nil {
			t.Fatal(err)
		}
		if got := labelsByResource(t, b); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: imported again %v, want %v", format, got, want)
		}
		// Exporting what an export imported adds nothing.
		var again bytes.Buffer
		if _, err := b.ExportFHIR(Filter{}, format, &again); err != nil || !sameResources(t, again.String(), out.String()) {
			t.Errorf("%s: export of the import differs (%v):\n%s\n%s", format, err, out.String(), again.String())
		}
	}
}

// A label the patient removed by hand stays out of the export, but a
// coding the resource's source wrote is never removed: the export keeps
// it, and counts the record, so the command can say so.
func TestExportKeepsSourceLabelRemovedByHand(t *testing.T) {
	v := newTestVault(t)
	const nd = `{"resourceType":"Condition","id":"src","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"ETH"}]},"code":{"text":"note"}}
{"resourceType":"Condition","id":"derived","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F32.9"}]}}
`
	if _, err := v.Import("a.ndjson", strings.NewReader(nd), nil); err != nil {
		t.Fatal(err)
	}
	ms, _ := v.List(Filter{})
	for _, m := range ms {
		if _, _, err := v.SetLabels(m.ID, nil, m.Labels); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	st, err := v.ExportFHIR(Filter{}, ExportNDJSON, &out)
	if err != nil {
		t.Fatal(err)
	}
	if st.SourceLabelled != 1 || !sameResources(t, out.String(), nd) {
		t.Errorf("%+v; want 1 record whose source's label is kept, and the resources unchanged:\n%s", st, out.String())
	}
}

// sameResources reports whether the FHIR files a and b hold the same
// resources, byte for byte, in any order (export writes records in date
// order, and records of one date in the order of their random IDs).
func sameResources(t *testing.T, a, b string) bool {
	t.Helper()
	raws := func(s string) []string {
		rs, err := fhir.ReadAll(strings.NewReader(s), "export", fhir.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.FullURL+" "+string(r.Raw))
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(raws(a), raws(b))
}

// NDJSON has no fullUrl: the urn:uuid references to exported resources
// become Type/id, so the EHR can link them and a vault that imports the
// file propagates along them; a reference to a resource not exported stays.
func TestExportNDJSONRelativeReferences(t *testing.T) {
	a := newTestVault(t)
	b := strings.Replace(exportBundle, `"subject":{"reference":"Patient/p"}}}`+"\n]}",
		`"subject":{"reference":"urn:uuid:44444444-4444-4444-8444-444444444444"}}}`+"\n]}", 1)
	if _, err := a.Import("a.json", strings.NewReader(b), nil); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	st, err := a.ExportFHIR(Filter{}, ExportNDJSON, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"encounter":[{"reference":"Encounter/11111111-1111-4111-8111-111111111111"}]`) ||
		!strings.Contains(out.String(), `"reference":"urn:uuid:44444444-4444-4444-8444-444444444444"`) || st.Unresolved != 1 {
		t.Errorf("%+v\n%s", st, out.String())
	}
	// Without its labels in meta.security, the Claim still gets MH from
	// the Encounter it references.
	var plain bytes.Buffer
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, `"resourceType":"Claim"`) {
			line = strings.Replace(line, `"meta":{"security":[`+exportedCoding(record.MH)+`]},`, "", 1)
		}
		plain.WriteString(line)
	}
	if strings.Count(plain.String(), "v3-ActCode") != 1 {
		t.Fatalf("the Claim's MH is still there:\n%s", plain.String())
	}
	c := newTestVault(t)
	if _, err := c.Import("export.ndjson", &plain, nil); err != nil {
		t.Fatal(err)
	}
	if got := labelsByResource(t, c)["Claim/22222222-2222-4222-8222-222222222222"]; !slices.Equal(got, []record.Label{record.MH}) {
		t.Errorf("Claim %v after the NDJSON round trip, want MH", got)
	}
}

// exportedCoding is the meta.security coding export writes for l.
func exportedCoding(l record.Label) string {
	return `{"extension":[{"url":"http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-sec-label-classifier","valueReference":{"display":"medvault"}}],"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + string(l) + `"}`
}

// Every entry of an exported Bundle has a fullUrl (R4): a resource stored
// without one (imported from NDJSON) gets ExportBase + Type/id, the same
// at every export, so its relative references resolve to the other
// entries under that base.
func TestExportBundleFullURLs(t *testing.T) {
	v := newTestVault(t)
	const nd = `{"resourceType":"Encounter","id":"e1","status":"finished","reasonCode":[{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F32.9"}]}]}
{"resourceType":"Claim","id":"cl1","status":"active","item":[{"sequence":1,"encounter":[{"reference":"Encounter/e1"}]}]}
`
	if _, err := v.Import("a.ndjson", strings.NewReader(nd), nil); err != nil {
		t.Fatal(err)
	}
	var out, again bytes.Buffer
	if _, err := v.ExportFHIR(Filter{}, ExportBundle, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ExportFHIR(Filter{}, ExportBundle, &again); err != nil || again.String() != out.String() {
		t.Errorf("two exports differ (%v)", err)
	}
	for _, want := range []string{`{"fullUrl":"https://medvault.invalid/fhir/Encounter/e1","resource":`, `{"fullUrl":"https://medvault.invalid/fhir/Claim/cl1","resource":`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %s in\n%s", want, out.String())
		}
	}
	// Imported into the vault it came from, the labelled resources are
	// new versions (their bytes carry the labels now), once.
	for i, want := range []int{2, 0} {
		st, err := v.Import("export.json", bytes.NewReader(out.Bytes()), nil)
		if err != nil || st.Added != 0 || st.Versions != want {
			t.Errorf("import %d of the export: %+v, %v; want %d new versions", i+1, st, err, want)
		}
	}
}

// The 8 Synthea patients: every record imported from either export, into
// a new vault, has the labels it has in the vault exported. Before, NDJSON
// lost most propagated ones (MH 31 -> 20, GDIS 40 -> 14).
func TestExportRoundTripSynthea(t *testing.T) {
	a := newTestVault(t)
	for _, f := range syntheaFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Import(f, bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
	}
	want := labelsByResource(t, a)
	for _, format := range []ExportFormat{ExportBundle, ExportNDJSON} {
		var out bytes.Buffer
		st, err := a.ExportFHIR(Filter{}, format, &out)
		if err != nil {
			t.Fatal(err)
		}
		b := newTestVault(t)
		if _, err := b.Import("export", &out, nil); err != nil {
			t.Fatal(err)
		}
		got := labelsByResource(t, b)
		for k, w := range want {
			if !slices.Equal(got[k], w) {
				t.Errorf("%s: %s has %v, want %v", format, k, got[k], w)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d resources, want %d", format, len(got), len(want))
		}
		t.Logf("%s: %d records, %d unresolved references, labels %v", format, st.Records, st.Unresolved, labelCounts(got))
	}
	t.Logf("source: labels %v", labelCounts(want))
}

func labelCounts(m map[string][]record.Label) map[record.Label]int {
	out := map[record.Label]int{}
	for _, ls := range m {
		for _, l := range ls {
			out[l]++
		}
	}
	return out
}

func TestServerBase(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"https://h.example/fhir/Condition/1", "https://h.example/fhir"},
		{"HTTP://H.Example:8080/Fhir/R4/Condition/1", "http://h.example:8080/Fhir/R4"},
		{"https://h.example/fhir//Condition/1", "https://h.example/fhir"},
		{"https://h.example/Condition/1", "https://h.example"},
		{"https://h.example/fhir/Condition/12", ""}, // another id
		{"https://h.example/fhir/Observation/1", ""},
		{"urn:uuid:0b0b0b0b-0000-4000-8000-000000000001", ""},
		{"ftp://h.example/fhir/Condition/1", ""},
		{"https://user@h.example/fhir/Condition/1", ""},
		{"https:///fhir/Condition/1", ""},
		{ExportBase + "Condition/1", ""},
		{"", ""},
		// RFC 3986 6.2.2-6.2.3: equivalent spellings of one base give one
		// form (review of 4750a67).
		{"https://h.example:443/fhir/Condition/1", "https://h.example/fhir"},
		{"http://h.example:80/fhir/Condition/1", "http://h.example/fhir"},
		{"https://h.example:/fhir/Condition/1", "https://h.example/fhir"},
		{"https://h.example:80/fhir/Condition/1", "https://h.example:80/fhir"},
		{"http://h.example:08080/fhir/Condition/1", "http://h.example:8080/fhir"},
		{"https://h.example:99999/fhir/Condition/1", ""},
		{"https://h.example/%66hir/Condition/1", "https://h.example/fhir"},
		{"https://h.example/%7Eab%2d%5F/Condition/1", "https://h.example/~ab-_"},
		{"https://h.example/a%2fb/Condition/1", "https://h.example/a%2Fb"},
		{"https://h.example/a%20b/Condition/1", "https://h.example/a%20b"},
		{"http://[2001:db8:0:0:0:0:0:1]/fhir/Condition/1", "http://[2001:db8::1]/fhir"},
		{"http://[2001:DB8::1]:8080/fhir/Condition/1", "http://[2001:db8::1]:8080/fhir"},
		{"http://[::ffff:192.0.2.1]/fhir/Condition/1", "http://[::ffff:192.0.2.1]/fhir"},
		{"http://192.0.2.1/fhir/Condition/1", "http://192.0.2.1/fhir"},
		{"http://[not:an:address]/fhir/Condition/1", ""},
		{"https://h.example/fhir/Condition/1?x=1", ""},
		{"http://:8080/fhir/Condition/1", ""}, // a port, no host (FuzzServerBase)
	} {
		if got := serverBase(c.url, "Condition", "1"); got != c.want {
			t.Errorf("ServerBase(%q) = %q, want %q", c.url, got, c.want)
		}
	}
	// Series compare serverKey: http and https of one host and path are
	// one server; other hosts, ports or paths are not.
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"http://h.example/fhir", "https://h.example/fhir", true},
		{"http://h.example/fhir", "https://h.example:443/fhir", true},
		{"http://h.example/fhir", "https://h.example/fhir/r4", false},
		{"https://h.example:8443/fhir", "https://h.example/fhir", false},
		{"https://h.example/fhir", "https://g.example/fhir", false},
		{"", "https://h.example/fhir", false},
		{"", "", true},
	} {
		ka := serverKey(serverBase(c.a+"/Condition/1", "Condition", "1"))
		kb := serverKey(serverBase(c.b+"/Condition/1", "Condition", "1"))
		if (ka == kb) != c.same {
			t.Errorf("serverKey(%q) = %q, serverKey(%q) = %q: same %v, want %v", c.a, ka, c.b, kb, ka == kb, c.same)
		}
	}
}

// serverBase takes any fullUrl without panicking, and its result is a
// fixed point: a base it returns, given back as a fullUrl's base, comes out
// unchanged (else one server's resources would fall into two series once a
// resource named its server in the normal form), and it never names
// medvault's own export base.
func FuzzServerBase(f *testing.F) {
	for _, u := range []string{
		"HTTP://H.Example:8080/Fhir/R4/Condition/1",
		"https://h.example/%7Eab%2d%5F/Condition/1",
		"http://[2001:DB8::1]:8080/fhir/Condition/1",
		"https://h.example/a%2fb/Condition/1",
		"https://h.example/fhir//Condition/1",
		"http://h.example:08080/fhir/Condition/1",
		ExportBase + "Condition/1",
		"urn:uuid:0b0b0b0b-0000-4000-8000-000000000001",
	} {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, u string) {
		b := serverBase(u, "Condition", "1")
		if b == "" {
			return
		}
		if again := serverBase(b+"/Condition/1", "Condition", "1"); again != b {
			t.Fatalf("serverBase(%q) = %q, but serverBase(%q/Condition/1) = %q", u, b, b, again)
		}
		if b+"/" == ExportBase || serverKey(b) == "" {
			t.Fatalf("serverBase(%q) = %q", u, b)
		}
	})
}
