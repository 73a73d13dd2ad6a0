package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestBundleWriterRoundTrip(t *testing.T) {
	for _, name := range fixtures {
		in, err := ReadAll(bytes.NewReader(readFixture(t, name)), name, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		bw := NewBundleWriter(&out)
		for _, r := range in {
			if err := bw.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := bw.Close(); err != nil {
			t.Fatal(err)
		}
		if !json.Valid(out.Bytes()) {
			t.Fatalf("%s: output is not JSON", name)
		}
		back := NewReader(bytes.NewReader(out.Bytes()), "out.json")
		var got []*Resource
		for {
			r, err := back.Next()
			if err != nil {
				if err == io.EOF {
					break
				}
				t.Fatalf("%s: re-read: %v", name, err)
			}
			got = append(got, r)
		}
		if back.Format() != FormatBundle || back.BundleType() != "collection" || len(got) != len(in) {
			t.Fatalf("%s: %v %q %d resources", name, back.Format(), back.BundleType(), len(got))
		}
		for i := range in {
			if !bytes.Equal(got[i].Raw, in[i].Raw) {
				t.Errorf("%s: resource %d changed", name, i)
			}
			if got[i].FullURL != exportURL(in[i]) {
				t.Errorf("%s: resource %d fullUrl %q, want %q", name, i, got[i].FullURL, exportURL(in[i]))
			}
		}
	}
}

func TestBundleWriterEmptyAndErrors(t *testing.T) {
	var out bytes.Buffer
	bw := NewBundleWriter(&out)
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != `{"resourceType":"Bundle","type":"collection"}`+"\n" {
		t.Errorf("empty bundle %q", got)
	}
	if err := bw.WriteRaw("", []byte(`{}`)); !errors.Is(err, ErrWriterClosed) {
		t.Errorf("write after close: %v", err)
	}
	bw = NewBundleWriter(&out)
	for _, raw := range []string{``, `[]`, `{"a":1,"a":2}`, `{"a":1} x`, "{\"a\":\"\xff\"}"} {
		if err := bw.WriteRaw("", []byte(raw)); !errors.Is(err, ErrInvalidRaw) {
			t.Errorf("WriteRaw(%q) = %v", raw, err)
		}
	}
	if err := bw.WriteRaw("urn:uuid:a b", []byte(`{"resourceType":"Patient","id":"a"}`)); !errors.Is(err, ErrBadFullURL) {
		t.Errorf("bad fullUrl: %v", err)
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"urn:uuid:x", `a"b\c`, "tab\there", "<&>", "é\u2028"} {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Errorf("%q -> %s -> %q %v", s, b, back, err)
		}
	}
}

func TestNDJSONWriter(t *testing.T) {
	pretty := "{\n  \"resourceType\": \"Patient\",\r\n  \"id\": \"a\",\n  \"name\": [ { \"text\": \"A  B\" } ]\n}"
	compact := `{"resourceType":"Patient","id":"b"}`
	var out bytes.Buffer
	nw := NewNDJSONWriter(&out)
	if err := nw.WriteRaw([]byte(pretty)); err != nil {
		t.Fatal(err)
	}
	if err := nw.Write(&Resource{Raw: []byte(compact)}); err != nil {
		t.Fatal(err)
	}
	if err := nw.WriteRaw([]byte(`[1]`)); !errors.Is(err, ErrInvalidRaw) {
		t.Errorf("array accepted: %v", err)
	}
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"a","name":[{"text":"A  B"}]}` + "\n" + compact + "\n"
	if out.String() != want {
		t.Errorf("got %q\nwant %q", out.String(), want)
	}
	rs, err := ReadAll(bytes.NewReader(out.Bytes()), "o.ndjson", Limits{})
	if err != nil || len(rs) != 2 || string(rs[1].Raw) != compact {
		t.Errorf("re-read: %d %v", len(rs), err)
	}
	if err := nw.WriteRaw([]byte(compact)); !errors.Is(err, ErrWriterClosed) {
		t.Errorf("write after close: %v", err)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWritersReportWriteErrors(t *testing.T) {
	raw := []byte(`{"resourceType":"Patient","id":"a","x":"` + strings.Repeat("y", 100<<10) + `"}`)
	bw := NewBundleWriter(&failWriter{n: 1000})
	err := bw.WriteRaw("", raw)
	if err == nil {
		err = bw.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("bundle writer: %v", err)
	}
	nw := NewNDJSONWriter(&failWriter{n: 1000})
	err = nw.WriteRaw(raw)
	if err == nil {
		err = nw.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("ndjson writer: %v", err)
	}
}
