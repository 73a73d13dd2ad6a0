package share

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
)

// A provider keeps, per patient, the latest checkpoint of the patient's
// ledger that a receipt showed it (vault.KindWitnessed), and sends it with
// each request (frame S). The patient's node answers with the proof that
// the new receipt's checkpoint extends it (frame U). So a patient's ledger
// put back to an older copy, or rewritten, is seen by the next provider
// that fetches, even though every signature in it is valid: a rollback
// that the patient's own 'verify' cannot see (ledger/FORMAT.md).

// LedgerProblem names what a receipt showed about the patient's ledger
// against the checkpoint seen before.
type LedgerProblem string

const (
	// LedgerRolledBack: the receipt's checkpoint is smaller than one seen
	// before. The patient's vault was put back to an older copy (a
	// restored backup, or someone hiding entries), or its key signed
	// another log.
	LedgerRolledBack LedgerProblem = "rolled-back"
	// LedgerForked: proven, with evidence: the patient's ledger holds
	// other entries than a checkpoint seen before committed to.
	LedgerForked LedgerProblem = "forked"
)

// LedgerCheck is what a fetch learned about the patient's ledger.
type LedgerCheck struct {
	Seen    int64         // size of the checkpoint held before (0: none)
	Now     int64         // size of the receipt's checkpoint
	Problem LedgerProblem // "" when the ledger extends what was seen
}

// ledgerEvidence is what a provider keeps when a patient's ledger does not
// extend what it saw (vault.KindLedgerEvidence, sealed in its vault): the
// two signed checkpoints and, for a fork, the proof (ledger.ForkEvidence,
// binary), which anyone holding the patient's key can check.
type ledgerEvidence struct {
	V       int           `json:"v"`
	Patient string        `json:"patient"`
	Problem LedgerProblem `json:"problem"`
	At      string        `json:"at"`
	Seen    []byte        `json:"seen"`
	Now     []byte        `json:"now"`
	Fork    []byte        `json:"fork,omitempty"`
}

// seenCheckpoint returns the checkpoint of patient's ledger v holds, parsed
// and verified, or nil.
func seenCheckpoint(v *vault.Vault, patient identity.ID) (*ledger.Checkpoint, error) {
	b, err := v.GetObject(vault.KindWitnessed, patient.String())
	if errors.Is(err, vault.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	vf, err := ledgerVerifier(patient)
	if err != nil {
		return nil, err
	}
	cp, err := ledger.ParseCheckpoint(b, vf)
	if err != nil {
		return nil, fmt.Errorf("%w: the stored checkpoint of %s's ledger: %v", vault.ErrTampered, patient, err)
	}
	return cp, nil
}

// witness checks now, a receipt's verified checkpoint of patient's ledger,
// against seen (the one sent in frame S; nil for none) with the node's
// proof, keeps evidence of a problem, and keeps now as the checkpoint to
// show next time: a problem is reported once. A proof that proves nothing
// is the node breaking the protocol.
func witness(v *vault.Vault, patient identity.ID, seen, now *ledger.Checkpoint, proof ledger.Proof, at time.Time) (*LedgerCheck, error) {
	lc := &LedgerCheck{Now: now.Size}
	ev := ledgerEvidence{V: 1, Patient: patient.String(), At: at.UTC().Format(time.RFC3339Nano), Now: now.Note}
	if seen != nil {
		lc.Seen, ev.Seen = seen.Size, seen.Note
		if now.Size < seen.Size {
			if len(proof) != 0 {
				return nil, fmt.Errorf("%w: a proof of extension for a smaller checkpoint", ErrProtocol)
			}
			lc.Problem = LedgerRolledBack
		} else {
			var fe *ledger.ForkError
			switch err := ledger.CheckExtends(seen, now, proof); {
			case errors.As(err, &fe):
				lc.Problem = LedgerForked
				if ev.Fork, err = fe.Evidence.MarshalBinary(); err != nil {
					return nil, err
				}
			case err != nil:
				return nil, fmt.Errorf("%w: the patient's node did not prove that its ledger extends the one it showed before: %v", ErrProtocol, err)
			}
		}
	}
	if lc.Problem != "" {
		ev.Problem = lc.Problem
		b, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		if err := v.PutObject(vault.KindLedgerEvidence, fmt.Sprintf("%s/%020d", patient, at.UnixNano()), b, &vault.Event{Action: ledger.ActionKeep, Actor: patient}); err != nil {
			return nil, err
		}
	}
	// Keep now, unless another fetch from the same patient (the node runs
	// commands concurrently) stored a larger checkpoint meanwhile: the
	// witness never goes back but to report a problem found against it.
	err := v.UpdateObject(vault.KindWitnessed, patient.String(), &vault.Event{Action: ledger.ActionKeep, Actor: patient}, func(old []byte, found bool) ([]byte, bool, error) {
		switch {
		case !found, seen != nil && bytes.Equal(old, seen.Note):
			return now.Note, !bytes.Equal(old, now.Note), nil
		}
		vf, err := ledgerVerifier(patient)
		if err != nil {
			return nil, false, err
		}
		cur, err := ledger.ParseCheckpoint(old, vf)
		if err != nil {
			return nil, false, fmt.Errorf("%w: the stored checkpoint of %s's ledger: %v", vault.ErrTampered, patient, err)
		}
		return now.Note, now.Size > cur.Size, nil
	})
	if err != nil {
		return nil, err
	}
	return lc, nil
}

func encodeExtension(p ledger.Proof) []byte {
	b := make([]byte, 0, len(p)*ledger.HashSize)
	for _, h := range p {
		b = append(b, h[:]...)
	}
	return b
}

func decodeExtension(b []byte) (ledger.Proof, error) {
	if len(b)%ledger.HashSize != 0 || len(b) > maxExtends {
		return nil, fmt.Errorf("%w: an extension proof of %d bytes", ErrProtocol, len(b))
	}
	var p ledger.Proof
	for ; len(b) > 0; b = b[ledger.HashSize:] {
		p = append(p, ledger.Hash(b[:ledger.HashSize]))
	}
	return p, nil
}

// Witness is what a vault holds about one patient's ledger: the latest
// checkpoint a receipt showed it.
type Witness struct {
	Patient    identity.ID
	Checkpoint *ledger.Checkpoint
}

// Evidence is one kept piece of evidence that a patient's ledger did not
// extend what an earlier receipt showed.
type Evidence struct {
	Patient   identity.ID
	Problem   LedgerProblem
	At        time.Time
	Seen, Now *ledger.Checkpoint
	// Fork is the ledger.ForkEvidence binary encoding for LedgerForked:
	// with the patient's public key anyone can check it
	// (ForkEvidence.Check).
	Fork []byte
}

// Witnessed lists the checkpoints v holds of patients' ledgers, by patient
// ID, and the evidence it kept, oldest first.
func Witnessed(v *vault.Vault) ([]Witness, []Evidence, error) {
	var ws []Witness
	held, err := v.Objects(vault.KindWitnessed)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range held {
		id, err := identity.ParseID(o.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: a stored checkpoint names no patient", vault.ErrTampered)
		}
		cp, err := seenCheckpoint(v, id)
		if err != nil {
			return nil, nil, err
		}
		ws = append(ws, Witness{id, cp})
	}
	var evs []Evidence
	kept, err := v.Objects(vault.KindLedgerEvidence)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range kept {
		var le ledgerEvidence
		if err := json.Unmarshal(o.Value, &le); err != nil || le.V != 1 {
			return nil, nil, fmt.Errorf("%w: stored ledger evidence is malformed", vault.ErrTampered)
		}
		e := Evidence{Problem: le.Problem, Fork: le.Fork}
		if e.Patient, err = identity.ParseID(le.Patient); err != nil {
			return nil, nil, fmt.Errorf("%w: stored ledger evidence names no patient", vault.ErrTampered)
		}
		if e.At, err = time.Parse(time.RFC3339Nano, le.At); err != nil {
			return nil, nil, fmt.Errorf("%w: stored ledger evidence has no time", vault.ErrTampered)
		}
		vf, err := ledgerVerifier(e.Patient)
		if err != nil {
			return nil, nil, err
		}
		if e.Seen, err = ledger.ParseCheckpoint(le.Seen, vf); err != nil {
			return nil, nil, fmt.Errorf("%w: stored ledger evidence: %v", vault.ErrTampered, err)
		}
		if e.Now, err = ledger.ParseCheckpoint(le.Now, vf); err != nil {
			return nil, nil, fmt.Errorf("%w: stored ledger evidence: %v", vault.ErrTampered, err)
		}
		evs = append(evs, e)
	}
	slices.SortFunc(ws, func(a, b Witness) int { return strings.Compare(a.Patient.String(), b.Patient.String()) })
	slices.SortFunc(evs, func(a, b Evidence) int { return a.At.Compare(b.At) })
	return ws, evs, nil
}
