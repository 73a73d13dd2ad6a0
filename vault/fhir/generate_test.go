package fhir

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/medvault/medvault/vault/record"
)

func TestGenerate(t *testing.T) {
	var a, b, c bytes.Buffer
	const n = 3000
	if err := Generate(&a, n, 42); err != nil {
		t.Fatal(err)
	}
	if err := Generate(&b, n, 42); err != nil {
		t.Fatal(err)
	}
	if err := Generate(&c, n, 43); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("same seed, different output")
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Error("different seeds, same output")
	}
	r := NewReader(bytes.NewReader(a.Bytes()), "gen.ndjson")
	var rs []*Resource
	for {
		res, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, res)
	}
	if len(rs) != n || r.Format() != FormatNDJSON {
		t.Fatalf("%d resources, format %v", len(rs), r.Format())
	}
	keys := map[string]bool{}
	cats := map[record.Category]int{}
	for _, res := range rs {
		if keys[res.Key()] {
			t.Fatalf("duplicate %s", res.Key())
		}
		keys[res.Key()] = true
		cats[res.Category]++
		if res.Date.IsZero() && res.Type != "Device" {
			t.Errorf("%s has no date", res.Key())
		}
	}
	for _, c := range []record.Category{record.Demographics, record.Encounters, record.Vitals, record.Labs,
		record.Problems, record.Medications, record.Immunizations, record.Procedures, record.Billing,
		record.SocialHistory, record.Allergies} {
		if cats[c] == 0 {
			t.Errorf("no %s resources", c)
		}
	}
	// Every reference resolves inside the file.
	for _, res := range rs {
		for _, ref := range res.References {
			if !keys[ref] {
				t.Errorf("%s references unknown %s", res.Key(), ref)
			}
		}
	}
	Propagate(rs)
	labels := map[record.Label]int{}
	for _, res := range rs {
		for _, l := range res.Labels {
			labels[l]++
		}
	}
	for _, l := range []record.Label{record.MH, record.SUD, record.SEX, record.HIV, record.STD} {
		if labels[l] == 0 {
			t.Errorf("no %s resources", l)
		}
	}
	if err := Generate(io.Discard, -1, 1); err == nil {
		t.Error("negative count accepted")
	}
	var empty bytes.Buffer
	if err := Generate(&empty, 0, 1); err != nil || empty.Len() != 0 {
		t.Errorf("n=0: %v, %d bytes", err, empty.Len())
	}
}

// TestWriteGenerated writes $MEDVAULT_GEN_N generated resources as NDJSON
// to $MEDVAULT_GEN_OUT, for scripts (docs/bench/import.sh); without them
// it skips.
func TestWriteGenerated(t *testing.T) {
	n, out := os.Getenv("MEDVAULT_GEN_N"), os.Getenv("MEDVAULT_GEN_OUT")
	if n == "" || out == "" {
		t.Skip("set MEDVAULT_GEN_N and MEDVAULT_GEN_OUT to write generated data")
	}
	count, err := strconv.Atoi(n)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if err := Generate(w, count, 1); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		t.Fatal(err)
	}
}
