package vault

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/fhir"
)

// peakLiveHeap samples the heap found live by the latest garbage
// collection every millisecond until stop is closed, and reports the peak.
func peakLiveHeap(stop <-chan struct{}) <-chan float64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	return samplePeak(stop, time.Millisecond, func() float64 {
		metrics.Read(s)
		return float64(s[0].Value.Uint64())
	})
}

// importPeak imports n generated resources into a fresh vault and returns
// the peak live heap while it ran.
func importPeak(t *testing.T, n int) float64 {
	var nd bytes.Buffer
	if err := fhir.Generate(&nd, n, 1); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gen.ndjson")
	if err := os.WriteFile(path, nd.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	nd = bytes.Buffer{}
	v := newTestVault(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	stop := make(chan struct{})
	peak := peakLiveHeap(stop)
	st, err := v.Import(path, f, nil)
	close(stop)
	if err != nil || st.Added != n {
		t.Fatalf("import of %d: %+v %v", n, st, err)
	}
	return <-peak
}

// Memory does not grow with the number of resources in the file: the peak
// live heap importing 80k resources stays within 1.5 times that of 20k.
func TestImportMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 100k generated resources")
	}
	small, large := importPeak(t, 20_000), importPeak(t, 80_000)
	t.Logf("peak live heap: 20k resources %.1f MiB, 80k %.1f MiB", small/(1<<20), large/(1<<20))
	if large > 1.5*small {
		t.Errorf("peak live heap grew from %.1f to %.1f MiB with 4x the resources", small/(1<<20), large/(1<<20))
	}
}
