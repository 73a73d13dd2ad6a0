package ledger

import (
	"bytes"
	"testing"

	"go.etcd.io/bbolt"
)

// With a marker key, only a marker this log wrote lets Verify skip
// entries: a checkpoint copied into it (signed, so accepted without the
// key) or a marker of an older build makes the next Verify check
// everything, and that Verify leaves an authentic marker behind.
func TestMarkerKey(t *testing.T) {
	db := openTestDB(t)
	cfg := Config{Origin: testOrigin, Signer: testKey("owner"), Now: testClock(), MarkerKey: []byte("marker key for tests, 32 bytes!!")}
	lg, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	buildLog(t, db, lg, []int{5, 3})
	verify := func(full bool) *Report {
		t.Helper()
		var rep *Report
		if err := db.Update(func(tx *bbolt.Tx) error {
			var err error
			rep, err = lg.Verify(tx, full)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := verify(true); !rep.Marked || rep.MarkerIgnored {
		t.Fatalf("first verify: %+v", rep)
	}
	buildLog(t, db, lg, []int{2})
	if rep := verify(false); rep.From != 8 || rep.Full || rep.MarkerIgnored {
		t.Fatalf("incremental verify from an authentic marker: %+v", rep)
	}
	buildLog(t, db, lg, []int{1})
	var stored []byte
	for _, forged := range []func(tx *bbolt.Tx) []byte{
		// The latest checkpoint copied in: it claims everything verified.
		func(tx *bbolt.Tx) []byte {
			c := tx.Bucket(bucketLedger).Bucket(bucketCheckpoints).Cursor()
			_, note := c.Last()
			return bytes.Clone(note)
		},
		// An authentic marker with its MAC changed.
		func(*bbolt.Tx) []byte { m := bytes.Clone(stored); m[len(m)-1] ^= 1; return m },
		// Too short to hold a MAC.
		func(*bbolt.Tx) []byte { return []byte("x") },
	} {
		if err := db.Update(func(tx *bbolt.Tx) error {
			meta := tx.Bucket(bucketLedger).Bucket(bucketMeta)
			stored = bytes.Clone(meta.Get(keyVerified))
			return meta.Put(keyVerified, forged(tx))
		}); err != nil {
			t.Fatal(err)
		}
		if rep := verify(false); !rep.Full || rep.From != 0 || !rep.MarkerIgnored || !rep.Marked {
			t.Fatalf("incremental verify from a forged marker: %+v", rep)
		}
		// The marker it left is authentic again.
		if rep := verify(false); rep.MarkerIgnored || rep.Full {
			t.Fatalf("verify after re-marking: %+v", rep)
		}
	}
}
