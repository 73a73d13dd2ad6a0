package fhir

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

// Each label export writes is the ActCode code of its name, and the
// reader maps that code back to the same label and no other: export and
// import agree on every label.
func TestSecurityLabelCodesReadBack(t *testing.T) {
	for _, l := range record.Labels() {
		if got := securityLabels[string(l)]; !reflect.DeepEqual(got, []record.Label{l}) {
			t.Errorf("ActCode %s reads back as %v, want [%s]", l, got, l)
		}
	}
}

// exported is the coding AddSecurityLabels writes for l.
func exported(l record.Label) string {
	return `{"extension":[{"url":"` + classifierURL + `","valueReference":{"display":"medvault"}}],"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + string(l) + `"}`
}

func TestAddSecurityLabels(t *testing.T) {
	mh, sdv := exported(record.MH), exported(record.SDV)
	const act = `"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode"`
	for _, tc := range []struct {
		name   string
		in     string
		labels []record.Label
		want   string
	}{
		{"no labels", `{"resourceType":"Claim","id":"c"}`, nil, `{"resourceType":"Claim","id":"c"}`},
		{"no meta", `{"resourceType":"Claim","id":"c","status":"active"}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[` + mh + `]},"status":"active"}`},
		{"no meta, id first", `{"id":"c","resourceType":"Claim"}`, []record.Label{record.MH},
			`{"id":"c","meta":{"security":[` + mh + `]},"resourceType":"Claim"}`},
		{"labels in record.Labels order", `{"resourceType":"Claim","id":"c"}`, []record.Label{record.SDV, record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[` + mh + `,` + sdv + `]}}`},
		{"meta without security", `{"resourceType":"Claim","id":"c","meta":{"versionId":"2"}}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[` + mh + `],"versionId":"2"}}`},
		{"empty meta", `{"resourceType":"Claim","id":"c","meta":{ }}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[` + mh + `] }}`},
		{"other codings kept", `{"resourceType":"Claim","id":"c","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"},` + mh + `]}}`},
		{"empty array", `{"resourceType":"Claim","id":"c","meta":{"security":[]}}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[` + mh + `]}}`},
		{"already there", `{"resourceType":"Claim","id":"c","meta":{"security":[{` + act + `,"code":"MH"}]}}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[{` + act + `,"code":"MH"}]}}`},
		{"given by another code", `{"resourceType":"Claim","id":"c","meta":{"security":[{"system":"urn:oid:2.16.840.1.113883.5.4","code":"ETH"}]}}`, []record.Label{record.SUD, record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[{"system":"urn:oid:2.16.840.1.113883.5.4","code":"ETH"},` + mh + `]}}`},
		{"one Coding, not an array", `{"resourceType":"Claim","id":"c","meta":{"security":{"code":"R"}}}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[{"code":"R"},` + mh + `]}}`},
		{"security null", `{"resourceType":"Claim","id":"c","meta":{"security":null}}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[` + mh + `]}}`},
		{"meta null", `{"resourceType":"Claim","id":"c","meta":null}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[` + mh + `]}}`},
		{"escaped names", `{"resourceType":"Claim","id":"c","m\u0065ta":{"s\u0065curity":[]}}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","m\u0065ta":{"s\u0065curity":[` + mh + `]}}`},
		{"pretty-printed", "{\n  \"resourceType\": \"Claim\",\n  \"id\": \"c\",\n  \"meta\": {\n    \"security\": [\n      {\"code\": \"R\"}\n    ]\n  }\n}", []record.Label{record.MH},
			"{\n  \"resourceType\": \"Claim\",\n  \"id\": \"c\",\n  \"meta\": {\n    \"security\": [\n      {\"code\": \"R\"}\n    ," + mh + "]\n  }\n}"},
		{"contained meta untouched", `{"resourceType":"Claim","id":"c","contained":[{"resourceType":"Condition","id":"x","meta":{"security":[]}}]}`, []record.Label{record.MH},
			`{"resourceType":"Claim","id":"c","meta":{"security":[` + mh + `]},"contained":[{"resourceType":"Condition","id":"x","meta":{"security":[]}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := AddSecurityLabels(&out, []byte(tc.in), tc.labels); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", out.String(), tc.want)
			}
			// The reader gives the labels back, and nothing else moved.
			r, err := ReadAll(strings.NewReader(out.String()), "t.json", Limits{})
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range tc.labels {
				if !r[0].HasLabel(l) {
					t.Errorf("read back without %s: %v", l, r[0].Labels)
				}
			}
			if !sameButSecurity(t, tc.in, out.String()) {
				t.Errorf("more than meta.security changed:\n%s\n%s", tc.in, out.String())
			}
			// Again: nothing more to add.
			var again bytes.Buffer
			if err := AddSecurityLabels(&again, out.Bytes(), tc.labels); err != nil || again.String() != out.String() {
				t.Errorf("second pass: %v\n%s", err, again.String())
			}
		})
	}
	var out bytes.Buffer
	for _, bad := range []string{`[1]`, `{"a":1,"a":2}`, `{"resourceType":`} {
		if err := AddSecurityLabels(&out, []byte(bad), []record.Label{record.MH}); err != ErrInvalidRaw || out.Len() != 0 {
			t.Errorf("%s: %v, wrote %q", bad, err, out.String())
		}
	}
}

// sameButSecurity reports whether the JSON documents a and b are equal
// once meta.security is dropped from both (and meta, if nothing else is
// left of it).
func sameButSecurity(t *testing.T, a, b string) bool {
	t.Helper()
	strip := func(s string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		if meta, ok := m["meta"].(map[string]any); ok {
			delete(meta, "security")
			if len(meta) == 0 {
				delete(m, "meta")
			}
		} else if m["meta"] == nil {
			delete(m, "meta")
		}
		return m
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// Rule 2 reads a source's meta.security as a statement about the code;
// the codings an export added are not one: a label propagated to one
// Observation (or set on it by hand) stays on it when the export is
// imported, and does not spread to every Observation with its code.
func TestPropagateRule2IgnoresExportedLabels(t *testing.T) {
	obs := func(id, meta string) string {
		return `{"resourceType":"Observation","id":"` + id + `",` + meta + `"code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]}}`
	}
	for _, tc := range []struct {
		name string
		meta string
		want []record.Label
	}{
		{"source", `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"MH"}]},`, []record.Label{record.MH}},
		{"export", `"meta":{"security":[` + exported(record.MH) + `]},`, nil},
	} {
		rs := parseNDJSON(t, obs("a", tc.meta), obs("b", ""))
		Propagate(rs)
		if got := labelsOf(rs); !reflect.DeepEqual(got["Observation/b"], tc.want) || !reflect.DeepEqual(got["Observation/a"], []record.Label{record.MH}) {
			t.Errorf("%s: %v; want b %v", tc.name, got, tc.want)
		}
		if got := SourceLabels(rs[0]); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: SourceLabels %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRewriteReferences(t *testing.T) {
	const e = "urn:uuid:2b3c1f9e-0000-4000-8000-00000000000e"
	to := map[string]string{e: "Encounter/2b3c1f9e-0000-4000-8000-00000000000e"}
	for _, tc := range []struct{ in, want string }{
		{`{"resourceType":"Claim","item":[{"encounter":[{"reference":"` + e + `"}]}]}`,
			`{"resourceType":"Claim","item":[{"encounter":[{"reference":"Encounter/2b3c1f9e-0000-4000-8000-00000000000e"}]}]}`},
		// Only Reference.reference: not an identifier's value, not a
		// fullUrl-like string elsewhere, not another urn.
		{`{"resourceType":"Claim","identifier":[{"value":"` + e + `"}],"x":{"reference":"urn:uuid:2b3c1f9e-0000-4000-8000-00000000000f"}}`,
			`{"resourceType":"Claim","identifier":[{"value":"` + e + `"}],"x":{"reference":"urn:uuid:2b3c1f9e-0000-4000-8000-00000000000f"}}`},
		// Escapes are read; whitespace around is kept.
		{"{\"resourceType\":\"Claim\",\"a\":{\"reference\" : \"urn:uuid:2b3c1f9e-0000-4000-8000-00000000000\\u0065\" }}",
			"{\"resourceType\":\"Claim\",\"a\":{\"reference\" : \"Encounter/2b3c1f9e-0000-4000-8000-00000000000e\" }}"},
	} {
		var out bytes.Buffer
		n, err := RewriteReferences(&out, []byte(tc.in), to)
		if err != nil || out.String() != tc.want {
			t.Errorf("%s:\ngot  %s (%v)\nwant %s", tc.in, out.String(), err, tc.want)
		}
		if want := strings.Count(tc.want, `"Encounter/`); n != want {
			t.Errorf("%s: %d replaced, want %d", tc.in, n, want)
		}
	}
}

// NDJSON has no fullUrls: a urn:uuid reference finds the one resource of
// the batch with that id, and nothing when two resources of different
// types have it. A fullUrl that matches wins.
func TestPropagateUUIDFallback(t *testing.T) {
	const id = "2b3c1f9e-0000-4000-8000-00000000000e"
	enc := `{"resourceType":"Encounter","id":"` + id + `","reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}`
	enc2 := `{"resourceType":"Encounter","id":"` + id + `","status":"finished","reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}]}`
	other := `{"resourceType":"Observation","id":"` + id + `","status":"final"}`
	claim := `{"resourceType":"Claim","id":"cl","item":[{"encounter":[{"reference":"urn:uuid:` + id + `"}]}]}`
	for _, tc := range []struct {
		name  string
		lines []string
		want  []record.Label
	}{
		{"one resource", []string{claim, enc}, []record.Label{record.MH}},
		{"two versions of it", []string{enc, claim, enc2}, []record.Label{record.MH}},
		{"two resources", []string{enc, claim, other}, nil},
		{"upper case is another id", []string{strings.Replace(claim, "0e", "0E", 1), enc}, nil},
	} {
		rs := parseNDJSON(t, tc.lines...)
		Propagate(rs)
		if got := labelsOf(rs)["Claim/cl"]; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Claim %v, want %v", tc.name, got, tc.want)
		}
	}
	// In a Bundle, the entry whose fullUrl it is, not the one with the id.
	rs, err := ReadAll(strings.NewReader(`{"resourceType":"Bundle","type":"collection","entry":[
{"fullUrl":"urn:uuid:`+id+`","resource":{"resourceType":"Observation","id":"o1","status":"final"}},
{"fullUrl":"urn:uuid:2b3c1f9e-0000-4000-8000-0000000000aa","resource":`+enc+`},
{"fullUrl":"urn:uuid:2b3c1f9e-0000-4000-8000-0000000000ab","resource":`+claim+`}]}`), "b.json", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	Propagate(rs)
	if got := labelsOf(rs)["Claim/cl"]; got != nil {
		t.Errorf("Claim %v: the fullUrl names an unlabelled Observation", got)
	}
	for ref, want := range map[string]bool{"urn:uuid:" + id: true, "urn:uuid:x": false, "Encounter/" + id: false, "urn:oid:1.2.3": false} {
		if got, ok := UUIDReference(ref); ok != want || ok && got != id {
			t.Errorf("UUIDReference(%q) = %q, %v", ref, got, ok)
		}
	}
}
