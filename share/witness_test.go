package share

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/p2p/frame"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/record"
)

// A patient's vault put back to an older copy, or put back and then
// written on, keeps a ledger whose every signature is valid: its own
// verify cannot tell. The next provider that fetches can: it holds the
// checkpoint its last receipt showed, and the patient's node must prove
// that its ledger extends it. Each problem is reported once, to both
// sides, and the provider keeps checkable evidence.
func TestProviderSeesLedgerRollback(t *testing.T) {
	patient, provider, g, _ := twoLabs(t)
	db := filepath.Join(patient.Dir(), vault.DBFile)
	owner := patient.Owner()
	fetch := func(step string) (*Served, *LedgerCheck) {
		t.Helper()
		sv, res, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return f })
		if err != nil || res.Ledger == nil || sv.Witnessed == nil {
			t.Fatalf("%s: %v", step, err)
		}
		return sv, res.Ledger
	}
	snapshot := func() []byte {
		t.Helper()
		b, err := os.ReadFile(db) // nothing writes meanwhile
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	restore := func(b []byte) {
		t.Helper()
		patient.Close()
		if err := os.WriteFile(db, b, 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := vault.Open(patient.Dir(), owner, vault.Options{})
		if err != nil {
			t.Fatal(err)
		}
		patient = v
		t.Cleanup(func() { v.Close() })
	}

	_, lc := fetch("first fetch")
	if lc.Seen != 0 || lc.Problem != "" {
		t.Fatalf("first fetch: %+v", lc)
	}
	old := snapshot()
	_, lc2 := fetch("second fetch")
	if lc2.Seen != lc.Now || lc2.Now <= lc2.Seen || lc2.Problem != "" {
		t.Fatalf("second fetch: %+v after %+v", lc2, lc)
	}
	fetch("third fetch")

	// Put back to the copy taken after the first fetch.
	restore(old)
	sv, lc := fetch("after the rollback")
	if lc.Problem != LedgerRolledBack || lc.Now >= lc.Seen {
		t.Fatalf("after the rollback: %+v", lc)
	}
	if !sv.Witnessed.Ahead || sv.Witnessed.Diverged {
		t.Fatalf("the patient's node was not told its vault is behind: %+v", sv.Witnessed)
	}
	if _, lc := fetch("again"); lc.Problem != "" {
		t.Fatalf("the rollback was reported again: %+v", lc)
	}

	// Put back, then written on: another history of the same size and more.
	forked := snapshot()
	fetch("before the fork")
	restore(forked)
	if _, err := patient.Add(strings.NewReader("ferritin 95"), vault.NewRecord{Category: record.Labs, Title: "ferritin"}); err != nil {
		t.Fatal(err)
	}
	sv, lc = fetch("after the fork")
	if lc.Problem != LedgerForked {
		t.Fatalf("after the fork: %+v", lc)
	}
	if !sv.Witnessed.Diverged || sv.Witnessed.Ahead {
		t.Fatalf("the patient's node was not told its ledger diverged: %+v", sv.Witnessed)
	}

	evs, err := provider.Objects(vault.KindLedgerEvidence)
	if err != nil || len(evs) != 2 {
		t.Fatalf("%d pieces of evidence kept (%v), want 2", len(evs), err)
	}
	vf, _ := ledgerVerifier(owner.ID())
	problems := map[LedgerProblem]bool{}
	for _, o := range evs {
		var ev ledgerEvidence
		if err := json.Unmarshal(o.Value, &ev); err != nil {
			t.Fatal(err)
		}
		problems[ev.Problem] = true
		seen, err1 := ledger.ParseCheckpoint(ev.Seen, vf)
		now, err2 := ledger.ParseCheckpoint(ev.Now, vf)
		if err1 != nil || err2 != nil || ev.Patient != owner.ID().String() {
			t.Fatalf("evidence %s: %v %v", ev.Problem, err1, err2)
		}
		if ev.Problem == LedgerRolledBack && now.Size >= seen.Size {
			t.Fatalf("rollback evidence: sizes %d then %d", seen.Size, now.Size)
		}
		if ev.Problem == LedgerForked {
			var fe ledger.ForkEvidence
			if err := fe.UnmarshalBinary(ev.Fork); err != nil {
				t.Fatal(err)
			}
			if err := fe.Check(vf); err != nil {
				t.Fatalf("the fork evidence does not check: %v", err)
			}
		}
	}
	if !problems[LedgerRolledBack] || !problems[LedgerForked] {
		t.Fatalf("evidence kept: %v", problems)
	}
	// Each of them was logged by a keep entry naming the patient, which
	// verify holds them to.
	kept := map[string]int{}
	provider.Entries(0, func(_ int64, e *ledger.Entry) error {
		if e.Action == ledger.ActionKeep && bytes.Equal(e.Actor, owner.ID().Bytes()) {
			kept[e.Reason]++
		}
		return nil
	})
	if kept[string(vault.KindLedgerEvidence)] != 2 || kept[string(vault.KindReceipt)] == 0 || kept[string(vault.KindWitnessed)] == 0 {
		t.Fatalf("keep entries by kind: %v", kept)
	}
	if rep, err := provider.Verify(true); err != nil {
		t.Fatalf("the provider's vault: %v %v", err, rep.Problems)
	}
}

// A node that answers with a proof that proves nothing breaks the
// protocol: the provider stores nothing from it.
type badExtension struct{ Framer }

func (b badExtension) WriteFrame(typ byte, p []byte) error {
	if typ == frameExtends {
		p = make([]byte, ledger.HashSize)
	}
	return b.Framer.WriteFrame(typ, p)
}

func TestProviderRefusesUnprovenLedger(t *testing.T) {
	patient, provider, g, _ := twoLabs(t)
	if _, _, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return f }); err != nil {
		t.Fatal(err)
	}
	patient.Add(strings.NewReader("ferritin 95"), vault.NewRecord{Category: record.Labs, Title: "ferritin"})
	_, res, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return badExtension{f} })
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("a bogus extension proof: %v", err)
	}
	if res != nil && res.Records != 0 {
		t.Fatalf("%d records stored from a node that proved nothing", res.Records)
	}
}

// What the node makes of any S frame: an error only if its own ledger
// fails, and a proof only for a checkpoint signed by its key.
func FuzzSeenFrame(f *testing.F) {
	patient, provider, g, _ := twoLabs(f)
	if _, _, err := serveWith(f, patient, provider, g, func(fr Framer) Framer { return fr }); err != nil {
		f.Fatal(err)
	}
	to, err := provider.GetObject(vault.KindWitnessed, patient.Owner().ID().String())
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add(to)
	f.Add(append(bytes.Clone(to), '\n'))
	f.Add(bytes.Replace(to, []byte("\n2\n"), []byte("\n9\n"), 1))
	f.Fuzz(func(t *testing.T, seen []byte) {
		w, err := patient.LedgerExtension(seen, to)
		if err != nil {
			t.Fatal(err)
		}
		if w.Size == 0 && (w.Proof != nil || w.Ahead || w.Diverged) {
			t.Fatalf("an unsigned checkpoint was answered: %+v", w)
		}
		if w.Size > 0 && string(seen) == string(to) && (w.Ahead || w.Diverged || len(w.Proof) != 0) {
			t.Fatalf("the receipt's own checkpoint: %+v", w)
		}
	})
}

// forgedExtension replaces the payload of the node's U frame: with data
// XORed over the honest proof when xor is set, else with data.
type forgedExtension struct {
	Framer
	data   []byte
	xor    bool
	honest *bool
}

func (f forgedExtension) WriteFrame(typ byte, p []byte) error {
	if typ == frameExtends {
		q := bytes.Clone(f.data)
		if f.xor {
			q = bytes.Clone(p)
			for i := range min(len(q), len(f.data)) {
				q[i] ^= f.data[i]
			}
		}
		*f.honest = bytes.Equal(q, p)
		p = q
	}
	return f.Framer.WriteFrame(typ, p)
}

// What the provider makes of any U frame from an honest patient's node:
// the honest proof is accepted; anything else is either a proof that
// also shows the ledger extends, or a protocol error (never a rollback
// or fork reported against an honest ledger), and a refused proof leaves
// the checkpoint the provider keeps unchanged.
func FuzzExtensionFrame(f *testing.F) {
	patient, provider, g, _ := twoLabs(f)
	if _, _, err := serveWith(f, patient, provider, g, func(fr Framer) Framer { return fr }); err != nil {
		f.Fatal(err)
	}
	key := patient.Owner().ID().String()
	f.Add([]byte{}, true)
	f.Add([]byte{}, false)
	f.Add([]byte{0, 0, 0, 1}, true)
	f.Add(make([]byte, ledger.HashSize), false)
	f.Add(make([]byte, ledger.HashSize+1), false)
	f.Add(make([]byte, maxExtends+ledger.HashSize), false)
	f.Fuzz(func(t *testing.T, data []byte, xor bool) {
		before, err := provider.GetObject(vault.KindWitnessed, key)
		if err != nil {
			t.Fatal(err)
		}
		var honest bool
		_, res, err := serveWith(t, patient, provider, g, func(fr Framer) Framer {
			return forgedExtension{Framer: fr, data: data, xor: xor, honest: &honest}
		})
		if err != nil {
			if honest {
				t.Fatalf("the honest proof was refused: %v", err)
			}
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, frame.ErrTooLarge) {
				t.Fatalf("a forged proof: %v, want ErrProtocol", err)
			}
			if after, _ := provider.GetObject(vault.KindWitnessed, key); !bytes.Equal(after, before) {
				t.Fatal("a refused proof changed the checkpoint kept")
			}
			return
		}
		if res.Ledger == nil || res.Ledger.Problem != "" || res.Ledger.Seen == 0 || res.Ledger.Now <= res.Ledger.Seen {
			t.Fatalf("an honest ledger reported as %+v", res.Ledger)
		}
	})
}

// onPartialFrame runs hook once, as the provider writes its P frame: the
// patient's node has logged the request by then.
type onPartialFrame struct {
	Framer
	hook func()
}

func (o *onPartialFrame) WriteFrame(typ byte, p []byte) error {
	if typ == framePartial && o.hook != nil {
		h := o.hook
		o.hook = nil
		h()
	}
	return o.Framer.WriteFrame(typ, p)
}

// Two fetches from one patient at once (the provider's node runs commands
// concurrently): B is started while A is sending its request. B waits for
// A to end (vault.Receiving), so it lists what A stored; neither reports a
// rollback, no evidence is kept, and the stored checkpoint is the larger
// one, B's.
func TestConcurrentFetchesNoFalseRollback(t *testing.T) {
	patient, provider, g, _ := twoLabs(t)
	if _, _, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return f }); err != nil {
		t.Fatal(err)
	}
	_, res, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return f })
	if err != nil {
		t.Fatal(err)
	}
	// A: the provider's side is wrapped (serveWith wraps the node's).
	a, b := net.Pipe()
	served := make(chan *Served, 1)
	go func() {
		sv, _ := ServeConn(patient, frame.NewConn(a, nil), provider.Owner().ID(), time.Now)
		a.Close()
		served <- sv
	}()
	var aDone atomic.Bool
	type result struct {
		res    *FetchResult
		err    error
		afterA bool
	}
	bRes := make(chan result, 1)
	pc := &onPartialFrame{Framer: frame.NewConn(b, nil), hook: func() {
		go func() {
			_, rb, err := serveWith(t, patient, provider, g, func(f Framer) Framer { return f })
			bRes <- result{rb, err, aDone.Load()}
		}()
	}}
	ra, err := FetchConn(provider, pc, g, time.Now(), nil)
	aDone.Store(true)
	b.Close()
	sv := <-served
	if err != nil {
		t.Fatal(err)
	}
	rb := <-bRes
	if rb.err != nil || rb.res.Ledger.Problem != "" {
		t.Fatalf("fetch B: %v, %+v", rb.err, rb.res)
	}
	if !rb.afterA {
		t.Fatal("fetch B ended while fetch A was running")
	}
	if ra.Ledger.Problem != "" || ra.Ledger.Seen != res.Ledger.Now || rb.res.Ledger.Now <= ra.Ledger.Now {
		t.Fatalf("fetch A: %+v (before: %+v, B's checkpoint %d)", ra.Ledger, res.Ledger, rb.res.Ledger.Now)
	}
	if sv.Witnessed.Ahead || sv.Witnessed.Diverged {
		t.Fatalf("the patient's node reported %+v", sv.Witnessed)
	}
	if evs, _ := provider.Objects(vault.KindLedgerEvidence); len(evs) != 0 {
		t.Fatalf("%d pieces of evidence kept", len(evs))
	}
	if cp, err := seenCheckpoint(provider, patient.Owner().ID()); err != nil || cp.Size != rb.res.Ledger.Now {
		t.Fatalf("stored checkpoint %v (%v), want B's, %d", cp, err, rb.res.Ledger.Now)
	}
}
