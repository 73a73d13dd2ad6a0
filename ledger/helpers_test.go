package ledger

import (
	"bytes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/crypto/chacha20poly1305"
)

const testOrigin = "medvault.ledger/12D3KooWTestPeer"

// testKey returns a deterministic Ed25519 key derived from name.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("medvault/ledger/test-key/" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// testAEAD returns a deterministic XChaCha20-Poly1305 AEAD.
func testAEAD(tb testing.TB) cipher.AEAD {
	k := sha256.Sum256([]byte("medvault/ledger/test-aead"))
	a, err := chacha20poly1305.NewX(k[:])
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

var testEpoch = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

// testClock returns a Now function that advances one second per call.
func testClock() func() time.Time {
	t := testEpoch
	return func() time.Time {
		t = t.Add(time.Second)
		return t
	}
}

func newTestLog(tb testing.TB, sealed bool) *Log {
	tb.Helper()
	cfg := Config{Origin: testOrigin, Signer: testKey("owner"), Now: testClock()}
	if sealed {
		cfg.AEAD = testAEAD(tb)
	}
	lg, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return lg
}

func openTestDB(tb testing.TB) *bbolt.DB {
	tb.Helper()
	db, err := bbolt.Open(filepath.Join(tb.TempDir(), "vault.db"), 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// sampleEntry returns a varied, valid entry for index i.
func sampleEntry(i int) *Entry {
	rid := func(b byte) []byte { return bytes.Repeat([]byte{b}, 16) }
	e := &Entry{
		Time:     testEpoch.Add(time.Duration(i) * time.Minute),
		Actor:    []byte("\x00\x24\x08\x01\x12\x20peer-" + string(rune('a'+i%26))),
		Action:   Actions()[i%len(Actions())],
		Subjects: [][]byte{rid(byte(i)), rid(byte(i + 1))},
		Outcome:  OutcomeOK,
		Commit:   sha256.Sum256([]byte{byte(i)}),
	}
	switch i % 4 {
	case 1:
		e.Grant = bytes.Repeat([]byte{0xa0 + byte(i)}, GrantLen)
		e.Purpose = "TREAT"
		e.Request = []byte("signed-request-" + string(rune('0'+i%10)))
	case 2:
		e.Outcome = OutcomeDenied
		e.Reason = "expired"
		e.Subjects = nil
	case 3:
		e.Outcome = OutcomeFailed
		e.Reason = "io"
	}
	return e
}

// buildLog appends entries in one transaction per element of txSizes,
// checkpointing each, and returns every checkpoint created (thinned ones
// included).
func buildLog(tb testing.TB, db *bbolt.DB, lg *Log, txSizes []int) []*Checkpoint {
	tb.Helper()
	var cps []*Checkpoint
	next := 0
	for _, k := range txSizes {
		err := db.Update(func(tx *bbolt.Tx) error {
			if err := lg.Init(tx); err != nil {
				return err
			}
			for range k {
				if _, err := lg.Append(tx, sampleEntry(next)); err != nil {
					return err
				}
				next++
			}
			cp, err := lg.Checkpoint(tx)
			if err != nil {
				return err
			}
			cps = append(cps, cp)
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return cps
}

func mustVerify(tb testing.TB, db *bbolt.DB, lg *Log, full bool) *Report {
	tb.Helper()
	var rep *Report
	err := db.View(func(tx *bbolt.Tx) error {
		var err error
		rep, err = lg.Verify(tx, full)
		return err
	})
	if err != nil {
		tb.Fatalf("verify(full=%v): %v", full, err)
	}
	return rep
}

// verifyWith runs mutate then Verify in a write transaction that is rolled
// back, and returns Verify's error.
func verifyWith(tb testing.TB, db *bbolt.DB, lg *Log, full bool, mutate func(tx *bbolt.Tx) error) error {
	tb.Helper()
	var verr error
	errRollback := errors.New("rollback")
	err := db.Update(func(tx *bbolt.Tx) error {
		if err := mutate(tx); err != nil {
			tb.Fatalf("mutate: %v", err)
		}
		_, verr = lg.Verify(tx, full)
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		tb.Fatalf("update: %v", err)
	}
	return verr
}

func ledgerBucket(tx *bbolt.Tx, name []byte) *bbolt.Bucket {
	return tx.Bucket(bucketLedger).Bucket(name)
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
