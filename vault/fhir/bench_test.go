package fhir

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// BenchmarkSyntheaBundles parses the 8 Synthea patient bundles and
// propagates labels in each, as an import does (brief budget: < 1 s for
// all of them, including the vault's writes).
func BenchmarkSyntheaBundles(b *testing.B) {
	var files [][]byte
	total := 0
	for _, f := range sharedFiles(b, "synthea-r4") {
		name := filepath.Base(f)
		if strings.HasPrefix(name, "hospital") || strings.HasPrefix(name, "practitioner") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, data)
		total += len(data)
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for _, data := range files {
			rs, err := ReadAll(bytes.NewReader(data), "s.json", Limits{})
			if err != nil {
				b.Fatal(err)
			}
			Propagate(rs)
			n += len(rs)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
}

var (
	ndjson100kOnce sync.Once
	ndjson100k     []byte
)

func generated100k(b *testing.B) []byte {
	ndjson100kOnce.Do(func() {
		var buf bytes.Buffer
		if err := Generate(&buf, 100_000, 1); err != nil {
			b.Fatal(err)
		}
		ndjson100k = buf.Bytes()
	})
	return ndjson100k
}

// BenchmarkNDJSON100k streams a generated 100,000-resource NDJSON file
// through the reader without keeping the resources (brief budget: well
// under 10 s in bounded memory).
func BenchmarkNDJSON100k(b *testing.B) {
	data := generated100k(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		r := NewReader(bytes.NewReader(data), "gen.ndjson")
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkBundle100k is the same data as one streamed Bundle.
func BenchmarkBundle100k(b *testing.B) {
	data := generated100k(b)
	var buf bytes.Buffer
	bw := NewBundleWriter(&buf)
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte{'\n'}) {
		if err := bw.WriteRaw("", line); err != nil {
			b.Fatal(err)
		}
	}
	bw.Close()
	bundle := buf.Bytes()
	b.SetBytes(int64(len(bundle)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		r := NewReader(bytes.NewReader(bundle), "gen.json")
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkPropagate100k propagates labels over 100,000 resources held in
// memory (the largest batch the generator's file makes).
func BenchmarkPropagate100k(b *testing.B) {
	data := generated100k(b)
	rs, err := ReadAll(bytes.NewReader(data), "gen.ndjson", Limits{})
	if err != nil {
		b.Fatal(err)
	}
	own := make([][]LabelReason, len(rs))
	for i, r := range rs {
		own[i] = r.Why
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for i, r := range rs { // reset to the labels each resource had on its own
			r.Why = own[i]
			r.Labels = r.Labels[:0]
			for _, w := range own[i] {
				r.Labels = append(r.Labels, w.Label)
			}
			sortLabels(r.Labels)
		}
		b.StartTimer()
		Propagate(rs)
	}
}

// BenchmarkGenerate100k measures the generator itself.
func BenchmarkGenerate100k(b *testing.B) {
	for b.Loop() {
		if err := Generate(io.Discard, 100_000, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteBundle measures export of the Synthea-sized set.
func BenchmarkWriteBundle(b *testing.B) {
	data := generated100k(b)
	rs, err := ReadAll(bytes.NewReader(data), "gen.ndjson", Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		bw := NewBundleWriter(io.Discard)
		for _, r := range rs {
			if err := bw.Write(r); err != nil {
				b.Fatal(err)
			}
		}
		bw.Close()
	}
}
