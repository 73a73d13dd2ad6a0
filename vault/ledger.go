package vault

import (
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// Event is one ledger entry: what happened, to what, by whom, under which
// grant. The vault appends an Event in the same transaction as the change it
// records, so a change without its entry (or the reverse) cannot exist.
type Event struct {
	Action   ledger.Action
	Actor    identity.ID // zero means the vault's owner
	Subjects [][]byte    // record IDs (16 bytes), grant IDs (32 bytes)
	Grant    []byte      // the grant acted under, if any
	Purpose  string
	Outcome  ledger.Outcome // zero means OK
	Reason   string         // why a request was denied or failed
	Request  []byte         // an external actor's signed request, verbatim
	commit   ledger.Hash
}

// ledgerLog binds the vault to its ledger: the origin names the owner, the
// owner's key signs checkpoints and a subkey seals entries at rest.
type ledgerLog struct {
	log *ledger.Log
}

func newLedgerLog(id *identity.Identity, now func() time.Time) (*ledgerLog, error) {
	aead, err := chacha20poly1305.NewX(id.SubKey("medvault/ledger/entries/v1"))
	if err != nil {
		return nil, err
	}
	l, err := ledger.New(ledger.Config{
		Origin:    "medvault.ledger/" + id.ID().String(),
		Signer:    id.Signer(),
		AEAD:      aead,
		Now:       now,
		MarkerKey: id.SubKey("medvault/ledger/marker/v1"),
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &ledgerLog{log: l}, nil
}

func (l *ledgerLog) init(tx *bbolt.Tx) error { return l.log.Init(tx) }

// checkpoint signs the ledger's new size, once per write transaction.
func (l *ledgerLog) checkpoint(tx *bbolt.Tx) error {
	_, err := l.log.Checkpoint(tx)
	return err
}

// Ledger returns the vault's ledger, for reading entries and proofs.
func (v *Vault) Ledger() *ledger.Log { return v.ledger.log }

// logAppend appends ev inside tx.
func (v *Vault) logAppend(tx *bbolt.Tx, ev Event) error {
	actor := ev.Actor
	if actor.IsZero() {
		actor = v.id.ID()
	}
	out := ev.Outcome
	if out == 0 {
		out = ledger.OutcomeOK
	}
	_, err := v.ledger.log.Append(tx, &ledger.Entry{
		Time: v.now().UTC(), Actor: actor.Bytes(), Action: ev.Action, Subjects: ev.Subjects,
		Grant: ev.Grant, Purpose: ev.Purpose, Outcome: out, Reason: ev.Reason, Commit: ev.commit, Request: ev.Request,
	})
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}

// logEvent appends ev (if not nil) and signs a checkpoint.
func (v *Vault) logEvent(tx *bbolt.Tx, ev *Event) error {
	if ev == nil {
		return nil
	}
	if err := v.logAppend(tx, *ev); err != nil {
		return err
	}
	return v.ledger.checkpoint(tx)
}

// logCommit appends ev and signs a checkpoint.
func (v *Vault) logCommit(tx *bbolt.Tx, ev Event) error { return v.logEvent(tx, &ev) }

// Log appends one event in its own transaction, for events that change
// nothing else (a denied request, a key event).
func (v *Vault) Log(ev Event) error {
	return v.update(func(tx *bbolt.Tx) error { return v.logEvent(tx, &ev) })
}

// Entries calls fn for each ledger entry from index from on, in order.
func (v *Vault) Entries(from int64, fn func(i int64, e *ledger.Entry) error) error {
	return v.view(func(tx *bbolt.Tx) error { return v.ledger.log.Scan(tx, from, fn) })
}

// LedgerSize returns the number of ledger entries.
func (v *Vault) LedgerSize() (int64, error) {
	var n int64
	err := v.view(func(tx *bbolt.Tx) error {
		var err error
		n, err = v.ledger.log.Size(tx)
		return err
	})
	return n, err
}

func recordSubjects(ids ...record.ID) [][]byte {
	out := make([][]byte, len(ids))
	for i := range ids {
		out[i] = ids[i][:]
	}
	return out
}

// Witnessed is what a peer's copy of one of this vault's checkpoints says
// about its ledger (see LedgerExtension).
type Witnessed struct {
	// Size is the peer's checkpoint's size: 0 when it sent none, or one
	// not signed for this ledger.
	Size int64
	// Proof shows that the checkpoint given to the peer extends the
	// peer's (ledger.ExtensionProof); nil when Ahead.
	Proof ledger.Proof
	// Ahead: the peer's checkpoint is larger than the one given to it.
	// The vault was put back to an older copy, or its key signed another
	// log.
	Ahead bool
	// Diverged: the ledger holds other entries than the peer's
	// checkpoint commits to. The log was rewritten (an older copy that
	// went on since), or the key signed another log.
	Diverged bool
}

// LedgerExtension answers a peer that holds seen, a checkpoint of this
// vault's ledger (its note, verbatim; empty for none), and is given the
// checkpoint to (a receipt's): the proof that to's tree extends seen's,
// and what seen says about this vault.
func (v *Vault) LedgerExtension(seen, to []byte) (*Witnessed, error) {
	w := &Witnessed{}
	if len(seen) == 0 {
		return w, nil
	}
	ver := v.ledger.log.Verifier()
	s, err := ledger.ParseCheckpoint(seen, ver)
	if err != nil {
		return w, nil // not this ledger's: nothing to prove
	}
	t, err := ledger.ParseCheckpoint(to, ver)
	if err != nil {
		return nil, err
	}
	w.Size = s.Size
	if s.Size > t.Size {
		w.Ahead = true
		return w, nil
	}
	err = v.view(func(tx *bbolt.Tx) error {
		var err error
		w.Proof, err = v.ledger.log.ExtensionProof(tx, s.Size, t.Size)
		return err
	})
	if err != nil {
		return nil, err
	}
	switch err := ledger.CheckExtends(s, t, w.Proof); {
	case errors.Is(err, ledger.ErrFork):
		w.Diverged = true
	case err != nil:
		return nil, err
	}
	return w, nil
}
