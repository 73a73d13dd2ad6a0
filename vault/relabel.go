package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
// A run cut short (a kill, a failed transaction) left what it had changed
// in the vault, sealed, and the run that completes it reports that too.
type Rederivation struct {
	From, To string `json:"-"` // the rules the records had, "" if unknown, and this build's
	Checked  int    `json:"-"` // imported records whose content was read
	// Gained counts, per label, the records whose own content now gives
	// them that label; Propagated the records that gained labels from
	// them along references (as an import spreads labels).
	Gained     map[record.Label]int `json:"gained"`
	Records    int                  `json:"records"` // records that gained a label from their own content
	Propagated int                  `json:"propagated"`
	// Overrode counts records that gained a label the patient had removed
	// from them by hand: through a reference (see spreadAdded), or from
	// another version of the same resource whose content gives it. Each
	// record counts once, in Propagated and Overrode alike.
	Overrode int `json:"overrode"`
	// HandChanged are records that gained a label and whose labels the
	// patient changed by hand before the vault kept which labels were
	// removed by hand (format 2): the label may be one the patient removed.
	HandChanged []record.ID `json:"hand_changed"`
	// Unreadable counts records whose metadata or content did not open
	// or parse, and were passed over: verify reports them.
	Unreadable int `json:"-"`
	// NoIndex is set when the reference index could not be built: the
	// labels gained could not spread to the records that reference them,
	// so none were derived, and the next Open tries again.
	NoIndex error `json:"-"`
	// Failed is set when a transaction failed (the ledger refused an
	// entry, say): the records relabelled before it keep their labels,
	// and the next Open goes on.
	Failed error `json:"-"`
}

// Rederived returns what Open changed by deriving labels again (nil if it
// did not: the records were labelled under this build's rules).
func (v *Vault) Rederived() *Rederivation { return v.rederived }

func (v *Vault) rulesAD() []byte { return append([]byte(labelRulesDomain), v.vaultID[:]...) }

// storedRules returns the rules the vault's records were labelled by, ""
// if none is stored or it does not open (a vault from before the rules
// were kept, or a value changed outside medvault: deriving again only adds
// labels, so either way it is safe to do so).
func (v *Vault) storedRules(tx *bbolt.Tx) string {
	plain, err := v.unseal(tx.Bucket(bucketMeta).Get(keyLabelRules), v.rulesAD())
	if err != nil {
		return ""
	}
	return string(plain)
}

func (v *Vault) putRules(tx *bbolt.Tx) error {
	return tx.Bucket(bucketMeta).Put(keyLabelRules, v.seal([]byte(labelRules()), v.rulesAD()))
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
// removed from it by hand (Meta.HandRemoved), are added to it, each change
// a label entry with reason LabelRederived, and to its other versions
// (labels cover every version: a version the patient removed one from, and
// whose own content did not give it, gets it back from the other's
// content, see Meta.inherit), then spread to the records that reference it
// (spreadAdded). Deriving only adds labels. Records received from patients
// are left as they came.
//
// rederiveBatch records are read per transaction; the new rules are
// stored in the last, so a run cut short starts again at the next Open,
// and the records it relabelled gain nothing more; what it changed is kept,
// sealed, for the report of the run that completes it. A record that does
// not open is counted and passed over, and a failed transaction ends the
// run without failing Open: refusing to open the vault would lock the
// patient out of every record for one damaged one (verify reports it).
func (v *Vault) rederive(progress func(done, total int)) error {
	var from string
	var format uint32
	var ids []record.ID
	rep := &Rederivation{To: labelRules(), Gained: map[record.Label]int{}}
	// Each record counts once in a report, whichever labels and paths
	// reached it, also across runs (loadRederivation).
	prop, over, hand := newMarks(), newMarks(), newMarks()
	var runID [8]byte // names this run's batches beside those of runs before it
	rand.Read(runID[:])
	err := v.view(func(tx *bbolt.Tx) error {
		format = binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keyFormat)) // load checked it
		from = v.storedRules(tx)
		if format == FormatVersion && from == "" {
			return fmt.Errorf("%w: the rules the labels were derived by are missing or do not authenticate", ErrTampered)
		}
		if from == labelRules() {
			return nil
		}
		v.loadRederivation(tx, rep, prop, over)
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
	rep.From = from
	v.rederived = rep
	if len(ids) > 0 {
		// Labels gained must reach the records that reference them in the
		// same run: a later run finds nothing to gain, so nothing to spread.
		if rep.NoIndex = v.ensureRefIndex(nil); rep.NoIndex != nil {
			return nil
		}
	}
	if progress != nil && len(ids) > 0 {
		progress(0, len(ids))
	}
	var handEdited map[record.ID]bool // read from the ledger when first needed
	unreadable := map[record.ID]bool{}
	for _, id := range rep.HandChanged {
		hand.done[id] = true
	}
	for start := 0; start < len(ids) || start == 0; start += rederiveBatch {
		batch := ids[start:min(start+rederiveBatch, len(ids))]
		last := start+rederiveBatch >= len(ids)
		var run *Rederivation // this batch's report, kept only if its transaction commits
		err := v.update(func(tx *bbolt.Tx) error {
			logged := false
			run = rep.clone()
			prop.drop()
			over.drop()
			hand.drop()
			// Before format 3 a removal by hand left no trace in the
			// metadata: the patient checks the records labelled by hand
			// that gain a label.
			checkHand := func(id record.ID) {
				if from != "" {
					return
				}
				if handEdited == nil {
					handEdited = v.handLabelled(tx)
				}
				if h, known := handEdited[id]; (h || !known && handEdited[record.ID{}]) && hand.mark(id) {
					run.HandChanged = append(run.HandChanged, id)
				}
			}
			for _, id := range batch {
				m, err := v.meta1(tx, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					unreadable[id] = true
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
					unreadable[id] = true
					continue
				}
				run.Checked++
				gained := m.lacking(derived)
				if len(gained) == 0 {
					continue
				}
				group, err := v.versionGroup(tx, m, unreadable)
				if err != nil {
					return err
				}
				for _, g := range group {
					if g.ID == m.ID {
						g.Labels = normLabels(append(slices.Clone(g.Labels), gained...))
					} else if len(g.lackingAll(gained)) == 0 {
						continue
					} else if g.inherit(gained) && over.mark(g.ID) {
						run.Overrode++
					}
					if err := v.putMetaEvent(tx, g, Event{Action: ledger.ActionLabel, Reason: LabelRederived}); err != nil {
						return err
					}
					logged = true
					checkHand(g.ID)
				}
				run.Records++
				for _, l := range gained {
					run.Gained[l]++
				}
				written, overrode, err := v.spreadAdded(tx, m, gained, unreadable)
				if err != nil {
					return err
				}
				for _, id := range written {
					if prop.mark(id) {
						run.Propagated++
					}
					checkHand(id)
				}
				for _, id := range overrode {
					if over.mark(id) {
						run.Overrode++
					}
				}
				logged = logged || len(written) > 0
			}
			if last {
				if err := v.putRules(tx); err != nil {
					return err
				}
				if err := v.dropRederivation(tx); err != nil {
					return err
				}
				// A format 1 vault whose adoption failed stays at 1
				// (adoptKept): the next open tries again.
				if format == formatKept {
					if err := putFormat(tx, FormatVersion); err != nil {
						return err
					}
				}
			} else if logged {
				if err := v.storeRederivation(tx, run, runID, uint64(start), prop, over); err != nil {
					return err
				}
			}
			if logged {
				return v.ledger.checkpoint(tx)
			}
			return nil
		})
		if err != nil {
			prop.drop()
			over.drop()
			hand.drop()
			rep.Failed = err
			break
		}
		*rep = *run
		prop.keep()
		over.keep()
		hand.keep()
		if progress != nil && len(ids) > 0 {
			progress(start+len(batch), len(ids))
		}
		if last {
			break
		}
	}
	rep.Unreadable = len(unreadable)
	return nil
}

// keyRederiving holds, sealed, the report of a run of rederive that did not
// complete: what it changed, for the run that completes it to report. The
// records each of its batches counted in Propagated and Overrode are kept
// beside it, one value per batch under keyRederivingIDs, the run's random
// ID and the batch's start (so a batch writes only its own, and a later run
// never overwrites an earlier one's), for the completing run not to count
// them again.
var (
	keyRederiving    = []byte("label-rules-run")
	keyRederivingIDs = []byte("label-rules-run-ids/")
)

const rederivingDomain = "medvault/label-rules-run/v1\x00"

// batchIDs are the records one batch counted first.
type batchIDs struct {
	Propagated []record.ID `json:"propagated"`
	Overrode   []record.ID `json:"overrode"`
}

func (v *Vault) runAD(key []byte) []byte {
	return append(append([]byte(rederivingDomain), v.vaultID[:]...), key...)
}

func (v *Vault) sealRun(tx *bbolt.Tx, key []byte, x any) error {
	plain, err := json.Marshal(x)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(key, v.seal(plain, v.runAD(key)))
}

// openRun decodes the sealed value at key into x; false if it does not
// open or parse.
func (v *Vault) openRun(key, sealed []byte, x any) bool {
	plain, err := v.unseal(sealed, v.runAD(key))
	return err == nil && json.Unmarshal(plain, x) == nil
}

// storeRederivation keeps, in tx, the report of the run so far and the
// records the batch of run runID starting at start counted first.
func (v *Vault) storeRederivation(tx *bbolt.Tx, r *Rederivation, runID [8]byte, start uint64, prop, over *marks) error {
	if err := v.sealRun(tx, keyRederiving, r); err != nil {
		return err
	}
	ids := batchIDs{Propagated: slices.Collect(maps.Keys(prop.batch)), Overrode: slices.Collect(maps.Keys(over.batch))}
	if len(ids.Propagated)+len(ids.Overrode) == 0 {
		return nil
	}
	key := append(append(slices.Clone(keyRederivingIDs), runID[:]...), binary.BigEndian.AppendUint64(nil, start)...)
	return v.sealRun(tx, key, ids)
}

// loadRederivation adds to r what an earlier run that did not complete
// changed, and to prop and over the records it counted. A value that does
// not open is ignored: it only feeds a report, and the ledger holds every
// change.
func (v *Vault) loadRederivation(tx *bbolt.Tx, r *Rederivation, prop, over *marks) {
	m := tx.Bucket(bucketMeta)
	var was Rederivation
	if !v.openRun(keyRederiving, m.Get(keyRederiving), &was) {
		return
	}
	for l, n := range was.Gained {
		if l.Valid() && n > 0 {
			r.Gained[l] += n
		}
	}
	r.Records += was.Records
	r.Propagated += was.Propagated
	r.Overrode += was.Overrode
	r.HandChanged = append(r.HandChanged, was.HandChanged...)
	c := m.Cursor()
	for k, sealed := c.Seek(keyRederivingIDs); k != nil && bytes.HasPrefix(k, keyRederivingIDs); k, sealed = c.Next() {
		var ids batchIDs
		if v.openRun(k, sealed, &ids) {
			for _, id := range ids.Propagated {
				prop.done[id] = true
			}
			for _, id := range ids.Overrode {
				over.done[id] = true
			}
		}
	}
}

// dropRederivation removes, in tx, what runs that did not complete kept.
func (v *Vault) dropRederivation(tx *bbolt.Tx) error {
	m := tx.Bucket(bucketMeta)
	var keys [][]byte
	c := m.Cursor()
	for k, _ := c.Seek(keyRederivingIDs); k != nil && bytes.HasPrefix(k, keyRederivingIDs); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range append(keys, keyRederiving) {
		if err := m.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// marks are the records a run of rederive has counted: those of the batch
// whose transaction is running count only if it commits.
type marks struct{ done, batch map[record.ID]bool }

func newMarks() *marks { return &marks{done: map[record.ID]bool{}, batch: map[record.ID]bool{}} }

// mark reports whether id is counted for the first time, and marks it.
func (k *marks) mark(id record.ID) bool {
	if k.done[id] || k.batch[id] {
		return false
	}
	k.batch[id] = true
	return true
}

func (k *marks) keep() { maps.Copy(k.done, k.batch); clear(k.batch) }
func (k *marks) drop() { clear(k.batch) }

func (r *Rederivation) clone() *Rederivation {
	c := *r
	c.Gained = maps.Clone(r.Gained)
	c.HandChanged = slices.Clone(r.HandChanged)
	return &c
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

// lackingAll returns the labels of ls that m does not have.
func (m *Meta) lackingAll(ls []record.Label) []record.Label {
	return slices.DeleteFunc(slices.Clone(ls), m.HasLabel)
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
