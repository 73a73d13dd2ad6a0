package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"filippo.io/age"
	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// Received describes a record shared with the owner (a provider).
type Received struct {
	From     identity.ID // the patient
	Grant    [32]byte
	SourceID record.ID // the record's ID in the patient's vault
	Size     int64     // plaintext size, as the patient stated it (checked)
	Status   string
	// Resume, if set, continues that partial record: r then carries the
	// rest of the age file, from byte Partial.Stored on.
	Resume *Partial
	// KeepPartial, if set, is asked about an error reading r; when it
	// returns true, what arrived is kept as a Partial (see Partials)
	// instead of being discarded, and AddCiphertext returns an error
	// wrapping ErrPartialKept.
	KeepPartial func(error) bool
}

// ErrPartialKept reports a receive that broke off and was kept as a partial.
var ErrPartialKept = errors.New("kept what arrived to resume later")

// Partial is a record whose transfer broke off: its first Stored bytes
// (the age header and the start of the payload) are in the vault, hidden,
// so that the next fetch asks only for the rest. It survives restarts; it
// is never listed as a record, and verify accounts for its chunks.
type Partial struct {
	ID        record.ID   // the record's ID in this vault once complete
	From      identity.ID // the patient
	SourceID  record.ID   // the record's ID in the patient's vault
	HeaderLen int64       // length of the age header at the start
	Stored    int64       // bytes stored: header and payload so far
	Chunks    uint32      // chunks stored
	Hash      []byte      // SHA-256 state after the stored bytes
	digest    hash.Hash
}

// PayloadOffset is how many bytes of the age payload are stored: where a
// resumed transfer starts (the header is not sent again).
func (p *Partial) PayloadOffset() int64 { return p.Stored - p.HeaderLen }

// receiveState is what storeStream needs to resume and to keep partials.
type receiveState struct {
	resume *Partial
	keep   func(error) bool
	from   identity.ID
	source record.ID
	kept   bool
}

// AddCiphertext stores a record received from a patient: r is an age file
// already encrypted to the owner, stored as it is. Like Add, the record
// appears with its ledger entry (Receive) only once complete. The file is
// decrypted, to nothing, while it is written: age authenticates every
// 64 KiB of the payload, its order and its end, so a damaged chunk stops
// the transfer (ErrDamaged) and nothing of the record is kept. A resumed
// record is checked from its first byte: the stored start is read again.
func (v *Vault) AddCiphertext(r io.Reader, n NewRecord, rc Received) (*Meta, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	n.Source = SourceFetch
	if n.SizeHint == 0 {
		n.SizeHint = rc.Size
	}
	rs := &receiveState{keep: rc.KeepPartial, from: rc.From, source: rc.SourceID}
	var id record.ID
	if rc.Resume != nil {
		if _, taken := v.busy.LoadOrStore(rc.Resume.ID, true); taken {
			return nil, fmt.Errorf("partial record %s is being resumed by another fetch", rc.Resume.ID)
		}
		defer v.busy.Delete(rc.Resume.ID)
		p, err := v.partial(rc.Resume.ID)
		if err != nil {
			return nil, err
		}
		if p.From != rc.From || p.SourceID != rc.SourceID {
			return nil, fmt.Errorf("partial record %s belongs to another transfer", p.ID)
		}
		if p.Stored != rc.Resume.Stored || p.Chunks != rc.Resume.Chunks || p.HeaderLen != rc.Resume.HeaderLen {
			return nil, fmt.Errorf("partial record %s changed since this fetch asked for the rest (another fetch extended it): fetch again", p.ID)
		}
		// A process killed while resuming may have committed chunks past
		// the ones the partial describes: they go before the rest comes.
		if err := v.trimChunks(p.ID, p.Chunks); err != nil {
			return nil, err
		}
		id, rs.resume = p.ID, p
	} else {
		id = record.NewID()
		if err := v.update(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketPending).Put(id[:], []byte("fetch"))
		}); err != nil {
			return nil, err
		}
	}
	m, err := v.storeStream(id, r, n, nil, ledger.ActionReceive, func(m *Meta) error {
		if m.Size != rc.Size {
			// The metadata the provider lists must describe the content.
			return fmt.Errorf("%w: stated as %d bytes, it holds %d", ErrDamaged, rc.Size, m.Size)
		}
		m.From, m.Grant, m.SourceID, m.Status = rc.From, rc.Grant[:], rc.SourceID, rc.Status
		return nil
	}, rs)
	if rs.kept {
		return nil, fmt.Errorf("%w: %w", ErrPartialKept, err)
	}
	if err != nil {
		if cerr := v.deleteChunks(id, true); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return m, nil
}

// suspend commits what cw holds and records the partial record, in one
// transaction. A stream that broke inside the age header is not kept.
func (v *Vault) suspend(cw *chunkWriter, id record.ID, stored int64, rs *receiveState) error {
	rest, first, err := cw.finish()
	if err != nil {
		cw.verdict(nil, false)
		return err
	}
	// Keep nothing that already fails the check: every complete chunk of
	// what arrived is checked first. (A resumed transfer checks it all
	// again from the start.)
	if err := cw.verdict(rest, false); err != nil {
		return err
	}
	state, err := cw.digest.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	return v.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketChunks)
		if err := cw.marks.drop(b, id); err != nil {
			return err
		}
		for i, c := range rest {
			if err := b.Put(chunkKey(id, first+uint32(i)), c); err != nil {
				return err
			}
		}
		hdr, err := age.ExtractHeader(bytes.NewReader(b.Get(chunkKey(id, 0))))
		if err != nil {
			return fmt.Errorf("the transfer broke inside the age header: nothing kept")
		}
		p := &Partial{ID: id, From: rs.from, SourceID: rs.source, HeaderLen: int64(len(hdr)),
			Stored: stored, Chunks: first + uint32(len(rest)), Hash: state}
		sealed, err := v.sealPartial(p)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketPending).Put(id[:], sealed)
	})
}

// Partials returns the partial records received from patient.
func (v *Vault) Partials(patient identity.ID) ([]*Partial, error) {
	var out []*Partial
	err := v.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketPending).ForEach(func(k, val []byte) error {
			if len(k) != 16 {
				return nil
			}
			if tx.Bucket(bucketRecords).Get(k) != nil {
				return nil // a complete record: a stale value (settlePending)
			}
			if p, ok := v.openPartial(record.ID(k), val); ok && p.From == patient {
				out = append(out, p)
			}
			return nil
		})
	})
	return out, err
}

// trimChunks deletes the chunks of id from index `from` on.
func (v *Vault) trimChunks(id record.ID, from uint32) error {
	return v.update(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketChunks).Cursor()
		for k, _ := c.Seek(chunkKey(id, from)); k != nil && bytes.HasPrefix(k, id[:]); k, _ = c.Seek(chunkKey(id, from)) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// DropPartial deletes a partial record's chunks and mark.
func (v *Vault) DropPartial(id record.ID) error {
	if _, taken := v.busy.LoadOrStore(id, true); taken {
		return fmt.Errorf("partial record %s is being resumed by another fetch", id)
	}
	defer v.busy.Delete(id)
	if _, err := v.partial(id); err != nil {
		return err
	}
	return v.deleteChunks(id, true)
}

func (v *Vault) partial(id record.ID) (*Partial, error) {
	var p *Partial
	err := v.view(func(tx *bbolt.Tx) error {
		var ok bool
		if p, ok = v.openPartial(id, tx.Bucket(bucketPending).Get(id[:])); !ok || tx.Bucket(bucketRecords).Get(id[:]) != nil {
			return fmt.Errorf("no partial record %s", id)
		}
		return nil
	})
	return p, err
}

// isPartial reports whether a pending value is a partial record's: such a
// record is kept at open, not rolled back.
func (v *Vault) isPartial(id record.ID, val []byte) bool {
	_, ok := v.openPartial(id, val)
	return ok
}

func partialAD(id record.ID) []byte {
	return append([]byte("medvault/partial/v1\x00"), id[:]...)
}

// sealPartial seals p's description as the pending value of its record:
// only this vault's owner can write one that opens.
func (v *Vault) sealPartial(p *Partial) ([]byte, error) {
	plain, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return v.seal(plain, partialAD(p.ID)), nil
}

func (v *Vault) openPartial(id record.ID, sealed []byte) (*Partial, bool) {
	plain, err := v.unseal(sealed, partialAD(id))
	if err != nil {
		return nil, false
	}
	p := &Partial{}
	if json.Unmarshal(plain, p) != nil || p.ID != id || p.HeaderLen <= 0 || p.Stored < p.HeaderLen || p.Chunks == 0 {
		return nil, false
	}
	d := sha256.New()
	if d.(encoding.BinaryUnmarshaler).UnmarshalBinary(p.Hash) != nil {
		return nil, false
	}
	p.digest = d
	return p, true
}
