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
