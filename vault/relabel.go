package vault

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// LabelRederived is the reason of a label entry that records labels a
// record's own content gives it under the value lists of a newer build
// (see Rederived).
const LabelRederived = "rederived"

// keyLabelRules holds, sealed, the name of the rules (fhir.LabelRules) the
// vault's records were last labelled by.
var keyLabelRules = []byte("label-rules")

const labelRulesDomain = "medvault/label-rules/v1\x00"

// rederiveBatch is how many records one transaction of rederive reads.
var rederiveBatch = 256

// The rules labels are derived by; tests replace them to stand for a
// build whose lists changed.
var (
	labelRules     = fhir.LabelRules
	resourceLabels = fhir.ResourceLabels
)

// Rederivation says what deriving labels again changed, at the Open that
// found the vault's records labelled under other rules than this build's.
type Rederivation struct {
	From, To string // the rules the records had, "" if unknown, and this build's
	Checked  int    // imported records whose content was read
	// Gained counts, per label, the records whose own content now gives
	// them that label; Propagated the records that gained labels from
	// them along references (as an import spreads labels).
	Gained     map[record.Label]int
	Records    int // records that gained a label from their own content
	Propagated int
	// Overrode counts, of the Propagated, records that gained a label the
	// patient had removed from them by hand (see spreadAdded).
	Overrode int
	// HandChanged are records that gained a label and whose labels the
	// patient changed by hand before this build kept which labels were
	// removed by hand: the label may be one the patient removed.
	HandChanged []record.ID
	// Unreadable counts records whose metadata or content did not open
	// or parse: verify reports them.
	Unreadable int
	// NoIndex is set when the reference index could not be built, so the
	// labels gained did not spread to the records that reference them.
	NoIndex error
}

// Rederived returns what Open changed by deriving labels again (nil if it
// did not: the records were labelled under this build's rules).
func (v *Vault) Rederived() *Rederivation { return v.rederived }

func (v *Vault) sealRules(rules string) []byte {
	nonce := make([]byte, v.meta.NonceSize(), v.meta.NonceSize()+len(rules)+v.meta.Overhead())
	rand.Read(nonce)
	return v.meta.Seal(nonce, nonce, []byte(rules), v.rulesAD())
}

func (v *Vault) rulesAD() []byte { return append([]byte(labelRulesDomain), v.vaultID[:]...) }

// storedRules returns the rules the vault's records were labelled by, ""
// if none is stored or it does not open (a vault from before the rules
// were kept, or a value changed outside medvault: deriving again only adds
// labels, so either way it is safe to do so).
func (v *Vault) storedRules(tx *bbolt.Tx) string {
	sealed := tx.Bucket(bucketMeta).Get(keyLabelRules)
	ns := v.meta.NonceSize()
	if len(sealed) < ns+v.meta.Overhead() {
		return ""
	}
	plain, err := v.meta.Open(nil, sealed[:ns], sealed[ns:], v.rulesAD())
	if err != nil {
		return ""
	}
	return string(plain)
}

func (v *Vault) putRules(tx *bbolt.Tx) error {
	return tx.Bucket(bucketMeta).Put(keyLabelRules, v.sealRules(labelRules()))
}

// rederive derives the sensitivity labels of the vault's imported records
// again when the rules they were labelled by (fhir.LabelRules, stored
// sealed in the meta bucket) are not this build's: a value list gained a
// code, or the index reads an element it did not. Without it a record
// imported before, say, PHQ-9's item codes were listed kept no MH label
// and went out under any grant of its category, while the same record
// imported again would be withheld.
//
// Each record's own labels are derived from its content
// (fhir.ResourceLabels); the ones it lacks, except those the patient
// removed by hand (Meta.HandRemoved), are added to it and its other
// versions, each change a label entry with reason LabelRederived, and
// spread to the records that reference it (spreadAdded). Deriving only
// adds labels. Records received from patients are left as they came.
// rederiveBatch records are read per transaction; the new rules are
// stored in the last, so a process killed part way starts again at the
// next Open, and the records it relabelled gain nothing more. A record
// that does not open is counted and skipped: refusing to open the vault
// would lock the patient out of every record for one damaged one, and
// verify reports it.
func (v *Vault) rederive(progress func(done, total int)) error {
	var from string
	var format uint32
	var ids []record.ID
	err := v.view(func(tx *bbolt.Tx) error {
		format = binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keyFormat)) // load checked it
		from = v.storedRules(tx)
		if format == FormatVersion && from == "" {
			return fmt.Errorf("%w: the rules the labels were derived by are missing or do not authenticate", ErrTampered)
		}
		if from == labelRules() {
			return nil
		}
		return tx.Bucket(bucketRecords).ForEach(func(k, _ []byte) error {
			if len(k) == len(record.ID{}) {
				ids = append(ids, record.ID(k))
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if from == labelRules() {
		if format != formatKept {
			return nil // format 3; or 1, its adoption failed (see adoptKept)
		}
		return v.update(func(tx *bbolt.Tx) error { return putFormat(tx, FormatVersion) })
	}
	rep := &Rederivation{From: from, To: labelRules(), Gained: map[record.Label]int{}}
	if len(ids) > 0 {
		rep.NoIndex = v.ensureRefIndex(nil)
	}
	var handEdited map[record.ID]bool // read from the ledger when first needed
	if progress != nil && len(ids) > 0 {
		progress(0, len(ids))
	}
	for start := 0; start < len(ids) || start == 0; start += rederiveBatch {
		batch := ids[start:min(start+rederiveBatch, len(ids))]
		last := start+rederiveBatch >= len(ids)
		err := v.update(func(tx *bbolt.Tx) error {
			logged := false
			for _, id := range batch {
				m, err := v.meta1(tx, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					rep.Unreadable++
					continue
				}
				if m.FHIR == nil || !m.From.IsZero() {
					continue
				}
				var derived []record.Label
				err = v.withContent(tx, m, func(content []byte) error {
					var err error
					derived, err = resourceLabels(content, m.FHIR.FullURL)
					return err
				})
				if err != nil {
					rep.Unreadable++
					continue
				}
				rep.Checked++
				gained := m.lacking(derived)
				if len(gained) == 0 {
					continue
				}
				group, err := v.versionGroup(tx, m)
				if err != nil {
					return err
				}
				for _, g := range group {
					add := g.lacking(gained)
					if len(add) == 0 {
						continue
					}
					g.Labels = normLabels(append(slices.Clone(g.Labels), add...))
					if err := v.putMetaEvent(tx, g, Event{Action: ledger.ActionLabel, Reason: LabelRederived}); err != nil {
						return err
					}
					logged = true
				}
				rep.Records++
				for _, l := range gained {
					rep.Gained[l]++
				}
				if m.HandRemoved == nil {
					if handEdited == nil {
						handEdited = v.handLabelled(tx)
					}
					if hand, known := handEdited[m.ID]; hand || !known && handEdited[record.ID{}] {
						rep.HandChanged = append(rep.HandChanged, m.ID)
					}
				}
				n, hand, err := v.spreadAdded(tx, m, gained)
				if err != nil {
					return err
				}
				rep.Propagated += n
				rep.Overrode += hand
				logged = logged || n > 0
			}
			if last {
				if err := v.putRules(tx); err != nil {
					return err
				}
				// A format 1 vault whose adoption failed stays at 1
				// (adoptKept): the next open tries again.
				if format == formatKept {
					if err := putFormat(tx, FormatVersion); err != nil {
						return err
					}
				}
			}
			if logged {
				return v.ledger.checkpoint(tx)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("derive sensitivity labels under the updated lists: %w", err)
		}
		if progress != nil && len(ids) > 0 {
			progress(start+len(batch), len(ids))
		}
		if last {
			break
		}
	}
	v.rederived = rep
	return nil
}

// handLabelled returns the records the ledger shows labels changed by
// hand on (label entries without a reason). If the ledger does not read
// to its end (verify reports why), the map holds the zero ID: any record
// may have been.
func (v *Vault) handLabelled(tx *bbolt.Tx) map[record.ID]bool {
	out := map[record.ID]bool{}
	err := v.ledger.log.Scan(tx, 0, func(_ int64, e *ledger.Entry) error {
		if e.Action == ledger.ActionLabel && e.Reason == "" {
			for _, s := range e.Subjects {
				if len(s) == len(record.ID{}) {
					out[record.ID(s)] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		out[record.ID{}] = true
	}
	return out
}

func putFormat(tx *bbolt.Tx, f uint32) error {
	return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint32(nil, f))
}

// lacking returns the labels of ls that m neither has nor had removed by
// hand.
func (m *Meta) lacking(ls []record.Label) []record.Label {
	var out []record.Label
	for _, l := range ls {
		if !m.HasLabel(l) && !slices.Contains(m.HandRemoved, l) {
			out = append(out, l)
		}
	}
	return out
}
