package vault

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
)

// Kind names a collection of small sealed objects kept beside the records:
// the contact book, grants issued, grants received. The vault does not
// interpret them; package share defines their content.
type Kind string

// The kinds of objects a vault keeps.
const (
	KindContact Kind = "contacts"
	KindGrant   Kind = "grants"
	KindInbox   Kind = "inbox"
	KindRevoked Kind = "revocations"
	KindReceipt Kind = "receipts"
	// KindWitnessed keeps, per patient, the latest checkpoint of their
	// ledger a receipt showed; KindLedgerEvidence, what showed that a
	// patient's ledger does not extend it (package share).
	KindWitnessed      Kind = "witnessed"
	KindLedgerEvidence Kind = "ledger-evidence"
)

const maxObject = 1 << 20

// keptKinds are the objects a provider keeps from patients' nodes. Each
// write of one appends a keep entry (ledger.ActionKeep) committing to it,
// with Reason the kind and Grant the object's bucket key (a keyed tag of its
// key, as for contacts), so verify finds one deleted, rolled back to an
// earlier value, or stored from outside medvault.
var keptKinds = []Kind{KindInbox, KindRevoked, KindReceipt, KindWitnessed, KindLedgerEvidence}

// isKept reports whether objects of kind are logged with keep entries.
func isKept(kind Kind) bool { return slices.Contains(keptKinds, kind) }

// tagEvent returns a copy of ev for an object stored under bkey: the
// commitment to the value, and the bucket key where verify looks for it.
func tagEvent(ev *Event, kind Kind, bkey []byte, key string, value []byte) *Event {
	e := *ev
	e.commit = objectCommit(kind, key, value)
	if kind == KindContact || ev.Action == ledger.ActionKeep {
		e.Grant = bkey
	}
	if ev.Action == ledger.ActionKeep {
		e.Reason = string(kind)
	}
	return &e
}

// Object is one stored object: its key (an alias, a grant ID) and value.
type Object struct {
	Key   string
	Value []byte
}

// objectKey hides the natural key (a contact's alias, say) behind a keyed
// hash, so bucket keys reveal nothing.
func (v *Vault) objectKey(kind Kind, key string) []byte {
	m := hmac.New(sha256.New, v.index)
	m.Write([]byte("medvault/object/v1\x00"))
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(key))
	return m.Sum(nil)
}

func (v *Vault) objectAD(kind Kind, bkey []byte) []byte {
	ad := append([]byte("medvault/object-seal/v1\x00"), kind...)
	return append(append(ad, 0), bkey...)
}

func (v *Vault) sealObject(kind Kind, bkey []byte, key string, value []byte) []byte {
	plain := binary.BigEndian.AppendUint32(nil, uint32(len(key)))
	plain = append(append(plain, key...), value...)
	out := v.seal(plain, v.objectAD(kind, bkey))
	clear(plain)
	return out
}

func (v *Vault) openObject(kind Kind, bkey, sealed []byte) (Object, error) {
	plain, err := v.unseal(sealed, v.objectAD(kind, bkey))
	if err != nil {
		return Object{}, fmt.Errorf("%w: %s object %s", ErrTampered, kind, sealFault(err))
	}
	if len(plain) < 4 {
		return Object{}, fmt.Errorf("%w: %s object does not authenticate", ErrTampered, kind)
	}
	n := binary.BigEndian.Uint32(plain)
	if uint64(n) > uint64(len(plain)-4) {
		return Object{}, fmt.Errorf("%w: %s object is malformed", ErrTampered, kind)
	}
	return Object{Key: string(plain[4 : 4+n]), Value: plain[4+n:]}, nil
}

func objectBucket(tx *bbolt.Tx, kind Kind) (*bbolt.Bucket, error) {
	b := tx.Bucket([]byte(kind))
	if b == nil {
		if !tx.Writable() {
			return nil, nil
		}
		return tx.CreateBucket([]byte(kind))
	}
	return b, nil
}

// PutObject stores value under key, replacing any previous value, and
// appends ev to the ledger in the same transaction (ev may be nil).
func (v *Vault) PutObject(kind Kind, key string, value []byte, ev *Event) error {
	if len(value) > maxObject || len(key) > 1024 {
		return fmt.Errorf("%s object too large", kind)
	}
	err := v.update(func(tx *bbolt.Tx) error {
		b, err := objectBucket(tx, kind)
		if err != nil {
			return err
		}
		bkey := v.objectKey(kind, key)
		if err := b.Put(bkey, v.sealObject(kind, bkey, key, value)); err != nil {
			return err
		}
		if ev != nil {
			ev = tagEvent(ev, kind, bkey, key, value)
		}
		return v.logEvent(tx, ev)
	})
	if err == nil {
		v.objectsChanged(kind)
	}
	return err
}

// ObjectsGeneration returns a number that changes whenever this Vault
// (this process) writes or deletes an object of kind: a cache of objects
// of that kind is current while it stays the same. Other processes cannot
// write while this one holds the vault open.
func (v *Vault) ObjectsGeneration(kind Kind) uint64 {
	v.genMu.Lock()
	defer v.genMu.Unlock()
	return v.gen[kind]
}

func (v *Vault) objectsChanged(kind Kind) {
	v.genMu.Lock()
	defer v.genMu.Unlock()
	if v.gen == nil {
		v.gen = map[Kind]uint64{}
	}
	v.gen[kind]++
}

// UpdateObject replaces the value under key with what fn makes of the
// current one (nil and false when there is none), in one transaction, if fn
// says to write: a read-compare-write that concurrent commands cannot
// interleave. When it writes, it appends ev (if not nil) to the ledger in
// the same transaction.
func (v *Vault) UpdateObject(kind Kind, key string, ev *Event, fn func(old []byte, found bool) (value []byte, write bool, err error)) error {
	wrote := false
	defer func() {
		if wrote {
			v.objectsChanged(kind)
		}
	}()
	return v.update(func(tx *bbolt.Tx) error {
		wrote = false
		b, err := objectBucket(tx, kind)
		if err != nil {
			return err
		}
		bkey := v.objectKey(kind, key)
		var old []byte
		sealed := b.Get(bkey)
		if sealed != nil {
			o, err := v.openObject(kind, bkey, sealed)
			if err != nil {
				return err
			}
			old = o.Value
		}
		value, write, err := fn(old, sealed != nil)
		if err != nil || !write {
			return err
		}
		if len(value) > maxObject || len(key) > 1024 {
			return fmt.Errorf("%s object too large", kind)
		}
		if err := b.Put(bkey, v.sealObject(kind, bkey, key, value)); err != nil {
			return err
		}
		if ev != nil {
			ev = tagEvent(ev, kind, bkey, key, value)
		}
		if err := v.logEvent(tx, ev); err != nil {
			return err
		}
		wrote = true
		return nil
	})
}

// objectCommit is what a ledger entry stored with an object commits to:
// SHA-256("medvault/object-commit/v1" 0x00 || kind 0x00 || key 0x00 || value).
func objectCommit(kind Kind, key string, value []byte) ledger.Hash {
	h := sha256.New()
	h.Write([]byte("medvault/object-commit/v1\x00"))
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(value)
	var out ledger.Hash
	copy(out[:], h.Sum(nil))
	return out
}

// GetObject returns the value stored under key, or ErrNotFound.
func (v *Vault) GetObject(kind Kind, key string) ([]byte, error) {
	var out []byte
	err := v.view(func(tx *bbolt.Tx) error {
		b, _ := objectBucket(tx, kind)
		bkey := v.objectKey(kind, key)
		var sealed []byte
		if b != nil {
			sealed = b.Get(bkey)
		}
		if sealed == nil {
			return NotFoundf("no %s %q", kindNoun(kind), key)
		}
		o, err := v.openObject(kind, bkey, sealed)
		out = o.Value
		return err
	})
	return out, err
}

// Objects returns every object of a kind.
func (v *Vault) Objects(kind Kind) ([]Object, error) {
	var out []Object
	err := v.view(func(tx *bbolt.Tx) error {
		b, _ := objectBucket(tx, kind)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, sealed []byte) error {
			o, err := v.openObject(kind, k, sealed)
			if err != nil {
				return err
			}
			out = append(out, o)
			return nil
		})
	})
	return out, err
}

// DeleteObject removes key and appends ev to the ledger in the same
// transaction. It returns ErrNotFound when there is nothing to delete.
func (v *Vault) DeleteObject(kind Kind, key string, ev *Event) error {
	defer v.objectsChanged(kind) // at worst a cache reloads for nothing
	return v.update(func(tx *bbolt.Tx) error {
		b, err := objectBucket(tx, kind)
		if err != nil {
			return err
		}
		bkey := v.objectKey(kind, key)
		if b.Get(bkey) == nil {
			return NotFoundf("no %s %q", kindNoun(kind), key)
		}
		if err := b.Delete(bkey); err != nil {
			return err
		}
		if ev != nil && kind == KindContact {
			e := *ev
			e.Grant = bkey
			ev = &e
		}
		return v.logEvent(tx, ev)
	})
}

func kindNoun(k Kind) string {
	switch k {
	case KindContact:
		return "contact"
	case KindGrant, KindInbox:
		return "grant"
	case KindRevoked:
		return "revocation"
	}
	return string(k)
}

// adoptKept brings a format 1 vault to format 2: every kept object stored
// by a version of medvault that did not log them gets its keep entry, in
// one transaction with the new format number. From then on verify holds
// them to their entries. A vault whose ledger already has keep entries was
// written by format 2: its format number was put back outside medvault
// (which, adopted again, would bless a receipt deleted or a checkpoint
// rolled back since), and is refused.
//
// A ledger that does not read (an entry that does not open, say) leaves the
// vault at format 1, unadopted but open, as a format 1 build opened it:
// whether it holds keep entries cannot be known, so adopting could bless
// what was deleted since, and refusing would lock the owner out of every
// record (list, get, export) over damage that verify reports in full. The
// next Open tries again.
func (v *Vault) adoptKept() error {
	err := v.update(func(tx *bbolt.Tx) error {
		keep := int64(-1)
		err := v.ledger.log.Scan(tx, 0, func(i int64, e *ledger.Entry) error {
			if e.Action == ledger.ActionKeep {
				keep = i
				return errStopScan
			}
			return nil
		})
		if keep >= 0 {
			return fmt.Errorf("%w: the vault says format v1, but ledger entry %d is a keep entry, which format v1 does not write (format number changed outside medvault)", ErrTampered, keep)
		}
		if err != nil {
			return err
		}
		var evs []*Event
		for _, kind := range keptKinds {
			b, _ := objectBucket(tx, kind)
			if b == nil || kind == KindRevoked {
				// A patient's own revocations share the bucket and
				// have revoke entries; notices received before are
				// left unlogged (an extra one only refuses more).
				continue
			}
			err := b.ForEach(func(k, sealed []byte) error {
				o, err := v.openObject(kind, k, sealed)
				if err != nil {
					return nil // verify reports it
				}
				evs = append(evs, tagEvent(&Event{Action: ledger.ActionKeep}, kind, bytes.Clone(k), o.Key, o.Value))
				return nil
			})
			if err != nil {
				return err
			}
		}
		for _, ev := range evs {
			if err := v.logAppend(tx, *ev); err != nil {
				return err
			}
		}
		if len(evs) > 0 {
			if err := v.ledger.checkpoint(tx); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint32(nil, formatKept))
	})
	if errors.Is(err, ledger.ErrTampered) {
		return nil // left at format 1; verify reports the damage
	}
	return err
}

// errStopScan ends a ledger scan early.
var errStopScan = errors.New("stop scan")

// adopted reports whether the vault in tx is at format 2 or later, where
// every kept object has its keep entry (see adoptKept).
func adopted(tx *bbolt.Tx) bool {
	f := tx.Bucket(bucketMeta).Get(keyFormat)
	return len(f) == 4 && binary.BigEndian.Uint32(f) >= 2
}
