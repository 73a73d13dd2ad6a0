package vault

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
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

// BenchmarkStoreFloor stores benchSize bytes the way Add's committer does
// (chunkSize values, batchSize per transaction with its batch marks, blocks
// allocated ahead, the vault's bbolt options, fsync included) but from
// values made beforehand: no reading, no encryption, no hashing. Its
// throughput is what bbolt alone allows, the ceiling for Add's on this
// disk.
func BenchmarkStoreFloor(b *testing.B) {
	size := benchSize()
	db, err := openBolt(filepath.Join(b.TempDir(), "floor.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	// Two batches of values, reused, as Add recycles its buffers.
	per := batchSize / chunkSize
	bufs := make([][]byte, 2*per)
	src := newRandReader(int64(len(bufs)) * chunkSize)
	for i := range bufs {
		bufs[i] = make([]byte, chunkSize)
		io.ReadFull(src, bufs[i])
	}
	b.SetBytes(size)
	b.ResetTimer()
	for n := range b.N {
		id := record.NewID()
		bucket := []byte(fmt.Sprint("floor", n))
		if err := db.Update(func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucket(bucket)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		chunks := uint32((size + chunkSize - 1) / chunkSize)
		var marks batchMark
		var reserved int64
		for first := uint32(0); first < chunks; first += uint32(per) {
			if reserved, err = reserveIn(db, size-int64(first)*chunkSize, reserved); err != nil && !errors.Is(err, errNoPrealloc) {
				b.Fatal(err)
			}
			batch := bufs[:0:0]
			for i := first; i < min(first+uint32(per), chunks); i++ {
				batch = append(batch, bufs[int(i)%len(bufs)])
			}
			var next batchMark
			err := db.Update(func(tx *bbolt.Tx) (err error) {
				next, err = putBatch(tx.Bucket(bucket), id, first, batch, marks)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			marks = next
		}
	}
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

// BenchmarkImportSynthea imports the 8 Synthea patient bundles of
// ../shared/fhir into a fresh vault per iteration (goal: < 1 s after
// unlock). Skips when the data is absent.
func BenchmarkImportSynthea(b *testing.B) {
	files := syntheaFiles(b)
	var data [][]byte
	for _, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		data = append(data, d)
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		v := newTestVault(b)
		b.StartTimer()
		n := 0
		for i, d := range data {
			st, err := v.Import(files[i], bytes.NewReader(d), nil)
			if err != nil {
				b.Fatal(err)
			}
			n += st.Added
		}
		b.ReportMetric(float64(n), "resources")
	}
}

// BenchmarkImport100k imports a generated NDJSON file of 100,000 resources
// (goal: < 10 s, bounded memory), reporting peak RssAnon.
func BenchmarkImport100k(b *testing.B) {
	path := generate100k(b)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		v := newTestVault(b)
		debug.FreeOSMemory()
		stop := make(chan struct{})
		peak := peakRSSAnon(stop)
		f, _ := os.Open(path)
		b.StartTimer()
		st, err := v.Import(path, f, nil)
		b.StopTimer()
		f.Close()
		close(stop)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(st.Added), "resources")
		b.ReportMetric(<-peak, "peak-RssAnon-MiB")
		b.StartTimer()
	}
}

// BenchmarkVerifySynthea runs a full verify of a vault holding the 10
// Synthea bundles of ../shared/fhir, the patients' and the hospital's and
// practitioners' (skips when the data is absent).
func BenchmarkVerifySynthea(b *testing.B) {
	syntheaFiles(b) // skips without the data
	files, _ := filepath.Glob(filepath.Join(sharedFHIR, "synthea-r4", "*.json"))
	v := newTestVault(b)
	n := 0
	for _, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		st, err := v.Import(f, bytes.NewReader(d), nil)
		if err != nil {
			b.Fatal(err)
		}
		n += st.Added
	}
	benchVerify(b, v, n)
}

// BenchmarkVerify100k runs a full verify of a vault holding 100,000
// generated resources, imported in one file.
func BenchmarkVerify100k(b *testing.B) {
	v, n := vault100k(b)
	benchVerify(b, v, n)
}

// vault100k returns a vault holding the 100,000 generated resources, and
// how many it added.
func vault100k(b *testing.B) (*Vault, int) {
	path := generate100k(b)
	v := newTestVault(b)
	f, _ := os.Open(path)
	st, err := v.Import(path, f, nil)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	return v, st.Added
}

func benchVerify(b *testing.B, v *Vault, resources int) {
	b.ResetTimer()
	for range b.N {
		if _, err := v.Verify(true); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(resources), "resources")
}

// generate100k writes a generated NDJSON file of 100,000 resources and
// returns its path: straight to a file, so an import's peak RssAnon is the
// import's, not the generator's buffer.
func generate100k(b *testing.B) string {
	path := filepath.Join(b.TempDir(), "100k.ndjson")
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(out)
	if err := fhir.Generate(w, 100_000, 1); err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(w.Flush(), out.Close()); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkRederive100k times the open that derives the labels of 100,000
// imported resources again (a build whose value lists changed: every
// record is decrypted and parsed), reporting peak RssAnon. Nothing gains a
// label here, so it is the cost every upgrade pays once.
func BenchmarkRederive100k(b *testing.B) {
	v, added := vault100k(b)
	v.Close()
	b.Cleanup(func() { labelRules = fhir.LabelRules })
	b.ResetTimer()
	for n := range b.N {
		b.StopTimer()
		labelRules = func() string { return fmt.Sprint("bench-", n) }
		debug.FreeOSMemory()
		stop := make(chan struct{})
		peak := peakRSSAnon(stop)
		b.StartTimer()
		nv, err := Open(v.dir, v.id, Options{})
		b.StopTimer()
		close(stop)
		if err != nil {
			b.Fatal(err)
		}
		if rep := nv.Rederived(); rep == nil || rep.Checked != added {
			b.Fatalf("rederived %+v, want %d records checked", rep, added)
		}
		nv.Close()
		b.ReportMetric(float64(added), "resources")
		b.ReportMetric(<-peak, "peak-RssAnon-MiB")
		b.StartTimer()
	}
}
