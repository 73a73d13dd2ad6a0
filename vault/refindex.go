package vault

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// The reference index lets an import's sensitivity labels cross file
// boundaries (see Import): a resource imported now inherits the labels of
// the records it references, and records stored earlier that reference a
// resource imported now inherit its labels. Two buckets hold it, keyed
// under the vault's index key like bucketIndex, so neither reveals a type,
// an id or a reference:
//
//   - refs2: refs key || referrer record ID -> empty, or, for a reference
//     whose "Type/id" form is a fallback (fhir.ReferenceKeys), the ref key
//     of the reference as written, masked (the fallback applies only when
//     no resource holds that one). A refs key is a ref key under a domain
//     of its own (refsKey), so that it matches no key of bucketIndex or
//     bucketTargets: without the index key, no one can tell which record a
//     record references.
//   - targets: ref key of a fullUrl || record ID -> empty: the records a
//     fullUrl reference finds, under FHIRInfo.FullURL and each of
//     FHIRInfo.FullURLs (the fullUrls later imports brought it under). A "Type/id" reference finds its records
//     through bucketIndex, whose keys are the same hashes (see refKey).
//
// What the file still shows: how many references each record has that can
// carry labels, and which records reference a common (unnamed) target.
//
// The first build of the index ("refs", where a refs key was the ref key
// itself) was never released; a vault that has it gets the index rebuilt
// at its next import (refsIndexed), and until then rm and rollback keep
// removing entries from it.
var (
	bucketRefs    = []byte("refs2")
	bucketTargets = []byte("targets")
	bucketRefsV1  = []byte("refs")
)

// refKeyLen is the length of a ref key; refs and targets keys are a ref
// key and a record ID.
const refKeyLen = 32

// refHasher computes ref keys with one reusable HMAC (not safe for
// concurrent use).
type refHasher struct{ mac hash.Hash }

func (v *Vault) newRefHasher() *refHasher { return &refHasher{hmac.New(sha256.New, v.index)} }

// key returns the ref key of a key of fhir.TargetKeys or fhir.ReferenceKeys:
// for a plain "Type/id", the FHIR index key of that type and id (fhirKey),
// so bucketIndex lists the records that hold it; for anything else (a
// fullUrl, an absolute or versioned reference),
// HMAC(index key, "medvault/fhir-ref/v1" 0x00 || key).
func (h *refHasher) key(k string) []byte {
	h.mac.Reset()
	if typ, id, ok := fhir.PlainKey(k); ok {
		h.mac.Write([]byte("medvault/fhir-key/v1\x00"))
		h.mac.Write([]byte(typ))
		h.mac.Write([]byte{0})
		h.mac.Write([]byte(id))
	} else {
		h.mac.Write([]byte("medvault/fhir-ref/v1\x00"))
		h.mac.Write([]byte(k))
	}
	return h.mac.Sum(nil)
}

func (v *Vault) refKey(k string) []byte { return v.newRefHasher().key(k) }

// refsKey returns the refs key of ref key h:
// HMAC(index key, "medvault/fhir-refs/v2" 0x00 || h).
func (h *refHasher) refsKey(ref []byte) []byte {
	h.mac.Reset()
	h.mac.Write([]byte("medvault/fhir-refs/v2\x00"))
	h.mac.Write(ref)
	return h.mac.Sum(nil)
}

// mask masks (and unmasks) the value of refs entry key, a ref key: it is
// XORed with HMAC(index key, "medvault/fhir-refs-value/v2" 0x00 || key),
// unique to the entry, so the value matches no other key of the file.
func (h *refHasher) mask(key, val []byte) []byte {
	h.mac.Reset()
	h.mac.Write([]byte("medvault/fhir-refs-value/v2\x00"))
	h.mac.Write(key)
	out := h.mac.Sum(nil)
	for i := range out {
		out[i] ^= val[i]
	}
	return out
}

// targetRefKeys returns the ref keys under which references find the
// resource m describes.
func (v *Vault) targetRefKeys(m *Meta) [][]byte {
	var out [][]byte
	urls := append([]string{m.FHIR.FullURL}, m.FHIR.FullURLs...)
	for _, u := range urls {
		for _, tk := range fhir.TargetKeys(&fhir.Resource{Type: m.FHIR.Type, ID: m.FHIR.ID, FullURL: u}) {
			h := v.refKey(tk.Key)
			if !slices.ContainsFunc(out, func(x []byte) bool { return bytes.Equal(x, h) }) {
				out = append(out, h)
			}
		}
	}
	return out
}

// holders returns the visible records that hold ref key h: the versions of
// the resource whose "Type/id" it is and the records whose fullUrl it is.
func (v *Vault) holders(tx *bbolt.Tx, h []byte) []record.ID {
	var out []record.ID
	val := tx.Bucket(bucketIndex).Get(h)
	for i := 0; i+indexEntry <= len(val); i += indexEntry {
		if id := record.ID(val[i : i+16]); !v.hidden(tx, id) {
			out = append(out, id)
		}
	}
	if b := tx.Bucket(bucketTargets); b != nil {
		c := b.Cursor()
		for k, _ := c.Seek(h); hasPrefix(k, h) && len(k) == refKeyLen+16; k, _ = c.Next() {
			if id := record.ID(k[refKeyLen:]); !v.hidden(tx, id) && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// heldLabels returns the labels a reference to ref key h inherits from the
// vault: those of every visible version of each resource holding h that
// passes labels on (actors such as Patient do not), since labels cover
// every version of a resource. A holder whose metadata does not open is an
// error (ErrTampered): the labels it would pass on are unknown, and an
// import must not go on without them.
func (v *Vault) heldLabels(tx *bbolt.Tx, h []byte) ([]record.Label, error) {
	var out []record.Label
	recs := tx.Bucket(bucketRecords)
	for _, id := range v.holders(tx, h) {
		m, err := v.openMeta(id, recs.Get(id[:]))
		if err != nil {
			return nil, err
		}
		if m.FHIR != nil && fhir.PassesLabels(m.FHIR.Type) {
			out = append(out, m.Labels...)
		}
	}
	return normLabels(out), nil
}

// appendRefEntries appends the refs entries of a reference that record id
// makes: under the refs key of he, the ref key of the reference as written,
// and, if the reference has a "Type/id" fallback, under that of hf, its ref
// key, with he, masked, as the value (the fallback applies only when
// nothing holds he). Each entry's ref key is kept in lookup.
func (h *refHasher) appendRefEntries(es []refEntry, id record.ID, he, hf []byte) []refEntry {
	es = append(es, refEntry{key: append(h.refsKey(he), id[:]...), lookup: he})
	if hf != nil {
		k := append(h.refsKey(hf), id[:]...)
		es = append(es, refEntry{key: k, val: h.mask(k, he), lookup: hf})
	}
	return es
}

// referrers returns the visible records that make a reference to ref key
// h, each with, for a fallback entry, the ref key of the reference as
// written (nil otherwise).
func (v *Vault) referrers(tx *bbolt.Tx, rh *refHasher, h []byte) (ids []record.ID, exacts [][]byte) {
	p := rh.refsKey(h)
	c := tx.Bucket(bucketRefs).Cursor()
	for k, val := c.Seek(p); hasPrefix(k, p); k, val = c.Next() {
		if len(k) != refKeyLen+16 {
			continue
		}
		id := record.ID(k[refKeyLen:])
		if v.hidden(tx, id) {
			continue
		}
		var exact []byte
		if len(val) == refKeyLen {
			exact = rh.mask(k, val)
		}
		ids, exacts = append(ids, id), append(exacts, exact)
	}
	return ids, exacts
}

// unref removes the reference-index entries of records ids (deleted or
// rolled back) in tx. Their keys cannot be derived without the records'
// content, so it scans both buckets: Remove compacts the whole file
// anyway, which costs far more.
func (v *Vault) unref(tx *bbolt.Tx, ids []record.ID) error {
	set := make(map[record.ID]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	for _, name := range [][]byte{bucketRefs, bucketTargets, bucketRefsV1} {
		b := tx.Bucket(name)
		if b == nil {
			continue
		}
		var del [][]byte
		b.ForEach(func(k, _ []byte) error {
			if len(k) == refKeyLen+16 && set[record.ID(k[refKeyLen:])] {
				del = append(del, bytes.Clone(k))
			}
			return nil
		})
		for _, k := range del {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// createRefBuckets creates the reference index's buckets if missing.
func createRefBuckets(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bucketRefs, bucketTargets} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// refsIndexed reports whether the vault has the reference index: every
// vault created since has it from the start, and an older one gets it
// whole, in one transaction, at its first import (ensureRefIndex), as does
// one with the first build's index (bucketRefsV1), which it replaces.
func refsIndexed(tx *bbolt.Tx) bool {
	return tx.Bucket(bucketRefs) != nil && tx.Bucket(bucketTargets) != nil
}

// refIndexBatch is how many records one read transaction of
// ensureRefIndex decrypts.
const refIndexBatch = 1024

// ensureRefIndex builds the reference index of a vault created before it
// existed, once: it decrypts every imported FHIR record, refIndexBatch per
// read transaction (the content never leaves this function, and nothing
// is logged: no one reads it), and reads its references; then one
// transaction creates the index's buckets with all their entries, so a
// vault has the whole index or none (a process killed before that
// transaction leaves nothing, and the next import starts again). A record
// whose metadata or content does not open stops it (ErrTampered): remove
// it (rm) and import again. The
// entries are held in memory until then: ~100 bytes per reference. Labels
// the vault's earlier imports did not spread between files stay as they
// were: the index lets later imports reach these records, it does not
// relabel them.
//
// progress, if set, is called before the first batch and after each, with
// the records read so far and the records the vault holds (~18 s for 100k
// records); it is not called when the index exists.
func (v *Vault) ensureRefIndex(progress func(done, total int)) error {
	done, total := false, 0
	if err := v.view(func(tx *bbolt.Tx) error {
		if done = refsIndexed(tx); !done && progress != nil {
			total = tx.Bucket(bucketRecords).Stats().KeyN
		}
		return nil
	}); err != nil || done {
		return err
	}
	read := 0
	if progress != nil {
		progress(0, total)
	}
	h := v.newRefHasher()
	var refs, targets []refEntry
	var after []byte
	for {
		var last []byte
		err := v.view(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			k, sealed := c.First()
			if after != nil {
				if k, sealed = c.Seek(after); bytes.Equal(k, after) {
					k, sealed = c.Next()
				}
			}
			for n := 0; k != nil && n < refIndexBatch; k, sealed = c.Next() {
				n++
				last = bytes.Clone(k)
				if len(k) != 16 || v.hidden(tx, record.ID(k)) {
					continue
				}
				id := record.ID(k)
				// A record that does not open or decrypt stops the build
				// (ErrTampered), as a damaged record stops an import: its
				// references, which later imports' labels must reach, are
				// unknown, and an index without them would let those labels
				// miss it for good. Records not imported (no FHIR metadata,
				// or shared by a provider) reference nothing here.
				m, err := v.openMeta(id, sealed)
				if err != nil {
					return err
				}
				if m.FHIR == nil || !m.From.IsZero() {
					continue
				}
				for _, u := range m.FHIR.fullURLs() {
					targets = append(targets, refEntry{key: append(h.key(u), id[:]...)})
				}
				var buf bytes.Buffer
				if err := v.decryptTo(tx, m, &buf); err != nil {
					return err
				}
				res, err := fhir.NewReader(&buf, "record").Next()
				if err != nil {
					// Authentic content an import accepted: not damage, but
					// its references are unknown all the same.
					return fmt.Errorf("record %s: %w", id, err)
				}
				for _, ref := range res.References {
					if !fhir.MayCarryLabels(ref) {
						continue
					}
					exact, fallback := fhir.ReferenceKeys(ref)
					var hf []byte
					if fallback != "" {
						hf = h.key(fallback)
					}
					refs = h.appendRefEntries(refs, id, h.key(exact), hf)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reference index: %w", err)
		}
		if last == nil {
			break
		}
		after = last
		if read += refIndexBatch; progress != nil {
			progress(min(read, total), total)
		}
	}
	err := v.update(func(tx *bbolt.Tx) error {
		if refsIndexed(tx) {
			return nil
		}
		// The first build's index, or targets without refs: replaced.
		for _, name := range [][]byte{bucketRefsV1, bucketTargets} {
			if tx.Bucket(name) != nil {
				if err := tx.DeleteBucket(name); err != nil {
					return err
				}
			}
		}
		if err := createRefBuckets(tx); err != nil {
			return err
		}
		for _, t := range []struct {
			b  *bbolt.Bucket
			es []refEntry
		}{{tx.Bucket(bucketRefs), refs}, {tx.Bucket(bucketTargets), targets}} {
			slices.SortFunc(t.es, func(a, b refEntry) int { return bytes.Compare(a.key, b.key) })
			for _, e := range t.es {
				if err := t.b.Put(e.key, e.val); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reference index: %w", err)
	}
	return nil
}

// IndexReferences builds the reference index of a vault from before it
// (ensureRefIndex), which the next Import would otherwise do first, and
// reports whether it did; progress is as for ensureRefIndex.
func (v *Vault) IndexReferences(progress func(done, total int)) (built bool, err error) {
	if err := v.view(func(tx *bbolt.Tx) error { built = !refsIndexed(tx); return nil }); err != nil || !built {
		return false, err
	}
	return true, v.ensureRefIndex(progress)
}

// checkRefIndex checks the reference index's structure: every key a ref
// key and a stored record's ID, every value empty or a ref key, and the
// targets entries exactly those the records' metadata gives (targets, as
// checkIndex does for the FHIR index). The refs entries themselves come
// from the records' content, which verify does not decrypt.
func (v *Vault) checkRefIndex(tx *bbolt.Tx, targets map[string]bool, rep *VerifyReport) {
	refs, tb := tx.Bucket(bucketRefs), tx.Bucket(bucketTargets)
	if refs == nil && (tb == nil || tx.Bucket(bucketRefsV1) != nil) {
		return // a vault from before the index (or its first build), not imported into since
	}
	if refs == nil || tb == nil {
		rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: "half of the reference index is missing"})
		return
	}
	recs := tx.Bucket(bucketRecords)
	bad, orphans := 0, 0
	refs.ForEach(func(k, val []byte) error {
		switch {
		case len(k) != refKeyLen+16 || (len(val) != 0 && len(val) != refKeyLen):
			bad++
		case recs.Get(k[refKeyLen:]) == nil:
			orphans++
		}
		return nil
	})
	got := 0
	tb.ForEach(func(k, val []byte) error {
		switch {
		case len(k) != refKeyLen+16 || len(val) != 0:
			bad++
		case recs.Get(k[refKeyLen:]) == nil:
			orphans++
		case !targets[string(k)]:
			rep.Problems = append(rep.Problems, Problem{"vault", record.ID(k[refKeyLen:]), "a reference index entry does not match the record"})
		default:
			got++
		}
		return nil
	})
	if bad > 0 {
		rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("%d malformed reference index entries", bad)})
	}
	if orphans > 0 {
		rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("%d reference index entries name no stored record", orphans)})
	}
	if got != len(targets) {
		rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("the reference index has %d fullUrl entries, the records need %d", got, len(targets))})
	}
}
