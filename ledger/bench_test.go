package ledger

import (
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// Benchmarks for the figures of the issue. Run:
//
//	go test ./ledger -run '^$' -bench . -benchtime 3x
//
// The 1M-entry fixtures are built once and cached in os.TempDir(), keyed
// by format version, size and sealing; building one takes ~15 s.

const (
	benchEntries   = 1_000_000
	benchMarkAt    = benchEntries - 1000 // verified-through marker
	benchBulkTx    = 10_000              // entries per bulk transaction
	benchFixtureID = "v1"
)

var (
	fixtureMu sync.Mutex
	fixtures  = map[bool]*bbolt.DB{}
)

func benchFixture(b *testing.B, sealed bool) (*bbolt.DB, *Log) {
	b.Helper()
	lg := newTestLog(b, sealed)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if db := fixtures[sealed]; db != nil {
		return db, lg
	}
	kind := "plain"
	if sealed {
		kind = "sealed"
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("medvault-ledger-bench-%s-%s-%d.db", benchFixtureID, kind, benchEntries))
	if db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true}); err == nil {
		var n int64
		var rep *Report
		err = db.View(func(tx *bbolt.Tx) (err error) {
			if n, err = lg.Size(tx); err != nil {
				return err
			}
			rep, err = lg.Verify(tx, false)
			return err
		})
		if err == nil && n == benchEntries && rep.From == benchMarkAt {
			fixtures[sealed] = db
			return db, lg
		}
		db.Close()
	}
	b.Logf("building %s (one time)", path)
	start := time.Now()
	os.Remove(path)
	tmp := path + ".tmp"
	os.Remove(tmp)
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	appendN := func(k int) {
		err := db.Update(func(tx *bbolt.Tx) error {
			if err := lg.Init(tx); err != nil {
				return err
			}
			for range k {
				n, err := lg.Size(tx)
				if err != nil {
					return err
				}
				if _, err := lg.Append(tx, sampleEntry(int(n))); err != nil {
					return err
				}
			}
			_, err := lg.Checkpoint(tx)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for done := 0; done < benchMarkAt; done += benchBulkTx {
		appendN(min(benchBulkTx, benchMarkAt-done))
	}
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := lg.Verify(tx, true); return err }); err != nil {
		b.Fatal(err)
	}
	appendN(benchEntries - benchMarkAt)
	if err := db.Sync(); err != nil {
		b.Fatal(err)
	}
	db.Close()
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built in %v", time.Since(start))
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	fixtures[sealed] = db
	return db, lg
}

func sealedName(sealed bool) string {
	if sealed {
		return "sealed"
	}
	return "plain"
}

// BenchmarkVerify: full verification of 1M entries (goal < 1 s) and
// incremental verification of the last 1k (goal < 50 ms).
func BenchmarkVerify(b *testing.B) {
	for _, sealed := range []bool{true, false} {
		b.Run("full-1M-"+sealedName(sealed), func(b *testing.B) {
			db, lg := benchFixture(b, sealed)
			b.ResetTimer()
			for range b.N {
				err := db.View(func(tx *bbolt.Tx) error {
					rep, err := lg.Verify(tx, true)
					if err == nil && rep.To-rep.From != benchEntries {
						err = fmt.Errorf("checked %d entries", rep.To-rep.From)
					}
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/verify")
		})
		b.Run("incremental-1k-"+sealedName(sealed), func(b *testing.B) {
			db, lg := benchFixture(b, sealed)
			b.ResetTimer()
			for range b.N {
				err := db.View(func(tx *bbolt.Tx) error {
					rep, err := lg.Verify(tx, false)
					if err == nil && rep.To-rep.From != benchEntries-benchMarkAt {
						err = fmt.Errorf("checked %d entries", rep.To-rep.From)
					}
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/verify")
		})
	}
}

func openBenchDB(b *testing.B, noSync bool) *bbolt.DB {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "bench.db"), 0o600, &bbolt.Options{Timeout: time.Second, NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// BenchmarkAppendDurable: one entry and one checkpoint per transaction,
// fsync on commit (goal ≥ 1,000 appends/s).
func BenchmarkAppendDurable(b *testing.B) {
	db := openBenchDB(b, false)
	lg := newTestLog(b, true)
	if err := db.Update(lg.Init); err != nil {
		b.Fatal(err)
	}
	e := sampleEntry(1)
	b.ResetTimer()
	for range b.N {
		err := db.Update(func(tx *bbolt.Tx) error {
			if _, err := lg.Append(tx, e); err != nil {
				return err
			}
			_, err := lg.Checkpoint(tx)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkAppendBulk: 10,000 entries per transaction, one checkpoint and
// one fsync per transaction (goal ≥ 100k appends/s).
func BenchmarkAppendBulk(b *testing.B) {
	for _, sealed := range []bool{true, false} {
		b.Run(sealedName(sealed), func(b *testing.B) {
			db := openBenchDB(b, false)
			lg := newTestLog(b, sealed)
			if err := db.Update(lg.Init); err != nil {
				b.Fatal(err)
			}
			e := sampleEntry(1)
			b.ResetTimer()
			for done := 0; done < b.N; done += benchBulkTx {
				err := db.Update(func(tx *bbolt.Tx) error {
					for range min(benchBulkTx, b.N-done) {
						if _, err := lg.Append(tx, e); err != nil {
							return err
						}
					}
					_, err := lg.Checkpoint(tx)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkProofs: proof generation on the 1M fixture, with the largest
// proof seen reported against the budget 32·⌈log2 n⌉ bytes.
func BenchmarkProofs(b *testing.B) {
	db, lg := benchFixture(b, false)
	budget := float64(32 * bits.Len64(uint64(benchEntries-1)))
	b.Run("inclusion", func(b *testing.B) {
		maxLen := 0
		b.ResetTimer()
		for i := range b.N {
			err := db.View(func(tx *bbolt.Tx) error {
				p, err := lg.InclusionProof(tx, int64(i*7919%benchEntries), benchEntries)
				maxLen = max(maxLen, 32*len(p))
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(maxLen), "max-bytes")
		b.ReportMetric(budget, "budget-bytes")
	})
	b.Run("consistency", func(b *testing.B) {
		maxLen := 0
		b.ResetTimer()
		for i := range b.N {
			err := db.View(func(tx *bbolt.Tx) error {
				p, err := lg.ConsistencyProof(tx, int64(1+i*7919%(benchEntries-1)), benchEntries)
				maxLen = max(maxLen, 32*len(p))
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(maxLen), "max-bytes")
		b.ReportMetric(budget, "budget-bytes")
	})
}

// BenchmarkCheckNewCheckpoint: what a provider (or the owner) does with a
// new checkpoint: verify its signature (fresh Verifier, so no cache) and
// its consistency proof from the last one it holds (goal < 1 ms).
func BenchmarkCheckNewCheckpoint(b *testing.B) {
	db := openTestDB(b)
	lg := newTestLog(b, false)
	cps := buildLog(b, db, lg, []int{benchBulkTx, 977})
	older, newer := cps[0], cps[1]
	var proof Proof
	if err := db.View(func(tx *bbolt.Tx) (err error) {
		proof, err = lg.ConsistencyProof(tx, older.Size, newer.Size)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	pub := lg.Verifier().PublicKey()
	b.ResetTimer()
	for range b.N {
		v, err := NewVerifier(testOrigin, pub)
		if err != nil {
			b.Fatal(err)
		}
		c, err := ParseCheckpoint(newer.Note, v)
		if err != nil {
			b.Fatal(err)
		}
		if err := VerifyConsistency(older, c, proof); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEntryEncoding: canonical encode and decode of a typical entry.
func BenchmarkEntryEncoding(b *testing.B) {
	e := sampleEntry(1)
	enc, _ := e.MarshalBinary()
	b.Run("marshal", func(b *testing.B) {
		for range b.N {
			if _, err := e.MarshalBinary(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		var d Entry
		for range b.N {
			if err := d.UnmarshalBinary(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBareBoltCommit is the reference for BenchmarkAppendDurable: one
// 200-byte put per fsync'ed bbolt transaction, nothing else. The disk sets
// this floor; compare the two figures from the same run.
func BenchmarkBareBoltCommit(b *testing.B) {
	db := openBenchDB(b, false)
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		b.Fatal(err)
	}
	v := make([]byte, 200)
	b.ResetTimer()
	for i := range b.N {
		err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put(key(int64(i)), v) })
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}
