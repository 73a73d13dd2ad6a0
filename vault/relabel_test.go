package vault

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// newerLists stands for a build whose value lists gained a code: every
// resource whose content holds "newly-listed" is SUD under it. The test's
// cleanup puts this build's rules back.
func newerLists(t *testing.T) { t.Helper(); newerListsGiving(t, record.SUD) }

// newerListsGiving is newerLists with "newly-listed" giving label l.
func newerListsGiving(t *testing.T, l record.Label) {
	t.Helper()
	newerListsMarking(t, map[string]record.Label{"newly-listed": l})
}

// newerListsMarking is newerLists where content holding a key of marks
// gets its label.
func newerListsMarking(t *testing.T, marks map[string]record.Label) {
	t.Helper()
	labelRules = func() string { return "test-newer-lists" }
	resourceLabels = func(raw []byte, fullURL string) ([]record.Label, error) {
		ls, err := fhir.ResourceLabels(raw, fullURL)
		for text, l := range marks {
			if err == nil && bytes.Contains(raw, []byte(text)) {
				ls = append(ls, l)
			}
		}
		return ls, err
	}
	t.Cleanup(func() { labelRules, resourceLabels = fhir.LabelRules, fhir.ResourceLabels })
}

func versionsOf(t *testing.T, v *Vault, typ, id string) []*Meta {
	t.Helper()
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*Meta
	for _, m := range ms {
		if m.FHIR != nil && m.FHIR.Type == typ && m.FHIR.ID == id {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s/%s not stored", typ, id)
	}
	return out
}

// rederivedOnce fails unless the ledger holds one rederived entry for each
// of want records.
func rederivedOnce(t *testing.T, v *Vault, want int) {
	t.Helper()
	entries := rederivedEntries(t, v)
	if len(entries) != want {
		t.Errorf("rederived entries for %d records, want %d", len(entries), want)
	}
	for id, n := range entries {
		if n != 1 {
			t.Errorf("%d rederived entries for %s", n, id)
		}
	}
}

func rederivedEntries(t *testing.T, v *Vault) map[record.ID]int {
	t.Helper()
	out := map[record.ID]int{}
	err := v.Entries(0, func(_ int64, e *ledger.Entry) error {
		if e.Action == ledger.ActionLabel && e.Reason == LabelRederived {
			out[record.ID(e.Subjects[0])]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Records imported under older lists get, at the first open by a build
// whose lists changed, the labels a new import would give them: on the
// record, its other versions and the records that reference it, each
// change a ledger entry. A label the patient removed by hand stays off,
// and the next open changes nothing.
func TestRederiveAfterListChange(t *testing.T) {
	const (
		c1   = `{"resourceType":"Condition","id":"c1","code":{"text":"newly-listed"}}`
		c2   = `{"resourceType":"Condition","id":"c2","code":{"text":"newly-listed"}}`
		c3   = `{"resourceType":"Condition","id":"c3","code":{"text":"newly-listed"}}`
		c4v1 = `{"resourceType":"Condition","id":"c4","code":{"text":"newly-listed"}}`
		c4v2 = `{"resourceType":"Condition","id":"c4","code":{"text":"revised"}}`
		obs  = `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"}}`
		cl   = `{"resourceType":"Claim","id":"cl","status":"active","diagnosis":[{"sequence":1,"diagnosisReference":{"reference":"Condition/c1"}}]}`
	)
	v := newTestVault(t)
	importString(t, v, "a.ndjson", c1+"\n"+c2+"\n"+c3+"\n"+c4v1+"\n"+obs+"\n"+cl+"\n")
	importString(t, v, "b.ndjson", c4v2+"\n")
	for _, m := range mustList(t, v) {
		if len(m.Labels) != 0 {
			t.Fatalf("%s/%s labelled %v under this build's lists", m.FHIR.Type, m.FHIR.ID, m.Labels)
		}
	}
	// The patient said c2 is not SUD; and added HIV to c3.
	if _, _, err := v.SetLabels(findFHIR(t, v, "Condition/c2").ID, nil, []record.Label{record.SUD}); err != nil {
		t.Fatal(err)
	}
	c3id := findFHIR(t, v, "Condition/c3").ID
	if _, _, err := v.SetLabels(c3id, []record.Label{record.HIV}, nil); err != nil {
		t.Fatal(err)
	}
	// And that the Claim is not SUD: what reaches it through a reference
	// is put back all the same (a sensitive record stays out unless named).
	if _, _, err := v.SetLabels(findFHIR(t, v, "Claim/cl").ID, nil, []record.Label{record.SUD}); err != nil {
		t.Fatal(err)
	}
	v.Close()

	newerLists(t)
	rederiveBatch = 2 // several transactions
	t.Cleanup(func() { rederiveBatch = 256 })
	var steps [][2]int
	v, err := Open(v.dir, v.id, Options{Rederiving: func(done, total int) { steps = append(steps, [2]int{done, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if want := [][2]int{{0, 7}, {2, 7}, {4, 7}, {6, 7}, {7, 7}}; !slices.Equal(steps, want) {
		t.Errorf("progress %v, want %v", steps, want)
	}
	rep := v.Rederived()
	if rep == nil {
		t.Fatal("no rederivation at the first open under new lists")
	}
	if rep.To != "test-newer-lists" || rep.From != fhir.LabelRules() {
		t.Errorf("rules %q -> %q", rep.From, rep.To)
	}
	// c1, c3 and c4's first version gained SUD from their content; c4's
	// second version with it, and the Claim through its reference.
	if rep.Records != 3 || rep.Gained[record.SUD] != 3 || rep.Propagated != 1 || rep.Overrode != 1 || rep.Checked != 7 || rep.Unreadable != 0 {
		t.Errorf("report %+v", rep)
	}
	// c3's hand change was made in a format 3 vault, which keeps removals:
	// nothing for the patient to check.
	if len(rep.HandChanged) != 0 {
		t.Errorf("hand-changed records %v, want none", rep.HandChanged)
	}
	want := map[string][]record.Label{
		"Condition/c1": {record.SUD}, "Claim/cl": {record.SUD}, "Condition/c2": nil,
		"Condition/c3": {record.HIV, record.SUD}, "Observation/o1": nil,
	}
	for key, ls := range want {
		if got := findFHIR(t, v, key).Labels; !slices.Equal(got, ls) {
			t.Errorf("%s: %v, want %v", key, got, ls)
		}
	}
	c4 := versionsOf(t, v, "Condition", "c4")
	if len(c4) != 2 {
		t.Fatalf("%d versions of c4", len(c4))
	}
	for _, m := range c4 {
		if !slices.Equal(m.Labels, []record.Label{record.SUD}) {
			t.Errorf("c4 version %d: %v", m.FHIR.Version, m.Labels)
		}
	}
	if got := findFHIR(t, v, "Condition/c2").HandRemoved; !slices.Equal(got, []record.Label{record.SUD}) {
		t.Errorf("c2 hand-removed %v", got)
	}
	if got := findFHIR(t, v, "Claim/cl").HandRemoved; len(got) != 0 {
		t.Errorf("Claim/cl still lists %v removed by hand with SUD back on it", got)
	}
	rederivedOnce(t, v, 4) // c1, c3, c4 twice
	mustVerify(t, v, "after rederive")
	if f := formatOf(t, v); f != FormatVersion {
		t.Errorf("format %d", f)
	}
	v.Close()

	v, err = Open(v.dir, v.id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep := v.Rederived(); rep != nil {
		t.Errorf("second open under the same lists derived again: %+v", rep)
	}
	// Adding the label back by hand ends its removal.
	m, _, err := v.SetLabels(findFHIR(t, v, "Condition/c2").ID, []record.Label{record.SUD}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.HandRemoved) != 0 || !slices.Equal(m.Labels, []record.Label{record.SUD}) {
		t.Errorf("c2 after adding SUD back: labels %v, removed %v", m.Labels, m.HandRemoved)
	}
	v.Close()
}

func mustList(t *testing.T, v *Vault) []*Meta {
	t.Helper()
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// A format 2 vault (no rules stored) has its labels derived under this
// build's rules and becomes format 3; a format 3 vault whose rules were
// deleted outside medvault is refused.
func TestRederiveFormat2(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"}}`+"\n"+
		`{"resourceType":"Condition","id":"c1","code":{"text":"newly-listed"}}`+"\n"+
		`{"resourceType":"Condition","id":"c2","code":{"text":"newly-listed"}}`+"\n")
	// A format 2 vault logged changes by hand without keeping what was
	// removed: c1's labels were changed by hand, so the patient checks it.
	c1 := findFHIR(t, v, "Condition/c1").ID
	if _, _, err := v.SetLabels(c1, []record.Label{record.HIV}, nil); err != nil {
		t.Fatal(err)
	}
	v.Close()
	dropRules := func() {
		t.Helper()
		db, err := bbolt.Open(v.dir+"/"+DBFile, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyLabelRules) }); err != nil {
			t.Fatal(err)
		}
	}
	dropRules()
	setFormat(t, v.dir, formatKept)
	newerLists(t)
	v2, err := Open(v.dir, v.id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep := v2.Rederived(); rep == nil || rep.From != "" || rep.Checked != 3 || rep.Records != 2 || !slices.Equal(rep.HandChanged, []record.ID{c1}) {
		t.Errorf("report %+v, want 3 checked, 2 gaining, hand-changed [%s]", rep, c1)
	}
	if f := formatOf(t, v2); f != FormatVersion {
		t.Errorf("format %d after opening a format 2 vault", f)
	}
	mustVerify(t, v2, "format 2 brought to 3")
	v2.Close()
	dropRules()
	if _, err := Open(v.dir, v.id, Options{}); !errors.Is(err, ErrTampered) {
		t.Fatalf("format 3 vault without its rules: %v", err)
	}
}

// A record whose content does not open is counted and skipped: the others
// are relabelled and the vault opens (verify reports the damage).
func TestRederiveSkipsUnreadable(t *testing.T) {
	v := newTestVault(t)
	importString(t, v, "a.ndjson", `{"resourceType":"Condition","id":"c1","code":{"text":"newly-listed"}}`+"\n"+
		`{"resourceType":"Condition","id":"c2","code":{"text":"newly-listed"}}`+"\n")
	bad := findFHIR(t, v, "Condition/c1").ID
	v.Close()
	db, err := bbolt.Open(v.dir+"/"+DBFile, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketChunks)
		k := chunkKey(bad, 0)
		val := bytes.Clone(b.Get(k))
		val[len(val)-1] ^= 1
		return b.Put(k, val)
	})
	db.Close()
	newerLists(t)
	v, err = Open(v.dir, v.id, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if rep := v.Rederived(); rep == nil || rep.Unreadable != 1 || rep.Records != 1 {
		t.Fatalf("report %+v", rep)
	}
	if got := findFHIR(t, v, "Condition/c2").Labels; !slices.Equal(got, []record.Label{record.SUD}) {
		t.Errorf("c2: %v", got)
	}
	if _, err := v.Verify(true); !errors.Is(err, ErrTampered) {
		t.Errorf("verify of the damaged record: %v", err)
	}
}
