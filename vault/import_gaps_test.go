package vault

import (
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
)

// Condition versions: v1 uncoded, v2 coded as an MH diagnosis.
const (
	gapCondV1 = `{"resourceType":"Condition","id":"g","clinicalStatus":{"text":"active"}}`
	gapCondV2 = `{"resourceType":"Condition","id":"g","code":{"coding":[{"system":"http://snomed.info/sct","code":"370143000"}]}}`
)

func propagatedEntries(t *testing.T, v *Vault) int {
	t.Helper()
	n := 0
	v.view(func(tx *bbolt.Tx) error {
		return v.ledger.log.Scan(tx, 0, func(_ int64, e *ledger.Entry) error {
			if e.Action == ledger.ActionLabel && e.Reason == LabelPropagated {
				n++
			}
			return nil
		})
	})
	return n
}

// Labels a version gets from its own codes cover the earlier versions too:
// in one file, and across imports (a propagated label entry for v1).
func TestOwnLabelsReachEarlierVersions(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "both.ndjson", gapCondV1+"\n"+gapCondV2+"\n")
	checkAllMH(t, v, "one file", "Condition/g")
	mustVerify(t, v, "one file")

	w := newTestVault(t)
	importString(t, w, "v1.ndjson", gapCondV1+"\n")
	st := importString(t, w, "v2.ndjson", gapCondV2+"\n")
	checkAllMH(t, w, "two files", "Condition/g")
	if st.Relabelled != 1 {
		t.Errorf("two files: %d relabelled, want 1", st.Relabelled)
	}
	if n := propagatedEntries(t, w); n != 1 {
		t.Errorf("two files: %d propagated label entries, want 1", n)
	}
	mustVerify(t, w, "two files")
}

