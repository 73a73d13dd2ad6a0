package vault

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"filippo.io/age"
	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// ImportStats says what an import did.
type ImportStats struct {
	File       string
	Resources  int // resources read from the file
	Added      int // new records (first versions)
	Versions   int // new versions of resources already in the vault
	Unchanged  int // resources already in the vault with the same content
	ByCategory map[record.Category]int
	Labelled   int // records added with at least one sensitivity label
}

// importBatch is how many resources are encrypted and staged per
// transaction while a file is read.
const importBatch = 8192

type staged struct {
	id      record.ID
	res     *fhir.Resource // Raw dropped once encrypted
	key     []byte         // index key for Type/ID
	content [32]byte       // keyed hash of the raw bytes
	version int
	digest  [32]byte
	chunks  uint32
	size    int64
}

// Import reads one FHIR R4 file (a Bundle, NDJSON, or a single resource)
// and stores each resource as a record, with its original bytes exactly.
//
// An import takes the whole file or nothing of it: resources are encrypted
// and staged (invisible, marked pending) in batches while the file is read,
// and all of them become visible, with their ledger entries, in one final
// transaction, only after the whole file parsed. A parse error, or a
// process killed at any point, leaves the vault as it was.
//
// Importing the same data again adds nothing: a resource whose type, id and
// content are already in the vault is counted as unchanged; the same type
// and id with other content becomes a new version beside the old one.
// Sensitivity labels found on a resource are propagated to the resources of
// the same file that reference it or carry the same codes.
//
// Memory grows with the number of resources in the file, not with their
// size: each resource's index (about 3 KB) is kept until the end, because
// labels propagate across the whole file. Records are committed in
// transactions of commitBatch, hidden until the last one.
func (v *Vault) Import(name string, r io.Reader, progress func(resources int, offset int64)) (*ImportStats, error) {
	st := &ImportStats{File: name, ByCategory: map[record.Category]int{}}
	var all []*staged
	seen := map[string][][32]byte{} // this file's type/id -> content hashes
	fail := func(err error) (*ImportStats, error) {
		if derr := v.discardStaged(all); derr != nil {
			err = errors.Join(err, fmt.Errorf("discard staged records: %w (they are removed at the next open)", derr))
		}
		return nil, err
	}
	rd := fhir.NewReader(r, name)
	var batch []*staged
	for {
		res, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(err)
		}
		st.Resources++
		offset := res.Offset + int64(len(res.Raw))
		// Keep only what label propagation and the metadata need: every
		// resource's index stays in memory until the file is done.
		res.Codes, res.CategoryCodes, res.Subject, res.Why = nil, nil, "", nil
		for i := range res.Code {
			res.Code[i].Display = ""
		}
		s := &staged{res: res, key: v.fhirKey(res), content: v.contentKey(res.Raw)}
		if v.knownContent(seen, s) {
			st.Unchanged++
			continue
		}
		batch = append(batch, s)
		all = append(all, s)
		if len(batch) == importBatch {
			if err := v.stage(batch); err != nil {
				return fail(fmt.Errorf("import %s: %w", name, err))
			}
			batch = batch[:0]
			if progress != nil {
				progress(st.Resources, offset)
			}
		}
	}
	if err := v.stage(batch); err != nil {
		return fail(fmt.Errorf("import %s: %w", name, err))
	}
	if progress != nil {
		progress(st.Resources, -1)
	}
	rs := make([]*fhir.Resource, len(all))
	for i, s := range all {
		rs[i] = s.res
	}
	fhir.Propagate(rs)
	for _, r := range rs {
		// Only the fields the metadata keeps are needed from here on.
		r.Code, r.Security, r.References = nil, nil, nil
	}
	rs = nil
	// Versions are numbered in file order; records are then committed in
	// key order (bbolt splits nodes only at commit, so inserting random
	// keys into one transaction costs a memmove per insert).
	byID := slices.Clone(all)
	slices.SortFunc(byID, func(a, b *staged) int { return bytes.Compare(a.id[:], b.id[:]) })
	var index map[string][]byte
	if err := v.view(func(tx *bbolt.Tx) error { index = v.numberVersions(tx, all); return nil }); err != nil {
		return fail(err)
	}
	// Commit in transactions of commitBatch records: each record's
	// metadata and ledger entry go in, still hidden behind an
	// authenticated pending mark. The last transaction writes the index and
	// clears every mark: the moment the whole file becomes visible. A crash
	// before it is rolled back at the next open (see cleanPending).
	committed := 0
	abort := func(err error) (*ImportStats, error) {
		if rerr := v.rollBackImport(byID[:committed]); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return fail(err)
	}
	for len(byID[committed:]) > 0 {
		batch := byID[committed:min(len(byID), committed+commitBatch)]
		err := v.commitHidden(batch)
		if err != nil {
			return abort(fmt.Errorf("import %s: %w", name, err))
		}
		committed += len(batch)
	}
	err := v.update(func(tx *bbolt.Tx) error {
		idx, pb := tx.Bucket(bucketIndex), tx.Bucket(bucketPending)
		for _, k := range slices.Sorted(maps.Keys(index)) {
			if err := idx.Put([]byte(k), index[k]); err != nil {
				return err
			}
		}
		for _, s := range byID {
			if err := pb.Delete(s.id[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return abort(fmt.Errorf("import %s: %w", name, err))
	}
	for _, s := range all {
		if s.version == 1 {
			st.Added++
		} else {
			st.Versions++
		}
		st.ByCategory[s.res.Category]++
		if len(s.res.Labels) > 0 {
			st.Labelled++
		}
	}
	return st, nil
}

// commitHidden writes the metadata and ledger entries of staged records in
// one transaction, each behind an authenticated pending mark.
func (v *Vault) commitHidden(batch []*staged) error {
	return v.update(func(tx *bbolt.Tx) error {
		pb := tx.Bucket(bucketPending)
		for _, s := range batch {
			m := &Meta{ID: s.id, Title: s.res.Title, Category: s.res.Category, Labels: normLabels(s.res.Labels),
				Date: s.res.Date, Added: v.now().UTC(), Size: s.size, Source: SourceImport,
				FHIR:   &FHIRInfo{Type: s.res.Type, ID: s.res.ID, FullURL: s.res.FullURL, Version: s.version, ContentKey: s.content[:]},
				Status: s.res.Status, ContentDigest: s.digest, Chunks: s.chunks}
			if err := v.putMeta(tx, m, ledger.ActionImport); err != nil {
				return err
			}
			if err := pb.Put(s.id[:], v.pendingMark(s.id)); err != nil {
				return err
			}
		}
		return v.ledger.checkpoint(tx)
	})
}

// commitBatch is how many imported records one commit transaction holds.
const commitBatch = 4096

// numberVersions gives each staged resource its version number, in file
// order, and the labels of earlier versions (a label the patient added by
// hand must not fall off because the hospital re-exported the resource);
// numbering continues after removed versions. It returns the new index
// values.
func (v *Vault) numberVersions(tx *bbolt.Tx, all []*staged) map[string][]byte {
	idx, recs := tx.Bucket(bucketIndex), tx.Bucket(bucketRecords)
	type known struct {
		val     []byte
		version int
		labels  []record.Label
	}
	index := map[string]*known{}
	for _, s := range all {
		k, ok := index[string(s.key)]
		if !ok {
			k = &known{val: bytes.Clone(idx.Get(s.key))}
			for i := 0; i+indexEntry <= len(k.val); i += indexEntry {
				id := record.ID(k.val[i : i+16])
				if m, err := v.openMeta(id, recs.Get(id[:])); err == nil && m.FHIR != nil {
					k.version = max(k.version, m.FHIR.Version)
					k.labels = append(k.labels, m.Labels...)
				}
			}
			index[string(s.key)] = k
		}
		k.version++
		s.version = k.version
		k.labels = append(k.labels, s.res.Labels...)
		s.res.Labels = normLabels(k.labels)
		k.val = append(append(k.val, s.id[:]...), s.content[:]...)
	}
	out := make(map[string][]byte, len(index))
	for key, k := range index {
		out[key] = k.val
	}
	return out
}

// pendingMark is the pending value of an imported record whose metadata is
// committed but which is not visible yet. It is keyed, so a mark written
// by anyone but this vault's owner is recognised as forged and never makes
// the vault delete a record.
func (v *Vault) pendingMark(id record.ID) []byte {
	m := hmac.New(sha256.New, v.index)
	m.Write([]byte("medvault/pending-commit/v1\x00"))
	m.Write(id[:])
	return m.Sum(nil)
}

// hidden reports whether record id belongs to an import not yet complete.
func (v *Vault) hidden(tx *bbolt.Tx, id record.ID) bool {
	p := tx.Bucket(bucketPending).Get(id[:])
	return p != nil && hmac.Equal(p, v.pendingMark(id))
}

// rollBackImport removes records of an import that did not complete: their
// metadata, chunks and marks, each with a ledger entry saying so.
func (v *Vault) rollBackImport(ss []*staged) error {
	ids := make([]record.ID, len(ss))
	for i, s := range ss {
		ids[i] = s.id
	}
	return v.rollBack(ids)
}

func (v *Vault) rollBack(ids []record.ID) error {
	for len(ids) > 0 {
		n := min(len(ids), commitBatch)
		err := v.update(func(tx *bbolt.Tx) error {
			recs, cb, pb := tx.Bucket(bucketRecords), tx.Bucket(bucketChunks), tx.Bucket(bucketPending)
			for _, id := range ids[:n] {
				if err := recs.Delete(id[:]); err != nil {
					return err
				}
				c := cb.Cursor()
				for k, _ := c.Seek(id[:]); k != nil && len(k) == 20 && record.ID(k[:16]) == id; k, _ = c.Seek(id[:]) {
					if err := c.Delete(); err != nil {
						return err
					}
				}
				if err := pb.Delete(id[:]); err != nil {
					return err
				}
				if err := v.logAppend(tx, Event{Action: ledger.ActionRemove, Subjects: recordSubjects(id),
					Outcome: ledger.OutcomeFailed, Reason: "import-aborted"}); err != nil {
					return err
				}
			}
			return v.ledger.checkpoint(tx)
		})
		if err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// indexEntry is the size of one version in an index value:
// record ID (16) || keyed content hash (32).
const indexEntry = 16 + 32

// fhirKey is the index key of a resource: a keyed hash of its type and id
// (or fullUrl when it has no id), so the index reveals neither.
func (v *Vault) fhirKey(r *fhir.Resource) []byte {
	m := hmac.New(sha256.New, v.index)
	m.Write([]byte("medvault/fhir-key/v1\x00"))
	m.Write([]byte(r.Type))
	m.Write([]byte{0})
	if r.ID != "" {
		m.Write([]byte(r.ID))
	} else {
		m.Write([]byte("fullUrl\x00" + r.FullURL))
	}
	return m.Sum(nil)
}

func (v *Vault) contentKey(raw []byte) (out [32]byte) {
	m := hmac.New(sha256.New, v.index)
	m.Write([]byte("medvault/fhir-content/v1\x00"))
	m.Write(raw)
	copy(out[:], m.Sum(nil))
	return out
}

// knownContent reports whether the vault, or this file earlier, already
// holds s's type/id with the same content, and remembers s.
func (v *Vault) knownContent(seen map[string][][32]byte, s *staged) bool {
	k := string(s.key)
	for _, c := range seen[k] {
		if c == s.content {
			return true
		}
	}
	seen[k] = append(seen[k], s.content)
	found := false
	v.view(func(tx *bbolt.Tx) error {
		val := tx.Bucket(bucketIndex).Get(s.key)
		for i := 0; i+indexEntry <= len(val); i += indexEntry {
			if bytes.Equal(val[i+16:i+indexEntry], s.content[:]) {
				found = true
			}
		}
		return nil
	})
	return found
}

// discardStaged deletes the chunks and pending marks of staged records, many
// per transaction (each resource is small: at most a few chunks).
func (v *Vault) discardStaged(all []*staged) error {
	for len(all) > 0 {
		n := min(len(all), 1024)
		err := v.update(func(tx *bbolt.Tx) error {
			cb, pb := tx.Bucket(bucketChunks), tx.Bucket(bucketPending)
			for _, s := range all[:n] {
				if s.chunks == 0 {
					continue
				}
				for i := range s.chunks {
					if err := cb.Delete(chunkKey(s.id, i)); err != nil {
						return err
					}
				}
				if err := pb.Delete(s.id[:]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		all = all[n:]
	}
	return nil
}

// stage encrypts a batch of resources (on both cores) and writes their
// chunks, marked pending, in one transaction.
func (v *Vault) stage(batch []*staged) error {
	if len(batch) == 0 {
		return nil
	}
	type result struct {
		chunks [][]byte
		err    error
	}
	out := make([]result, len(batch))
	var wg sync.WaitGroup
	work := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i].chunks, out[i].err = v.encryptSmall(batch[i])
			}
		}()
	}
	for i := range batch {
		work <- i
	}
	close(work)
	wg.Wait()
	for i := range batch {
		if out[i].err != nil {
			return out[i].err
		}
		batch[i].id = record.NewID()
	}
	order := make([]int, len(batch))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(batch[a].id[:], batch[b].id[:]) })
	return v.update(func(tx *bbolt.Tx) error {
		cb, pb := tx.Bucket(bucketChunks), tx.Bucket(bucketPending)
		for _, i := range order {
			s := batch[i]
			for j, c := range out[i].chunks {
				if err := cb.Put(chunkKey(s.id, uint32(j)), c); err != nil {
					return err
				}
			}
			s.chunks = uint32(len(out[i].chunks))
			if err := pb.Put(s.id[:], []byte("import")); err != nil {
				return err
			}
		}
		return nil
	})
}

// encryptSmall encrypts one resource's raw bytes in memory (resources are
// bounded by the reader's size limit) and cuts the ciphertext into chunks.
func (v *Vault) encryptSmall(s *staged) ([][]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, v.content)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(s.res.Raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	s.size = int64(len(s.res.Raw))
	s.res.Raw = nil
	ct := buf.Bytes()
	s.digest = sha256.Sum256(ct)
	var chunks [][]byte
	for len(ct) > 0 {
		n := min(len(ct), chunkSize)
		chunks = append(chunks, ct[:n])
		ct = ct[n:]
	}
	return chunks, nil
}

// unindex removes a deleted record from the FHIR index.
func (v *Vault) unindex(tx *bbolt.Tx, m *Meta) error {
	if m.FHIR == nil {
		return nil
	}
	key := v.fhirKey(&fhir.Resource{Type: m.FHIR.Type, ID: m.FHIR.ID, FullURL: m.FHIR.FullURL})
	idx := tx.Bucket(bucketIndex)
	val := idx.Get(key)
	var keep []byte
	for i := 0; i+indexEntry <= len(val); i += indexEntry {
		if !bytes.Equal(val[i:i+16], m.ID[:]) {
			keep = append(keep, val[i:i+indexEntry]...)
		}
	}
	if len(keep) == 0 {
		return idx.Delete(key)
	}
	return idx.Put(key, keep)
}
