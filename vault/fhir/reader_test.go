package fhir

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/expected.txt from the current output")

// fixtures are the hand-written good inputs of testdata/.
var fixtures = []string{
	"bundle-small.json",
	"bundle-entry-first.json",
	"resources.ndjson",
	"bom.ndjson",
	"patient.json",
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// describe renders the index of one resource as one line of the
// known-answer file. The SHA-256 of Raw pins the exact bytes.
func describe(r *Resource) string {
	sum := sha256.Sum256(r.Raw)
	date := "-"
	if !r.Date.IsZero() {
		date = r.Date.Format(time.RFC3339)
	}
	var labels []string
	for _, l := range r.Labels {
		labels = append(labels, string(l))
	}
	return fmt.Sprintf("%d|line=%d|off=%d|%s|%s|%s|%s|%s|%s|%q|refs=%d|sha256=%s",
		r.Index, r.Line, r.Offset, r.Type, r.ID, r.FullURL, r.Category, strings.Join(labels, ","),
		date, r.Title, len(r.References), hex.EncodeToString(sum[:8]))
}

// TestKnownAnswers reads every fixture, propagates labels within it and
// compares the index with testdata/expected.txt (reviewed by hand; rewrite
// with -update only after checking the diff).
func TestKnownAnswers(t *testing.T) {
	var out strings.Builder
	for _, name := range fixtures {
		data := readFixture(t, name)
		rs, err := ReadAll(bytes.NewReader(data), name, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		Propagate(rs)
		fmt.Fprintf(&out, "== %s\n", name)
		for _, r := range rs {
			fmt.Fprintln(&out, describe(r))
			if got := data[r.Offset : r.Offset+int64(len(r.Raw))]; !bytes.Equal(got, r.Raw) {
				t.Errorf("%s entry %d: Raw is not the input bytes at Offset", name, r.Index)
			}
		}
	}
	path := filepath.Join("testdata", "expected.txt")
	if *update {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Errorf("index differs from %s; got:\n%s", path, out.String())
	}
}

// TestRawIsExact checks Raw against an independent decoding of each bundle
// with encoding/json: json.RawMessage keeps the bytes of each entry's
// resource exactly.
func TestRawIsExact(t *testing.T) {
	for _, name := range []string{"bundle-small.json", "bundle-entry-first.json"} {
		data := readFixture(t, name)
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		var want [][]byte
		for _, e := range b.Entry {
			if e.Resource != nil {
				want = append(want, e.Resource)
			}
		}
		rs, err := ReadAll(bytes.NewReader(data), name, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != len(want) {
			t.Fatalf("%s: %d resources, want %d", name, len(rs), len(want))
		}
		for i := range rs {
			if !bytes.Equal(rs[i].Raw, want[i]) {
				t.Errorf("%s: resource %d differs from the input bytes", name, i)
			}
		}
	}
}

func TestFormats(t *testing.T) {
	tests := []struct {
		name    string
		format  Format
		n       int
		skipped int
		btype   string
	}{
		{"bundle-small.json", FormatBundle, 15, 1, "transaction"},
		{"bundle-entry-first.json", FormatBundle, 2, 0, "collection"},
		{"resources.ndjson", FormatNDJSON, 5, 0, ""},
		{"bom.ndjson", FormatNDJSON, 2, 0, ""},
		{"patient.json", FormatResource, 1, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(readFixture(t, tc.name)), tc.name)
			n := 0
			for {
				_, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
			if r.Format() != tc.format || n != tc.n || r.Skipped() != tc.skipped || r.BundleType() != tc.btype || r.Count() != n {
				t.Errorf("format %v n %d skipped %d type %q; want %v %d %d %q",
					r.Format(), n, r.Skipped(), r.BundleType(), tc.format, tc.n, tc.skipped, tc.btype)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Errorf("Next after EOF = %v", err)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		file  string
		want  error
		index int
		line  int // 0: not checked
		good  int // resources returned before the error
	}{
		{"not-json.txt", ErrNotJSON, -1, 1, 0},
		{"array.json", ErrNotFHIR, -1, 1, 0},
		{"not-fhir.json", ErrNotFHIR, -1, 1, 0},
		{"unknown-type.json", ErrUnknownType, 0, 1, 0},
		{"no-id.json", ErrNoID, 0, 1, 0},
		{"bad-id.json", ErrBadID, 0, 1, 0},
		{"empty.json", ErrNotFHIR, -1, 0, 0},
		{"entry-no-resource.json", ErrNoResource, 1, 3, 1},
		{"truncated.json", ErrTruncated, 1, 0, 1},
		{"dup-key.json", ErrDuplicateKey, 1, 3, 1},
		{"dup-key-escaped.json", ErrDuplicateKey, 0, 1, 0},
		{"bundle-dup-entry.json", ErrDuplicateKey, -1, 0, 1},
		{"trailing.json", ErrNotFHIR, -1, 0, 1},
		{"bundle-no-type.json", ErrNotFHIR, -1, 0, 1},
		{"bundle-bad-type.json", ErrNotFHIR, -1, 0, 0},
		{"bad-line.ndjson", ErrNotJSON, 2, 3, 2},
		{"unknown-line.ndjson", ErrUnknownType, 1, 2, 1},
		{"truncated.ndjson", ErrTruncated, 1, 2, 1},
		{"entry-not-object.json", ErrNotFHIR, 0, 0, 0},
		{"resource-not-object.json", ErrNotFHIR, 0, 1, 0},
		{"bad-fullurl.json", ErrBadFullURL, 0, 1, 0},
		{"bad-utf8.json", ErrNotJSON, 0, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			name := "bad/" + tc.file
			r := NewReader(bytes.NewReader(readFixture(t, name)), name)
			good := 0
			var err error
			for {
				_, err = r.Next()
				if err != nil {
					break
				}
				good++
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParseError", err, err)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if pe.File != name || pe.Index != tc.index || (tc.line != 0 && pe.Line != tc.line) || good != tc.good {
				t.Errorf("%v: file %q index %d line %d after %d good; want index %d line %d after %d",
					err, pe.File, pe.Index, pe.Line, good, tc.index, tc.line, tc.good)
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name the file", err)
			}
			if _, again := r.Next(); again != err {
				t.Errorf("error not sticky: %v then %v", err, again)
			}
		})
	}
}

// TestErrorsHoldNoContent checks that errors do not echo resource content.
func TestErrorsHoldNoContent(t *testing.T) {
	secret := "SECRET-DIAGNOSIS-TEXT"
	inputs := []string{
		`{"resourceType":"` + secret + `","id":"a"}`,
		`{"resourceType":"Patient","id":"` + secret + ` x"}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"a","text":"` + secret + `` + "\x01" + `"}}]}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"` + secret + ` ","resource":{"resourceType":"Patient","id":"a"}}]}`,
		`{"resourceType":"Patient","id":"a","x":"` + secret + `"` + "\n",
		"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n" + secret + "\n",
	}
	for i, in := range inputs {
		_, err := ReadAll(strings.NewReader(in), "f.json", Limits{})
		if err == nil {
			t.Fatalf("input %d: no error", i)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("input %d: error %q leaks content", i, err)
		}
	}
}

// TestTruncation: every strict prefix of a bundle fails with a ParseError;
// only the whole file reads to io.EOF.
func TestTruncation(t *testing.T) {
	data := readFixture(t, "bundle-small.json")
	full := bytes.TrimRight(data, " \n")
	for n := 0; n < len(full); n++ {
		_, err := ReadAll(bytes.NewReader(full[:n]), "cut.json", Limits{})
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("prefix %d: error %v, want a *ParseError", n, err)
		}
	}
	if _, err := ReadAll(bytes.NewReader(full), "whole.json", Limits{}); err != nil {
		t.Fatal(err)
	}
}

// TestOneByteReads reads through a reader returning one byte at a time.
func TestOneByteReads(t *testing.T) {
	for _, name := range fixtures {
		data := readFixture(t, name)
		a, err := ReadAll(bytes.NewReader(data), name, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := ReadAll(iotest.OneByteReader(bytes.NewReader(data)), name, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != len(b) {
			t.Fatalf("%s: %d vs %d resources", name, len(a), len(b))
		}
		for i := range a {
			if describe(a[i]) != describe(b[i]) {
				t.Errorf("%s: %s\n vs %s", name, describe(a[i]), describe(b[i]))
			}
		}
	}
}

func TestReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	data := readFixture(t, "bundle-small.json")
	r := io.MultiReader(bytes.NewReader(data[:2000]), iotest.ErrReader(boom))
	_, err := ReadAll(r, "x.json", Limits{})
	if !errors.Is(err, ErrRead) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("error %v, want ErrRead wrapping the cause", err)
	}
}

// bigBundle returns a bundle of n small entries, resourceType first.
func bigBundle(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"urn:uuid:00000000-0000-4000-8000-%012d","resource":{"resourceType":"Observation","id":"o%d","status":"final","code":{"text":"x"},"valueQuantity":{"value":%d}}}`, i, i, i)
	}
	b.WriteString("]}")
	return b.Bytes()
}

func TestLimits(t *testing.T) {
	t.Run("bundle streams beyond the resource limit", func(t *testing.T) {
		// 2 MB of entries with a 16 KiB per-resource limit: the guard
		// would refuse if the decoder buffered the bundle.
		data := bigBundle(15000)
		rs, err := ReadAll(bytes.NewReader(data), "big.json", Limits{MaxResourceSize: 16 << 10})
		if err != nil || len(rs) != 15000 {
			t.Fatalf("%d resources, %v", len(rs), err)
		}
	})
	huge := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name string
		in   string
		lim  Limits
		want error
	}{
		{"entry", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"a","x":"` + huge(1<<20) + `"}}]}`, Limits{MaxResourceSize: 64 << 10}, ErrTooLarge},
		{"top-level field", `{"resourceType":"Bundle","type":"collection","x":"` + huge(1<<20) + `","entry":[]}`, Limits{MaxResourceSize: 64 << 10}, ErrTooLarge},
		{"single", `{"resourceType":"Patient","id":"a","x":"` + huge(1<<20) + `"}`, Limits{MaxResourceSize: 64 << 10}, ErrTooLarge},
		{"entry-first bundle", `{"type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"a","x":"` + huge(1<<20) + `"}}],"resourceType":"Bundle"}`, Limits{MaxResourceSize: 64 << 10}, ErrTooLarge},
		{"ndjson line", "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\",\"x\":\"" + huge(1<<20) + "\"}\n", Limits{MaxResourceSize: 64 << 10}, ErrTooLarge},
		{"count bundle", string(bigBundle(11)), Limits{MaxResources: 10}, ErrTooMany},
		{"count ndjson", strings.Repeat("{\"resourceType\":\"Patient\",\"id\":\"a\"}\n", 11), Limits{MaxResources: 10}, ErrTooMany},
		{"deep", `{"resourceType":"Patient","id":"a","x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`, Limits{}, ErrTooDeep},
		{"deeper than encoding/json allows", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"a","x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}}]}`, Limits{}, ErrTooDeep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadAll(strings.NewReader(tc.in), "lim.json", tc.lim)
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("exactly at the limit", func(t *testing.T) {
		in := `{"resourceType":"Patient","id":"a"}`
		bundle := `{"resourceType":"Bundle","type":"collection","entry":[{"resource":` + in + `},{"resource":` + in + `}]}`
		for _, f := range []string{in + "\n" + in + "\n", in, bundle} {
			rs, err := ReadAll(strings.NewReader(f), "n.json", Limits{MaxResourceSize: len(in), MaxResources: 2})
			if err != nil || len(rs) == 0 {
				t.Errorf("%d, %v", len(rs), err)
			}
			_, err = ReadAll(strings.NewReader(f), "n.json", Limits{MaxResourceSize: len(in) - 1})
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("one byte over: %v", err)
			}
		}
	})
}

func TestIndexFields(t *testing.T) {
	rs, err := ReadAll(bytes.NewReader(readFixture(t, "bundle-small.json")), "b.json", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]*Resource{}
	for _, r := range rs {
		by[r.Key()] = r
	}
	p := by["Patient/0d3c3f7e-2a52-4b8e-9a55-5f0c2f1f0001"]
	if p.Title != "Patient: Alex J. Quinn" || p.Subject != "Patient/0d3c3f7e-2a52-4b8e-9a55-5f0c2f1f0001" || p.Date.Format("2006-01-02") != "1984-03-09" {
		t.Errorf("patient: %q %q %v", p.Title, p.Subject, p.Date)
	}
	e := by["Encounter/enc-1"]
	if e.Date != time.Date(2021, 2, 3, 14, 30, 0, 0, time.UTC) || e.Subject != "urn:uuid:0d3c3f7e-2a52-4b8e-9a55-5f0c2f1f0001" {
		t.Errorf("encounter: %v %q", e.Date, e.Subject)
	}
	c := by["Condition/cond-1"]
	if len(c.Code) != 1 || c.Code[0].Code != "F329" || c.Title != "Depression" || c.Date != time.Date(2021, 2, 1, 0, 0, 0, 0, time.UTC) {
		t.Errorf("condition: %+v %q %v", c.Code, c.Title, c.Date)
	}
	eob := by["ExplanationOfBenefit/eob-1"]
	if got := strings.Join(eob.References, " "); got != "Patient/0d3c3f7e-2a52-4b8e-9a55-5f0c2f1f0001 Claim/claim-1/_history/2" {
		t.Errorf("eob references %q", got)
	}
	note := by["Observation/note-1"]
	if note.Title != "Café [31mred [0m" || len(note.References) != 0 {
		t.Errorf("note: title %q (escape sequences must go), refs %v", note.Title, note.References)
	}
	cond2 := by["Condition/cond-2"]
	if len(cond2.Security) != 2 || !cond2.HasLabel("SUD") {
		t.Errorf("cond-2 security %+v labels %v", cond2.Security, cond2.Labels)
	}
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"2019", "2019-01-01T00:00:00Z", true},
		{"2019-05", "2019-05-01T00:00:00Z", true},
		{"2019-05-06", "2019-05-06T00:00:00Z", true},
		{"2019-05-06T10:11:12Z", "2019-05-06T10:11:12Z", true},
		{"2019-05-06T10:11:12.5+02:00", "2019-05-06T08:11:12.5Z", true},
		{"2019-05-06T10:11:12-05:00", "2019-05-06T15:11:12Z", true},
		{"2019-05-06T10:11:12", "2019-05-06T10:11:12Z", true},
		{"2019-13", "", false},
		{"yesterday", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := ParseDate(tc.in)
		if ok != tc.ok || (ok && got.Format(time.RFC3339Nano) != tc.want) {
			t.Errorf("ParseDate(%q) = %v, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCleanTitle(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Hemoglobin A1c", "Hemoglobin A1c"},
		{"  a \t b\n", "a b"},
		{"x\x1b[2Jy", "x [2Jy"},
		{"evil\u202Eoverride", "evil override"},
		{strings.Repeat("é", 300), strings.Repeat("é", maxTitle)},
	}
	for _, tc := range tests {
		if got := cleanTitle(tc.in); got != tc.want {
			t.Errorf("cleanTitle(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValidator(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{`{}`, nil},
		{`{"a":[1,-2.5e+3,true,false,null,"x\u00e9\n"]}`, nil},
		{`{"a":1,"b":{"a":2}}`, nil},
		{`{"a":1,"a":2}`, errDupKey},
		{`{"a":1,"\u0061":2}`, errDupKey},
		{`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k3":13}`, errDupKey},
		{`{"a":01}`, errSyntax},
		{`{"a":1,}`, errSyntax},
		{`{"a":"\x"}`, errSyntax},
		{"{\"a\":\"\x01\"}", errSyntax},
		{"{\"a\":\"\xff\"}", errUTF8},
		{`{"a":1} `, errSyntax},
		{` {"a":1}`, errSyntax},
		{`[1,2`, errSyntax},
		{`tru`, errSyntax},
		{`1.`, errSyntax},
		{`-`, errSyntax},
	}
	var v validator
	for _, tc := range tests {
		if got := v.validate([]byte(tc.in)); got != tc.want {
			t.Errorf("validate(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestLineNumbers checks entry line numbers in a bundle spanning many
// guard chunks.
func TestLineNumbers(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("{\n\"resourceType\":\"Bundle\",\n\"type\":\"collection\",\n\"entry\":[\n")
	for i := 0; i < 5000; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		if i%7 == 0 {
			b.WriteString("\n\n")
		}
		fmt.Fprintf(&b, `{"resource":{"resourceType":"Patient","id":"p%d","name":[{"text":"%s"}]}}`, i, strings.Repeat("n", i%300))
	}
	b.WriteString("\n]}\n")
	data := b.Bytes()
	for _, rd := range []io.Reader{bytes.NewReader(data), iotest.HalfReader(bytes.NewReader(data))} {
		rs, err := ReadAll(rd, "lines.json", Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if want := bytes.Count(data[:r.Offset], []byte{'\n'}) + 1; r.Line != want {
				t.Fatalf("entry %d: line %d, want %d", r.Index, r.Line, want)
			}
		}
	}
}
