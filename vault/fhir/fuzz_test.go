package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

func addSeeds(f *testing.F) {
	for _, name := range fixtures {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	bad, _ := filepath.Glob("testdata/bad/*")
	for _, p := range bad {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `{`, `{}`, `[]`, `null`, "\xef\xbb\xbf{}",
		`{"resourceType":"Patient","id":"a"}`,
		"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}",
		`{"entry":[{"resource":{"resourceType":"Patient","id":"a"}}],"resourceType":"Bundle","type":"batch"}`,
		`{"resourceType":"Bundle","type":"history","entry":[{"request":{"method":"DELETE","url":"Patient/1"}},{"search":{"mode":"outcome"},"resource":{"resourceType":"OperationOutcome","id":"o"}}]}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Bundle","id":"n","type":"collection","entry":[]}}]}`,
		`{"resourceType":"List","id":"l","entry":[{"item":{"reference":"Patient/1"}}]}`,
		`{"resourceType":"Patient","resourceType":"Bundle","entry":[]}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzReader feeds arbitrary bytes to the reader: it must never panic,
// every error must be a *ParseError, every Raw must be the exact input
// bytes at its Offset, and resources must survive both writers.
func FuzzReader(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{MaxResourceSize: 1 << 16, MaxResources: 200}
		r := NewReaderLimits(bytes.NewReader(data), "fuzz.json", lim)
		var rs []*Resource
		for {
			res, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("error %v (%T) is not a *ParseError", err, err)
				}
				if pe.File != "fuzz.json" || pe.Err == nil {
					t.Fatalf("bad ParseError %+v", pe)
				}
				break
			}
			end := res.Offset + int64(len(res.Raw))
			if res.Offset < 0 || end > int64(len(data)) || !bytes.Equal(data[res.Offset:end], res.Raw) {
				t.Fatalf("entry %d: Raw is not the input at Offset %d", res.Index, res.Offset)
			}
			if !json.Valid(res.Raw) || !IsResourceType(res.Type) || (res.ID == "" && res.FullURL == "") {
				t.Fatalf("entry %d: invalid resource accepted", res.Index)
			}
			if !res.Category.Valid() {
				t.Fatalf("invalid category %q", res.Category)
			}
			rs = append(rs, res)
		}
		Propagate(rs)
		for _, res := range rs {
			for _, l := range res.Labels {
				if !l.Valid() {
					t.Fatalf("invalid label %q", l)
				}
			}
		}
		if len(rs) == 0 {
			return
		}

		// Bundle writer round trip: the same bytes come back.
		var out bytes.Buffer
		bw := NewBundleWriter(&out)
		for _, res := range rs {
			if err := bw.Write(res); err != nil {
				t.Fatalf("bundle writer: %v", err)
			}
		}
		if err := bw.Close(); err != nil {
			t.Fatal(err)
		}
		back, err := ReadAll(bytes.NewReader(out.Bytes()), "back.json", lim)
		if err != nil || len(back) != len(rs) {
			t.Fatalf("re-reading the bundle: %d of %d, %v", len(back), len(rs), err)
		}
		for i := range rs {
			if !bytes.Equal(back[i].Raw, rs[i].Raw) {
				t.Fatalf("bundle round trip changed resource %d", i)
			}
		}

		// NDJSON writer round trip: compacted only when the bytes hold a
		// line break. Resources known only by fullUrl cannot be NDJSON
		// lines, and a streamable Bundle on the first line is a known
		// limitation (see doc.go).
		for _, res := range rs {
			if res.ID == "" {
				return
			}
		}
		if rs[0].Type == "Bundle" {
			return
		}
		out.Reset()
		nw := NewNDJSONWriter(&out)
		for _, res := range rs {
			if err := nw.Write(res); err != nil {
				t.Fatalf("ndjson writer: %v", err)
			}
		}
		if err := nw.Close(); err != nil {
			t.Fatal(err)
		}
		back, err = ReadAll(bytes.NewReader(out.Bytes()), "back.ndjson", lim)
		if err != nil || len(back) != len(rs) {
			t.Fatalf("re-reading the NDJSON: %d of %d, %v", len(back), len(rs), err)
		}
		for i := range rs {
			want := rs[i].Raw
			if bytes.ContainsAny(want, "\r\n") {
				var c bytes.Buffer
				json.Compact(&c, want)
				want = c.Bytes()
			}
			if !bytes.Equal(back[i].Raw, want) {
				t.Fatalf("ndjson round trip changed resource %d", i)
			}
		}
	})
}

// FuzzValidator compares the strict validator with encoding/json: it may
// refuse more (duplicate names, invalid UTF-8, depth, surrounding
// whitespace) but never accept what encoding/json refuses; and navigating
// what it accepts never panics.
func FuzzValidator(f *testing.F) {
	addSeeds(f)
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":"\ud800"}`, `[[[[]]]]`, `"x"`, `-0.0e-0`, `{"a":{"reference":"b"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v validator
		err := v.validate(data)
		ok := json.Valid(data)
		if err == nil && !ok {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if err == errSyntax && ok && len(bytes.TrimLeft(bytes.TrimRight(data, " \t\r\n"), " \t\r\n")) == len(data) {
			t.Fatalf("refused valid JSON %q", data)
		}
		if err != nil {
			return
		}
		var walk func(jval, int)
		walk = func(j jval, depth int) {
			if depth > maxDepth+1 {
				t.Fatal("walk deeper than validated")
			}
			j.members(func(name []byte, esc bool, val jval) bool {
				if !json.Valid(val) {
					t.Fatalf("member value %q is not a JSON value", val)
				}
				walk(val, depth+1)
				return true
			})
			j.elems(func(e jval) bool {
				if !json.Valid(e) {
					t.Fatalf("element %q is not a JSON value", e)
				}
				walk(e, depth+1)
				return true
			})
			j.str()
		}
		walk(jval(data), 0)
		collectRefs(data)
		if jval(data).isObject() {
			ix := indexer{t: mustTables(t)}
			ix.index(data, "urn:uuid:x")
		}
	})
}

func mustTables(t *testing.T) *tables {
	tb, err := loadTables()
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// FuzzAddSecurityLabels checks what export does to any object the
// validator accepts: the output is valid too, its meta.security gives the
// labels asked for and every label it gave before, a second pass adds
// nothing, and rewriting references keeps it valid.
func FuzzAddSecurityLabels(f *testing.F) {
	addSeeds(f)
	for _, s := range []string{`{"resourceType":"Claim","id":"c"}`, `{"meta":{}}`, `{"meta":{"security":[]}}`,
		`{"meta":{"security":{"code":"R"}}}`, `{"meta":null}`, `{"m\u0065ta":{"security":[{"system":"urn:oid:2.16.840.1.113883.5.4","code":"BH"}]}}`,
		`{"a":{"reference":"urn:uuid:x"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v validator
		if v.validate(data) != nil || !jval(data).isObject() {
			return
		}
		// A label set from the data's length, so every set comes up.
		var ls []record.Label
		for i, l := range record.Labels() {
			if len(data)>>i&1 == 1 {
				ls = append(ls, l)
			}
		}
		var out bytes.Buffer
		if err := AddSecurityLabels(&out, data, ls); err != nil {
			if _, at := memberAt(data, 0, "meta"); at < 0 {
				return // no meta, and nowhere to put one
			}
			t.Fatalf("%q: %v", data, err)
		}
		if err := v.validate(out.Bytes()); err != nil {
			t.Fatalf("%q gave invalid %q: %v", data, out.Bytes(), err)
		}
		got := SecurityLabels(out.Bytes())
		for _, l := range append(ls, SecurityLabels(data)...) {
			if !slices.Contains(got, l) {
				t.Fatalf("%q gave %q, without %s", data, out.Bytes(), l)
			}
		}
		var again bytes.Buffer
		if err := AddSecurityLabels(&again, out.Bytes(), ls); err != nil || !bytes.Equal(again.Bytes(), out.Bytes()) {
			t.Fatalf("second pass over %q: %v, %q", out.Bytes(), err, again.Bytes())
		}
		var rel bytes.Buffer
		if _, err := RewriteReferences(&rel, out.Bytes(), map[string]string{"urn:uuid:x": "Claim/\"y"}); err != nil || v.validate(rel.Bytes()) != nil {
			t.Fatalf("rewriting %q gave %q (%v)", out.Bytes(), rel.Bytes(), err)
		}
	})
}
