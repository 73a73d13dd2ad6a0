package vault

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// NewRecord is what a caller says about a record it adds.
type NewRecord struct {
	Title    string
	Category record.Category
	Labels   []record.Label
	Date     time.Time
	FileName string
	Source   Source
	FHIR     *FHIRInfo
	// SizeHint, if above zero, is the content's size as far as the caller
	// knows (a regular file's, a size a peer stated): the vault file is
	// extended ahead of the writes, a step at a time (see reserve). It
	// bounds nothing: a longer or shorter stream is stored as it comes.
	SizeHint int64
}

const maxTitle = 1024

func (n *NewRecord) validate() error {
	if !n.Category.Valid() {
		return invalidf("unknown category %q", n.Category)
	}
	for _, l := range n.Labels {
		if !l.Valid() {
			return invalidf("unknown sensitivity label %q", l)
		}
	}
	if len(n.Title) > maxTitle || len(n.FileName) > maxTitle {
		return invalidf("title or file name longer than %d bytes", maxTitle)
	}
	return nil
}

// Add encrypts everything read from r to the owner's age recipient and stores
// it as a new record, in chunks, with memory bounded for any size. The record
// and its ledger entry appear together in the final transaction; if Add fails
// or the process dies, no part of the record is visible and the chunks
// written so far are removed (now, or at the next Open).
func (v *Vault) Add(r io.Reader, n NewRecord) (*Meta, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	if n.Source == "" {
		n.Source = SourceAdd
	}
	id := record.NewID()
	if err := v.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketPending).Put(id[:], []byte(v.now().UTC().Format(time.RFC3339)))
	}); err != nil {
		return nil, fmt.Errorf("add: %w", err)
	}
	m, err := v.addContent(id, r, n)
	if err != nil {
		err = fmt.Errorf("add: %w", err)
		if cerr := v.deleteChunks(id, true); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
		return nil, err
	}
	return m, nil
}

func (v *Vault) addContent(id record.ID, r io.Reader, n NewRecord) (*Meta, error) {
	return v.storeStream(id, r, n, v.content, ledger.ActionAdd, nil, nil)
}

// storeStream writes what it reads from r as the content of record id:
// encrypted to `to`, or as it is when to is nil (r is then already an age
// file for the owner). The final transaction writes the last chunks, the
// sealed metadata (adjusted by fix, if set) and the ledger entry act.
// rs, for a record received from a peer, continues a partial record and
// keeps what arrived as a partial when the stream breaks (see receive.go).
func (v *Vault) storeStream(id record.ID, r io.Reader, n NewRecord, to age.Recipient, act ledger.Action, fix func(*Meta) error, rs *receiveState) (*Meta, error) {
	var cw *chunkWriter
	var stored int64
	var expect int64 // bytes of the age file, if the size is known
	if n.SizeHint > 0 {
		expect = cipherSize(n.SizeHint)
	}
	switch {
	case rs == nil:
		cw = v.newChunkWriter(id, expect)
	case rs.resume == nil:
		cw = v.chunkWriterAt(id, 0, sha256.New(), v.newAgeCheck(nil), expect)
	default:
		// The check reads the stored start again: it came over another
		// connection, and the vault file may have changed since.
		p := rs.resume
		cw = v.chunkWriterAt(id, p.Chunks, p.digest, v.newAgeCheck(&shortTxReader{v: v, id: id, want: p.Chunks}), max(0, expect-p.Stored))
		stored = p.Stored
	}
	src := &readErrs{r: r}
	var size int64
	var err error
	if to != nil {
		size, err = encryptInto(cw, src, to)
	} else {
		// A received age file, stored as it comes. Read in large blocks:
		// io.Copy would read a file 32 KiB at a time.
		size, err = io.CopyBuffer(cw, src, make([]byte, copyBufSize))
	}
	if err != nil && rs != nil && src.err != nil && rs.keep != nil && rs.keep(src.err) && !cw.failed.Load() && !cw.check.failed.Load() {
		// The peer went away: keep what arrived so a later fetch resumes.
		if kerr := v.suspend(cw, id, stored+size, rs); kerr != nil {
			return nil, errors.Join(err, kerr)
		}
		rs.kept = true
		return nil, err
	}
	if err != nil {
		if cerr := cw.abort(); cerr != nil {
			// The record was refused, or a write failed: that is the
			// error, not what stopping the copy did to the source.
			return nil, cerr
		}
		return nil, err
	}
	rest, first, err := cw.finish()
	if err != nil {
		cw.verdict(nil, false)
		return nil, err
	}
	if err := cw.verdict(rest, true); err != nil {
		return nil, err
	}
	m := &Meta{ID: id, Title: n.Title, Category: n.Category, Labels: normLabels(n.Labels), Date: n.Date,
		Added: v.now().UTC(), FileName: n.FileName, Size: size, Source: n.Source, FHIR: n.FHIR,
		ContentDigest: cw.sum(), Chunks: first + uint32(len(rest))}
	if cw.check != nil {
		// A received age file: its size is what it decrypted to.
		m.Size = cw.check.plain
	}
	if fix != nil {
		if err := fix(m); err != nil {
			return nil, err
		}
	}
	err = v.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketChunks)
		if err := cw.marks.drop(b, id); err != nil {
			return err
		}
		for i, c := range rest {
			if err := b.Put(chunkKey(id, first+uint32(i)), c); err != nil {
				return err
			}
		}
		d, ok := headerDigest(recordHead(b, id))
		if !ok && rs != nil {
			// The check read this header: it cannot be missing.
			return fmt.Errorf("%w: no age header and nonce at the start", ErrDamaged)
		}
		m.HeaderDigest = d
		if err := tx.Bucket(bucketPending).Delete(id[:]); err != nil {
			return err
		}
		if err := v.putMetaGrant(tx, m, act, m.Grant); err != nil {
			return err
		}
		return v.ledger.checkpoint(tx)
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// copyBufSize is the block size for streaming content into the vault.
const copyBufSize = 256 << 10

// onlyReader hides a reader's WriteTo, so io.CopyBuffer uses its buffer
// (*os.File.WriteTo would copy through a 32 KiB one).
type onlyReader struct{ io.Reader }

// readErrs is an onlyReader that remembers the reader's error, so a broken
// source can be told from a failed write.
type readErrs struct {
	r   io.Reader
	err error
}

func (r *readErrs) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// putMeta seals and stores m and appends the ledger entry that commits to
// the record's new state.
func (v *Vault) putMeta(tx *bbolt.Tx, m *Meta, act ledger.Action) error {
	return v.putMetaGrant(tx, m, act, nil)
}

func (v *Vault) putMetaGrant(tx *bbolt.Tx, m *Meta, act ledger.Action, grant []byte) error {
	return v.putMetaEvent(tx, m, Event{Action: act, Grant: grant})
}

// putMetaEvent seals and stores m and appends ev, completed with the
// record as its subject and the commitment to the record's new state.
func (v *Vault) putMetaEvent(tx *bbolt.Tx, m *Meta, ev Event) error {
	sealed, err := v.sealMeta(m)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketRecords).Put(m.ID[:], sealed); err != nil {
		return err
	}
	ev.Subjects, ev.commit = recordSubjects(m.ID), recordCommit(m.ID, sealed, m.ContentDigest)
	return v.logAppend(tx, ev)
}

// recordCommit is what the ledger commits to for a record's stored state:
// SHA-256("medvault/record-commit/v1" 0x00 || id || SHA-256(sealed meta) || content digest).
func recordCommit(id record.ID, sealed []byte, digest [32]byte) ledger.Hash {
	ms := sha256.Sum256(sealed)
	h := sha256.New()
	h.Write([]byte("medvault/record-commit/v1\x00"))
	h.Write(id[:])
	h.Write(ms[:])
	h.Write(digest[:])
	var out ledger.Hash
	copy(out[:], h.Sum(nil))
	return out
}

func normLabels(ls []record.Label) []record.Label {
	out := slices.Clone(ls)
	slices.Sort(out)
	return slices.Compact(out)
}

// Filter selects records in List. Zero fields match everything.
type Filter struct {
	Category record.Category
	Label    record.Label
	Since    time.Time // clinical date (or added date when unknown) on or after
	From     *[32]byte // only records shared by this patient (provider side)
	Source   Source
}

func (f *Filter) match(m *Meta) bool {
	if f.Category != "" && m.Category != f.Category {
		return false
	}
	if f.Label != "" && !m.HasLabel(f.Label) {
		return false
	}
	if f.Source != "" && m.Source != f.Source {
		return false
	}
	if f.From != nil && [32]byte(m.From) != *f.From {
		return false
	}
	if !f.Since.IsZero() {
		d := m.Date
		if d.IsZero() {
			d = m.Added
		}
		if d.Before(f.Since) {
			return false
		}
	}
	return true
}

// List returns the metadata of the records that match f, ordered by date
// (clinical date, else added), oldest first. Listing reads metadata only and
// is not a ledger event.
func (v *Vault) List(f Filter) ([]*Meta, error) {
	var out []*Meta
	err := v.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, sealed []byte) error {
			if len(k) != 16 {
				return fmt.Errorf("%w: malformed record key", ErrTampered)
			}
			if v.hidden(tx, record.ID(k)) {
				return nil
			}
			m, err := v.openMeta(record.ID(k), sealed)
			if err != nil {
				return err
			}
			if f.match(m) {
				out = append(out, m)
			}
			return nil
		})
	})
	slices.SortStableFunc(out, func(a, b *Meta) int {
		if c := sortTime(a).Compare(sortTime(b)); c != 0 {
			return c
		}
		// On the same date, FHIR resources by type and id, and versions
		// of one resource oldest first: an export read by a system that
		// keeps the last entry must end with the latest, not with a
		// version chosen by record ID. (Records that are not FHIR
		// resources come first, in record ID order.)
		fa, fb := a.FHIR, b.FHIR
		switch {
		case fa == nil || fb == nil:
			return cmp.Compare(boolInt(fa != nil), boolInt(fb != nil))
		case fa.Type != fb.Type:
			return strings.Compare(fa.Type, fb.Type)
		case fa.ID != fb.ID:
			return strings.Compare(fa.ID, fb.ID)
		case fa.ID == "" && fa.FullURL != fb.FullURL:
			// fullUrl names a resource only when it has no id (as in
			// fhirKey): exports give one resource a new urn:uuid each time.
			return strings.Compare(fa.FullURL, fb.FullURL)
		}
		return cmp.Compare(fa.Version, fb.Version)
	})
	return out, err
}

func sortTime(m *Meta) time.Time {
	if !m.Date.IsZero() {
		return m.Date
	}
	return m.Added
}

// Show returns the metadata of one record.
func (v *Vault) Show(id record.ID) (*Meta, error) {
	var m *Meta
	err := v.view(func(tx *bbolt.Tx) error {
		var err error
		m, err = v.meta1(tx, id)
		return err
	})
	return m, err
}

func (v *Vault) meta1(tx *bbolt.Tx, id record.ID) (*Meta, error) {
	sealed := tx.Bucket(bucketRecords).Get(id[:])
	if sealed == nil || v.hidden(tx, id) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return v.openMeta(id, sealed)
}

// Resolve finds the record whose ID starts with prefix (at least 6 hex
// digits), so users can type short IDs as they do with git.
func (v *Vault) Resolve(prefix string) (record.ID, error) {
	prefix = strings.ToLower(strings.TrimSpace(prefix))
	if id, err := record.ParseID(prefix); err == nil {
		return id, nil
	}
	if strings.Trim(prefix, "0123456789abcdef") != "" {
		return record.ID{}, invalidf("invalid record ID %q: a record ID is hexadecimal (0-9, a-f)", prefix)
	}
	if len(prefix) < 6 {
		return record.ID{}, invalidf("invalid record ID %q: give at least 6 hex digits", prefix)
	}
	if len(prefix) > 2*len(record.ID{}) {
		return record.ID{}, invalidf("invalid record ID %q: a record ID has %d hex digits", prefix, 2*len(record.ID{}))
	}
	var found []record.ID
	err := v.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, _ []byte) error {
			if len(k) == 16 && strings.HasPrefix(record.ID(k).String(), prefix) && !v.hidden(tx, record.ID(k)) {
				found = append(found, record.ID(k))
			}
			return nil
		})
	})
	switch {
	case err != nil:
		return record.ID{}, err
	case len(found) == 0:
		return record.ID{}, fmt.Errorf("%w: %s", ErrNotFound, prefix)
	case len(found) > 1:
		return record.ID{}, fmt.Errorf("record ID prefix %q is ambiguous (%d records)", prefix, len(found))
	}
	return found[0], nil
}

// Get writes the decrypted content of a record to w. The read is appended to
// the ledger, and committed, before any content is decrypted: there is no
// way through this package to read a record without leaving an entry.
func (v *Vault) Get(id record.ID, w io.Writer) (*Meta, error) {
	var m *Meta
	err := v.update(func(tx *bbolt.Tx) error {
		var err error
		if m, err = v.meta1(tx, id); err != nil {
			return err
		}
		if err := v.logAppend(tx, Event{Action: ledger.ActionRead, Subjects: recordSubjects(id)}); err != nil {
			return err
		}
		return v.ledger.checkpoint(tx)
	})
	if err != nil {
		return nil, err
	}
	return m, v.view(func(tx *bbolt.Tx) error {
		return v.decryptTo(tx, m, w)
	})
}

func (v *Vault) decryptTo(tx *bbolt.Tx, m *Meta, w io.Writer) error {
	// age authenticates the payload under the file key the header wraps;
	// the header digest makes sure it is this record's header.
	if err := checkHeader(m, recordHead(tx.Bucket(bucketChunks), m.ID)); err != nil {
		return err
	}
	cr := newChunkReader(tx, m.ID, m.Chunks, nil)
	s := &streamCheck{ids: v.identities(), out: w, sizeHint: m.Size}
	var err error
	for {
		var c []byte
		if c, err = cr.chunk(); err != nil {
			break
		}
		if err = s.Write(c); err != nil {
			break
		}
	}
	if err == io.EOF {
		err = s.Close()
	} else {
		s.Close() // wipes the plaintext buffer
	}
	var we *writeError
	switch {
	case err == nil:
		return cr.check(m.ContentDigest)
	case errors.Is(err, ErrTampered): // a chunk is missing
		return err
	case errors.As(err, &we):
		return we.err
	case s.headerErr != nil:
		return fmt.Errorf("%w: record %s: %v", ErrDecrypt, m.ID, s.headerErr)
	default:
		return fmt.Errorf("%w: record %s: content does not authenticate", ErrTampered, m.ID)
	}
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// Remove deletes a record: its metadata, its chunks and its index entries
// (FHIR and reference index) go
// in one transaction with the ledger entry, then the database is compacted
// so that no freed page keeps a copy of the ciphertext or metadata.
func (v *Vault) Remove(id record.ID) error {
	err := v.update(func(tx *bbolt.Tx) error {
		m, err := v.meta1(tx, id)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketRecords).Delete(id[:]); err != nil {
			return err
		}
		c := tx.Bucket(bucketChunks).Cursor()
		for k, _ := c.Seek(id[:]); k != nil && len(k) == 20 && record.ID(k[:16]) == id; k, _ = c.Seek(id[:]) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		if err := v.unindex(tx, m); err != nil {
			return err
		}
		if err := v.unref(tx, []record.ID{id}); err != nil {
			return err
		}
		if err := v.logAppend(tx, Event{Action: ledger.ActionRemove, Subjects: recordSubjects(id)}); err != nil {
			return err
		}
		// Owed from the moment the delete commits: a process killed
		// while compacting leaves the mark, and the next Open compacts.
		if err := tx.Bucket(bucketMeta).Put(keyCompactOwed, []byte{1}); err != nil {
			return err
		}
		return v.ledger.checkpoint(tx)
	})
	if err != nil {
		return err
	}
	return v.shred()
}

// shred compacts the file after a delete, then clears the compact-owed mark
// the delete set. If compaction fails (a full disk, say), the delete stands
// and the mark stays: every later Open retries it.
func (v *Vault) shred() error { return v.shredWithin(compactWait) }

func (v *Vault) shredWithin(wait time.Duration) error {
	err := v.compactWithin(wait)
	v.deferred.Store(errors.Is(err, ErrCompactDeferred))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrCompactDeferred):
		return err
	}
	return fmt.Errorf("deleted, but removing the old bytes from the vault file failed (it is retried each time the vault is opened): %w", err)
}

// SetLabels adds and removes sensitivity labels by hand, on the record and
// on every other version the vault holds of the same FHIR resource (a
// diagnosis labelled MH in its second version is as sensitive in its
// first); each change is a ledger entry. Labels it adds reach every record
// of the resource's type and id, as labels spread by type and id across
// servers (erring toward withholding: docs/DESIGN.md); labels it removes
// leave only the versions of the same series (seriesOf): another server's
// resource with that type and id is another resource, and a removal the
// patient judged for this one must not send that one under a grant
// without the label. Labels it adds also reach, as an
// import's propagation would, the imported records that reference the
// resource, and the records that reference those (spreadAdded). It returns
// the record's new metadata and what else changed.
//
// It waits for imports running (see Vault.labels), at most labelWait, and
// then fails with ErrImportRunning.
func (v *Vault) SetLabels(id record.ID, add, remove []record.Label) (*Meta, Relabelled, error) {
	if !v.labelsWithin(labelWait) {
		return nil, Relabelled{}, fmt.Errorf("label %s: %w", id, ErrImportRunning)
	}
	defer v.labels.Unlock()
	var m *Meta
	var others Relabelled
	err := v.update(func(tx *bbolt.Tx) error {
		others = Relabelled{}
		var err error
		if m, err = v.meta1(tx, id); err != nil {
			return err
		}
		// Only labels the resource gains spread (a label it had already
		// reached the records that reference it when it came, or was
		// removed from them by hand since).
		var gained []record.Label
		relabel := func(m *Meta, remove []record.Label) (bool, error) {
			for _, l := range add {
				if !m.HasLabel(l) && !slices.Contains(gained, l) {
					gained = append(gained, l)
				}
			}
			ls := append(slices.Clone(m.Labels), add...)
			ls = normLabels(slices.DeleteFunc(ls, func(l record.Label) bool { return slices.Contains(remove, l) }))
			// A label removed by hand stays removed when labels are
			// derived again (relabel); adding it back ends that.
			hr := append(slices.Clone(m.HandRemoved), remove...)
			hr = normLabels(slices.DeleteFunc(hr, func(l record.Label) bool { return slices.Contains(add, l) }))
			if slices.Equal(ls, m.Labels) && slices.Equal(hr, m.HandRemoved) && m.ID != id {
				return false, nil
			}
			m.Labels, m.HandRemoved = ls, hr
			return true, v.putMeta(tx, m, ledger.ActionLabel)
		}
		if _, err := relabel(m, remove); err != nil {
			return err
		}
		for _, oid := range v.otherVersions(tx, m) {
			om, err := v.meta1(tx, oid)
			if err != nil {
				return err
			}
			// otherVersions is keyed by type and id: another server's
			// resource gains what is added, but loses nothing.
			same := om.FHIR != nil && sameResource(om, m)
			rm := remove
			if !same {
				rm = nil
			}
			changed, err := relabel(om, rm)
			if err != nil {
				return err
			}
			switch {
			case changed && same:
				others.Versions++
			case changed:
				others.SameID++
			}
		}
		written, overrode, err := v.spreadAdded(tx, m, gained, nil)
		if err != nil {
			return err
		}
		others.Referrers, others.Overrode = len(written), len(overrode)
		return v.ledger.checkpoint(tx)
	})
	return m, others, err
}

// Relabelled says what else a change of labels by hand changed.
type Relabelled struct {
	Versions  int // other versions of the same FHIR resource (its series)
	SameID    int // other servers' resources of its type and id, which gained a label added (removals do not reach them)
	Referrers int // records that reference it (or reference those), which gained a label
	Overrode  int // of those, records that gained a label the patient had removed from them by hand
}

// inherit adds labels ls, which reach m through a reference, to it; a
// label the patient had removed from m by hand is back, and is no longer
// listed as removed. It reports whether one was.
func (m *Meta) inherit(ls []record.Label) bool {
	m.Labels = normLabels(append(slices.Clone(m.Labels), ls...))
	n := len(m.HandRemoved)
	m.HandRemoved = slices.DeleteFunc(slices.Clone(m.HandRemoved), func(l record.Label) bool { return slices.Contains(ls, l) })
	if len(m.HandRemoved) == 0 {
		m.HandRemoved = nil
	}
	return len(m.HandRemoved) < n
}

// spreadAdded gives labels add, just added by hand to record m and its
// other versions, to the vault's records that reference m's resource, and
// on from those to the records that reference them, to a fixed point: rule
// 1 of fhir.Propagate over the reference index, as an import applies it
// when the labelled resource arrives after the records that reference it.
// Without it the result depended on order: a Claim imported after its
// Encounter was labelled MH by hand inherited MH, one imported before did
// not, and a billing grant without MH shared it. Only the added labels
// travel (a label the patient removed from a referrer by hand is not put
// back by an unrelated change), and only on from records that gained them;
// a record that gains one gets a label entry with reason LabelPropagated,
// and so do its other versions. A label that reaches a record the patient
// had removed it from by hand is put back all the same (what the patient
// judged was the record without it; a sensitive record stays out unless
// named), and no longer counts as removed by hand; overrode lists those
// records, so the patient can be told; written lists every record that
// gained a label. A vault whose
// reference index is not built yet (no import since it was introduced)
// spreads nothing: its next import builds the index.
//
// With unreadable set, a record whose metadata does not open (ErrTampered)
// is added to it and passed over rather than failing the spread: deriving
// labels again at Open must not lock the patient out for one damaged
// record (verify reports it).
func (v *Vault) spreadAdded(tx *bbolt.Tx, m *Meta, add []record.Label, unreadable map[record.ID]bool) (written, overrode []record.ID, _ error) {
	add = normLabels(slices.Clone(add))
	if len(add) == 0 || m.FHIR == nil || !m.From.IsZero() || tx.Bucket(bucketRefs) == nil {
		return nil, nil, nil
	}
	// Each record to spread from carries the labels it passes on: those
	// it gained. A referrer that already had them all is where the spread
	// stops, as an import's propagation stops at a record whose labels did
	// not change: a label the patient removed by hand from a record
	// further on is not put back through one that had it anyway.
	type step struct {
		m   *Meta
		add []record.Label
	}
	// A referrer may be reached again, from another record that gained
	// other labels: what it gains is worked out each time against the
	// labels it has now, so each label reaches it once and the spread
	// ends (every step adds a label). Only m and its versions, labelled
	// just now, are never reached again.
	rh := v.newRefHasher()
	seen := map[record.ID]uint8{} // 1: in written, 2: in overrode
	origin := map[record.ID]bool{m.ID: true}
	work := []step{{m, add}}
	for _, oid := range v.otherVersions(tx, m) {
		origin[oid] = true
		om, err := v.meta1(tx, oid)
		if passOver(err, oid, unreadable) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		work = append(work, step{om, add})
	}
	for len(work) > 0 {
		t := work[len(work)-1]
		work = work[:len(work)-1]
		if t.m.FHIR == nil || !fhir.PassesLabels(t.m.FHIR.Type) {
			continue
		}
		for _, h := range v.referrerKeys(tx, t.m) {
			ids, exacts := v.referrers(tx, rh, h)
			for i, rid := range ids {
				if len(exacts[i]) > 0 && len(v.holders(tx, exacts[i])) > 0 {
					continue // the reference as written names another resource
				}
				if origin[rid] {
					continue
				}
				rm, err := v.meta1(tx, rid)
				if passOver(err, rid, unreadable) {
					continue
				}
				if err != nil {
					return nil, nil, err
				}
				group, err := v.versionGroup(tx, rm, unreadable)
				if err != nil {
					return nil, nil, err
				}
				for _, g := range group {
					if origin[g.ID] {
						continue
					}
					var gained []record.Label
					for _, l := range t.add {
						if !slices.Contains(g.Labels, l) {
							gained = append(gained, l)
						}
					}
					if len(gained) == 0 {
						continue
					}
					if g.inherit(gained) && seen[g.ID]&2 == 0 {
						seen[g.ID] |= 2
						overrode = append(overrode, g.ID)
					}
					if err := v.putMetaEvent(tx, g, Event{Action: ledger.ActionLabel, Reason: LabelPropagated}); err != nil {
						return nil, nil, err
					}
					if seen[g.ID]&1 == 0 {
						seen[g.ID] |= 1
						written = append(written, g.ID)
					}
					work = append(work, step{g, gained})
				}
			}
		}
	}
	return written, overrode, nil
}

// versionGroup returns m and the metadata of its other versions. With
// unreadable set, a version whose metadata does not open is added to it
// and left out (see spreadAdded).
func (v *Vault) versionGroup(tx *bbolt.Tx, m *Meta, unreadable map[record.ID]bool) ([]*Meta, error) {
	group := []*Meta{m}
	for _, oid := range v.otherVersions(tx, m) {
		om, err := v.meta1(tx, oid)
		if passOver(err, oid, unreadable) {
			continue
		}
		if err != nil {
			return nil, err
		}
		group = append(group, om)
	}
	return group, nil
}

// passOver reports whether err, from reading record id's metadata, is one
// to pass over: the record is not there (an index entry that damage left
// behind; verify reports it), or unreadable is set and the metadata does
// not open, and then it adds id to unreadable.
func passOver(err error, id record.ID, unreadable map[record.ID]bool) bool {
	if errors.Is(err, ErrNotFound) {
		return true
	}
	if unreadable == nil || !errors.Is(err, ErrTampered) {
		return false
	}
	unreadable[id] = true
	return true
}

// otherVersions returns the IDs of the other stored versions of the FHIR
// resource m is (none for a record that is not one, or was received).
func (v *Vault) otherVersions(tx *bbolt.Tx, m *Meta) []record.ID {
	if m.FHIR == nil || !m.From.IsZero() {
		return nil
	}
	val := tx.Bucket(bucketIndex).Get(v.fhirKey(&fhir.Resource{Type: m.FHIR.Type, ID: m.FHIR.ID, FullURL: m.FHIR.FullURL}))
	recs := tx.Bucket(bucketRecords)
	var out []record.ID
	for i := 0; i+indexEntry <= len(val); i += indexEntry {
		id := record.ID(val[i : i+16])
		if id != m.ID && recs.Get(id[:]) != nil && !v.hidden(tx, id) {
			out = append(out, id)
		}
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
