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
//   - refs3: refs key || referrer record ID -> empty, or, for a reference
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
// refs3 holds exactly the entries each own imported record's content gives
// (recordRefs), and nothing else, so full verify can rebuild it from the
// records and compare (checkRefIndex).
//
// What the file still shows: how many references each record has that can
// carry labels, and which records reference a common (unnamed) target.
//
// Earlier builds of the index are rebuilt from the records' content at the
// vault's next import (refsIndexed, ensureRefIndex), and until then rm and
// rollback keep removing entries from them: "refs", where a refs key was
// the ref key itself (never released), and "refs2", the same entries as
// refs3 but for those of references that resolved, within their import's
// file, to an actor: an import left them out, so refs2 was not a function
// of the records' content and verify could not tell an entry deleted
// outside medvault from one left out.
var (
	bucketRefs    = []byte("refs3")
	bucketTargets = []byte("targets")
	bucketRefsV1  = []byte("refs")
	bucketRefsV2  = []byte("refs2")
)

// legacyRefBuckets are the buckets of earlier builds of the index.
var legacyRefBuckets = [][]byte{bucketRefsV1, bucketRefsV2}

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

// referrerKeys returns the ref keys under which the reference index lists
// the records that reference the resource m describes, for a look-up of
// referrers (spreadAdded, medicationUsesIn): targetRefKeys, and for a
// record whose id is a UUID, the ref key of "urn:uuid:<id>", unless a
// record of another type or id holds it (as a fullUrl: the reference
// names that one). Bulk-data NDJSON has no fullUrls and its references
// are still written as "urn:uuid:<id>": an import resolves them within
// the file to the resource with that id (resolveUUIDs), but the index
// keeps them under the reference as written, where the resource's own
// keys do not find them. Nothing stored changes (verify rebuilds the
// index from content as before). Unlike an import's resolution, this
// finds such referrers from any file, and does not check whether a
// resource of another type has the same UUID as its id: it errs toward
// withholding (a label added reaches them) and toward listing a
// medication as current.
func (v *Vault) referrerKeys(tx *bbolt.Tx, m *Meta) [][]byte {
	out := v.targetRefKeys(m)
	if _, ok := fhir.UUIDReference("urn:uuid:" + m.FHIR.ID); !ok {
		return out
	}
	h := v.refKey("urn:uuid:" + m.FHIR.ID)
	if slices.ContainsFunc(out, func(x []byte) bool { return bytes.Equal(x, h) }) {
		return out
	}
	recs := tx.Bucket(bucketRecords)
	for _, id := range v.holders(tx, h) {
		hm, err := v.openMeta(id, recs.Get(id[:]))
		if err != nil || hm.FHIR == nil || hm.FHIR.Type != m.FHIR.Type || hm.FHIR.ID != m.FHIR.ID {
			return out // another resource's fullUrl (or one that does not open: no guess)
		}
	}
	return append(out, h)
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
// nothing holds he).
func (h *refHasher) appendRefEntries(es []refEntry, id record.ID, he, hf []byte) []refEntry {
	es = append(es, refEntry{key: append(h.refsKey(he), id[:]...)})
	if hf != nil {
		k := append(h.refsKey(hf), id[:]...)
		es = append(es, refEntry{key: k, val: h.mask(k, he)})
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
	for _, name := range [][]byte{bucketRefs, bucketTargets, bucketRefsV1, bucketRefsV2} {
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
// one with an earlier build's index (legacyRefBuckets), which it replaces.
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
				// miss it for good.
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
				if refs, err = v.appendRecordRefs(tx, h, m, refs); err != nil {
					return err
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
		// An earlier build's index, or targets without refs: replaced.
		for _, name := range append([][]byte{bucketTargets}, legacyRefBuckets...) {
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

// appendRecordRefs appends to es the refs entries record m's content gives
// it: those of appendRefEntries for each reference that may carry labels
// (fhir.MayCarryLabels), in the order the content makes them, repeats
// included (a key repeated with another value is a fallback entry whose
// reference as written differs, or also an exact one: any of the values
// may be stored). It decrypts the content in tx (withContent, which wipes
// it); the content goes no further. A record not imported (no FHIR
// metadata) or received from a patient (a provider's vault) references
// nothing here. Import and ensureRefIndex write these entries, and full
// verify compares them with what is stored.
//
// The references are read from the content as the import's parse found
// them (fhir.References: the content is the resource's bytes as imported),
// without parsing the resource again: the content authenticates, and the
// parse was most of full verify's time. Content that does not decrypt is
// ErrTampered.
func (v *Vault) appendRecordRefs(tx *bbolt.Tx, h *refHasher, m *Meta, es []refEntry) ([]refEntry, error) {
	if m.FHIR == nil || !m.From.IsZero() {
		return es, nil
	}
	err := v.withContent(tx, m, func(content []byte) error {
		for _, ref := range fhir.References(content) {
			if !fhir.MayCarryLabels(ref) {
				continue
			}
			exact, fallback := fhir.ReferenceKeys(ref)
			var hf []byte
			if fallback != "" {
				hf = h.key(fallback)
			}
			es = h.appendRefEntries(es, m.ID, h.key(exact), hf)
		}
		return nil
	})
	return es, err
}

// withContent decrypts record m's content in tx into a buffer of its size
// and passes it to fn, which must not keep it: the buffer (a plainBuffer,
// which also wipes any array it outgrows, for records past 16 MiB) is wiped
// when fn returns, or when decryption fails part way, as export's is.
// Full verify decrypts every imported record this way, so without the
// wipe each verify would leave the whole vault's plaintext in freed heap
// memory (streamCheck wipes only its own chunk buffer).
func (v *Vault) withContent(tx *bbolt.Tx, m *Meta, fn func(content []byte) error) error {
	var buf plainBuffer
	if m.Size > 0 && m.Size <= 16<<20 {
		buf.Grow(int(m.Size))
	}
	defer buf.Wipe()
	if err := v.decryptTo(tx, m, &buf); err != nil {
		return err
	}
	return fn(buf.Bytes())
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

// refsCheck compares the refs entries of each record full verify checks
// with those its content gives (appendRecordRefs): rebuilding the whole
// index at once would hold every entry in memory, so each record's are
// looked up as it is checked, and checkRefIndex then counts what is
// stored per record, which catches entries added outside medvault.
type refsCheck struct {
	b       *bbolt.Bucket
	h       *refHasher
	matched map[record.ID]int // distinct entries found as the content gives them, per record checked
}

// newRefsCheck returns nil when the vault has no reference index (or an
// earlier build's, which its next import rebuilds from content before any
// use: see refsIndexed), so nothing is decrypted.
func (v *Vault) newRefsCheck(tx *bbolt.Tx) *refsCheck {
	if !refsIndexed(tx) {
		return nil
	}
	return &refsCheck{b: tx.Bucket(bucketRefs), h: v.newRefHasher(), matched: map[record.ID]int{}}
}

// check compares the refs entries stored for record m, whose metadata and
// ciphertext verify found as the ledger committed them, with those its
// content gives, and reports a missing or changed one.
func (rc *refsCheck) check(v *Vault, tx *bbolt.Tx, m *Meta, rep *VerifyReport) {
	if v.hidden(tx, m.ID) {
		return // an import still under way writes its entries before its commit mark
	}
	es, err := v.appendRecordRefs(tx, rc.h, m, nil)
	if err != nil {
		rep.Problems = append(rep.Problems, Problem{"content", m.ID, "does not decrypt or parse, so its reference index entries cannot be checked"})
		return
	}
	// A key may repeat (a reference made twice, or two whose Type/id
	// fallbacks agree): any of its values may be the one stored.
	slices.SortStableFunc(es, func(a, b refEntry) int { return bytes.Compare(a.key, b.key) })
	c := rc.b.Cursor()
	n := 0
	for i := 0; i < len(es); {
		j := i + 1
		for j < len(es) && bytes.Equal(es[j].key, es[i].key) {
			j++
		}
		k, val := c.Seek(es[i].key)
		if !bytes.Equal(k, es[i].key) || !slices.ContainsFunc(es[i:j], func(e refEntry) bool { return bytes.Equal(e.val, val) }) {
			rep.Problems = append(rep.Problems, Problem{"vault", m.ID, refsMismatch})
			return
		}
		n++
		i = j
	}
	rc.matched[m.ID] = n
}

const refsMismatch = "the reference index does not match the record's references (an entry deleted, added or changed outside medvault)"

// checkRefIndex checks the reference index: every key a ref key and a
// stored record's ID, every value empty or a ref key; the targets entries
// exactly those the records' metadata gives (targets, as checkIndex does
// for the FHIR index); and, with rc, no record having more refs entries
// than its content gives (rc.check found the others). A vault with an
// earlier build's index is not checked: its next import replaces it.
func (v *Vault) checkRefIndex(tx *bbolt.Tx, targets map[string]bool, rc *refsCheck, rep *VerifyReport) {
	refs, tb := tx.Bucket(bucketRefs), tx.Bucket(bucketTargets)
	if refs == nil && (tb == nil || slices.ContainsFunc(legacyRefBuckets, func(name []byte) bool { return tx.Bucket(name) != nil })) {
		return // a vault from before the index (or an earlier build's), not imported into since
	}
	if refs == nil || tb == nil {
		rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: "half of the reference index is missing"})
		return
	}
	recs := tx.Bucket(bucketRecords)
	bad, orphans := 0, 0
	stored := map[record.ID]int{}
	refs.ForEach(func(k, val []byte) error {
		switch {
		case len(k) != refKeyLen+16 || (len(val) != 0 && len(val) != refKeyLen):
			bad++
		case recs.Get(k[refKeyLen:]) == nil:
			orphans++
		default:
			stored[record.ID(k[refKeyLen:])]++
		}
		return nil
	})
	if rc != nil {
		var extra []record.ID
		for id, n := range stored {
			// A record not in matched was not checked (hidden), or has
			// a problem reported already.
			if want, ok := rc.matched[id]; ok && n != want {
				extra = append(extra, id)
			}
		}
		slices.SortFunc(extra, func(a, b record.ID) int { return bytes.Compare(a[:], b[:]) })
		for _, id := range extra {
			rep.Problems = append(rep.Problems, Problem{"vault", id, refsMismatch})
		}
	}
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
