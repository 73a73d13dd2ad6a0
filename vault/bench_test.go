package vault

import (
	"io"
	"math/rand/v2"
	"testing"
)

// randReader yields n pseudo-random bytes cheaply (ChaCha8), so benchmarks
// measure the vault, not the source.
type randReader struct {
	n int64
	r *rand.ChaCha8
}

func newRandReader(n int64) *randReader {
	return &randReader{n: n, r: rand.NewChaCha8([32]byte{1})}
}

func (r *randReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	r.r.Read(p)
	r.n -= int64(len(p))
	return len(p), nil
}

// BenchmarkAdd measures Add throughput of one record of size
// MEDVAULT_BENCH_SIZE (default 256 MiB) into a fresh vault, fsync included.
func BenchmarkAdd(b *testing.B) {
	size := benchSize()
	v := newTestVault(b)
	b.SetBytes(size)
	stop := make(chan struct{})
	peak := peakRSSAnon(stop)
	b.ResetTimer()
	for range b.N {
		if _, err := v.Add(newRandReader(size), NewRecord{Category: "imaging"}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(stop)
	b.ReportMetric(<-peak, "peak-RssAnon-MiB")
}

// BenchmarkGet measures Get throughput of one record of benchSize bytes.
func BenchmarkGet(b *testing.B) {
	size := benchSize()
	v := newTestVault(b)
	m, err := v.Add(newRandReader(size), NewRecord{Category: "imaging"})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	stop := make(chan struct{})
	peak := peakRSSAnon(stop)
	b.ResetTimer()
	for range b.N {
		if _, err := v.Get(m.ID, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(stop)
	b.ReportMetric(<-peak, "peak-RssAnon-MiB")
}
