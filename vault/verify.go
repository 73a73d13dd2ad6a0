package vault

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"runtime/debug"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/record"
)

// Problem is one integrity failure found by Verify.
type Problem struct {
	What   string    // "ledger", "record", "metadata", "content", "chunk", "vault"
	Record record.ID // zero when not about one record
	Detail string
}

func (p Problem) String() string {
	if p.Record != (record.ID{}) {
		return fmt.Sprintf("%s %s: %s", p.What, p.Record, p.Detail)
	}
	return fmt.Sprintf("%s: %s", p.What, p.Detail)
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Ledger         *ledger.Report // nil if the ledger itself failed
	Records        int            // records whose metadata was checked against the ledger
	ContentChecked int            // records whose ciphertext was re-hashed
	Bytes          int64          // ciphertext bytes re-hashed
	// Full: everything was checked, as asked, or because nothing could be
	// taken as checked before (see Verify).
	Full     bool
	Problems []Problem
}

// Verify checks the vault's integrity: the ledger (its tree, entries,
// checkpoint signatures and their consistency; see ledger.Log.Verify), and
// that every record's sealed metadata and ciphertext are exactly what the
// ledger's latest entry for that record committed to, that no record
// exists without an entry and no entry's record is missing, and that no
// stray chunk is stored.
//
// Full verify also rebuilds the indexes derived from the records and
// compares them with what is stored: the FHIR index and the reference
// index's targets from metadata, and its refs entries from content (each
// own imported record is decrypted and its references parsed, as an import
// does; see checkRefIndex), so an entry deleted, added or changed outside
// medvault is reported against its record.
//
// With full false it is incremental: the ledger checks only entries added
// since the last successful verify, and only the records those entries
// touch are checked (metadata and ciphertext against the ledger). It does
// not check the indexes, which would mean walking them whole, nor decrypt
// content: run a full verify for those. full checks everything. A successful verify advances
// the verified-through marker; a failed one changes nothing.
//
// The returned error wraps ErrTampered when problems were found; the report
// lists each one.
// testVerifyBetween, if set by a test, runs between Verify's check and the
// marker's advance, where a running node may append.
var testVerifyBetween func()

func (v *Vault) Verify(full bool) (rep *VerifyReport, err error) {
	// checkPages keeps a full verify's walks within the file; an
	// incremental one, or a page damaged in a way only reading its keys
	// shows, may still fault or panic in bbolt: that is damage to report,
	// not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if rep == nil {
				rep = &VerifyReport{}
			}
			rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("the database file's structure is damaged: reading it failed (%v)", r)})
			err = fmt.Errorf("%w: %v", ErrFileDamaged, r)
		}
	}()
	rep = &VerifyReport{}
	if full {
		// The checks below walk the B+tree and would loop, or crash,
		// on a damaged one.
		ok, err := v.checkStructureNow(rep)
		if err != nil {
			return rep, err
		}
		if !ok {
			return rep, problemsFound(len(rep.Problems))
		}
	}
	// Check in a read transaction, so a running node keeps serving while
	// content is re-hashed; only then advance the verified-through marker.
	upgrade := false
	err = v.view(func(tx *bbolt.Tx) error {
		lr, err := v.ledger.log.Verify(tx, full)
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{What: "ledger", Detail: err.Error()})
			return nil
		}
		if !full && (lr.MarkerIgnored || lr.From == 0) {
			// No verify has marked the ledger yet, or its mark did not
			// authenticate (forged, or an older build's): nothing may
			// be taken as checked. (An incremental pass would check
			// only the records the entries name: a ledger emptied
			// with its mark would name none.)
			upgrade = true
			return nil
		}
		rep.Ledger, rep.Full = lr, full
		v.verifyRecords(tx, lr, full, rep)
		return nil
	})
	if err != nil {
		return rep, err
	}
	if upgrade {
		return v.Verify(true)
	}
	if len(rep.Problems) > 0 {
		return rep, problemsFound(len(rep.Problems))
	}
	if testVerifyBetween != nil {
		testVerifyBetween()
	}
	// Advancing the marker re-checks, incrementally, what was appended
	// since the marker. Only when nothing was appended since the check
	// above: entries a running node added meanwhile had their records
	// checked by nobody, so the marker stays and the next incremental
	// verify checks them.
	err = v.update(func(tx *bbolt.Tx) error {
		if n, err := v.ledger.log.Size(tx); err != nil || n != rep.Ledger.Size {
			return err
		}
		lr, err := v.ledger.log.Verify(tx, false)
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{What: "ledger", Detail: err.Error()})
			return nil
		}
		rep.Ledger.Marked = lr.Marked
		return nil
	})
	if err == nil && len(rep.Problems) > 0 {
		err = problemsFound(len(rep.Problems))
	}
	return rep, err
}

type lastEntry struct {
	index   int64
	action  ledger.Action
	commit  ledger.Hash
	removed bool // a contact entry that removed the contact
}

func (v *Vault) verifyRecords(tx *bbolt.Tx, lr *ledger.Report, full bool, rep *VerifyReport) {
	from := lr.From
	if full {
		from = 0
	}
	last := map[record.ID]lastEntry{}
	// One pass over the entries serves both the records and the grants
	// and revocations: each pass decrypts the whole range.
	objects := map[Kind]map[string]lastEntry{KindGrant: {}, KindRevoked: {}, KindContact: {}}
	kept := map[Kind]map[string]lastEntry{} // keep entries, by kind and bucket key
	for _, k := range keptKinds {
		kept[k] = map[string]lastEntry{}
	}
	imports := map[ledger.Hash]int64{} // import commits (see importCommit)
	nonces := map[ledger.Hash]int64{}  // served requests' nonces (see nonceCommit)
	err := v.ledger.log.Scan(tx, from, func(i int64, e *ledger.Entry) error {
		if e.Action == ledger.ActionImport && len(e.Subjects) == 0 && e.Commit != (ledger.Hash{}) {
			imports[e.Commit] = i
		}
		if e.Action == ledger.ActionServe && e.Commit != (ledger.Hash{}) {
			nonces[e.Commit] = i
		}
		switch e.Action {
		case ledger.ActionAdd, ledger.ActionImport, ledger.ActionLabel, ledger.ActionRemove, ledger.ActionReceive:
			for _, s := range e.Subjects {
				if len(s) == 16 {
					last[record.ID(s)] = lastEntry{index: i, action: e.Action, commit: e.Commit}
				}
			}
		case ledger.ActionContact:
			// Keyed by the contact's bucket key (a keyed tag of its alias).
			if len(e.Grant) == 32 {
				objects[KindContact][hex.EncodeToString(e.Grant)] = lastEntry{index: i, action: e.Action, commit: e.Commit, removed: e.Reason == ContactRemoved}
			}
		case ledger.ActionKeep:
			if m, ok := kept[Kind(e.Reason)]; ok && len(e.Grant) == 32 {
				m[hex.EncodeToString(e.Grant)] = lastEntry{index: i, action: e.Action, commit: e.Commit}
			}
		case ledger.ActionGrant, ledger.ActionRevoke:
			if len(e.Grant) == 32 && e.Commit != (ledger.Hash{}) {
				kind := KindGrant
				if e.Action == ledger.ActionRevoke {
					kind = KindRevoked
				}
				objects[kind][hex.EncodeToString(e.Grant)] = lastEntry{index: i, action: e.Action, commit: e.Commit}
			}
		}
		return nil
	})
	if err != nil {
		rep.Problems = append(rep.Problems, Problem{What: "ledger", Detail: err.Error()})
		return
	}
	if full {
		v.checkVaultID(tx, rep)
	}
	v.checkNonces(tx, nonces, rep)
	recs := tx.Bucket(bucketRecords)
	index := map[string][]byte{} // expected index, rebuilt from metadata (full only)
	targets := map[string]bool{} // expected targets of the reference index (full only)
	var rc *refsCheck            // the reference index's refs, rebuilt from content (full only)
	if full {
		rc = v.newRefsCheck(tx)
	}
	check := func(id record.ID, sealed []byte) {
		rep.Records++
		le, ok := last[id]
		switch {
		case !ok:
			rep.Problems = append(rep.Problems, Problem{"record", id, "stored, but no ledger entry added it (inserted outside medvault)"})
			return
		case le.action == ledger.ActionRemove:
			rep.Problems = append(rep.Problems, Problem{"record", id, fmt.Sprintf("stored, but ledger entry %d removed it", le.index)})
			return
		}
		m, err := v.openMeta(id, sealed)
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{"metadata", id, "does not authenticate (changed or damaged)"})
			return
		}
		if recordCommit(id, sealed, m.ContentDigest) != le.commit {
			rep.Problems = append(rep.Problems, Problem{"metadata", id, fmt.Sprintf("differs from what ledger entry %d committed to", le.index)})
			return
		}
		if m.FHIR != nil && full && m.From.IsZero() {
			k := string(v.fhirKey(&fhir.Resource{Type: m.FHIR.Type, ID: m.FHIR.ID, FullURL: m.FHIR.FullURL}))
			index[k] = append(append(index[k], id[:]...), m.FHIR.ContentKey...)
			for _, u := range m.FHIR.fullURLs() {
				targets[string(append(v.refKey(u), id[:]...))] = true
			}
		}
		cr := newChunkReader(tx, id, m.Chunks, sha256.New())
		n, err := io.Copy(io.Discard, cr)
		rep.Bytes += n
		rep.ContentChecked++
		if err == nil {
			err = cr.check(m.ContentDigest)
		}
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{"content", id, "ciphertext differs from what the ledger committed to"})
			return
		}
		if rc != nil {
			rc.check(v, tx, m, rep)
		}
	}
	if full {
		seen := map[record.ID]bool{}
		recs.ForEach(func(k, sealed []byte) error {
			if len(k) != 16 {
				rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("malformed record key %x", k)})
				return nil
			}
			seen[record.ID(k)] = true
			check(record.ID(k), sealed)
			return nil
		})
		for id, le := range sortedEntries(last) {
			if le.action != ledger.ActionRemove && !seen[id] {
				rep.Problems = append(rep.Problems, Problem{"record", id, fmt.Sprintf("added by ledger entry %d but missing from the vault", le.index)})
			}
		}
		v.checkStrayChunks(tx, rep)
		v.checkIndex(tx, index, rep)
		v.checkRefIndex(tx, targets, rc, rep)
		v.checkObjects(tx, objects, true, rep)
		v.checkCommitMarks(tx, imports, rep)
		v.checkKept(tx, kept, true, rep)
		return
	}
	// Grants and revocations recorded in the range: a deleted revocation
	// would bring its grant back to life. And the commit marks of the
	// imports committed in it.
	v.checkObjects(tx, objects, false, rep)
	v.checkKept(tx, kept, false, rep)
	v.checkCommitMarks(tx, imports, rep)
	for id, le := range sortedEntries(last) {
		sealed := recs.Get(id[:])
		switch {
		case sealed == nil && le.action != ledger.ActionRemove:
			rep.Problems = append(rep.Problems, Problem{"record", id, fmt.Sprintf("added by ledger entry %d but missing from the vault", le.index)})
		case sealed != nil:
			check(id, sealed)
		}
	}
}

// checkStructureNow runs checkStructure in a write transaction that it
// rolls back. bbolt's Check reads the database's freelist, which commits
// change, without a lock: a full verify in the node while an add committed
// reported pages as freed twice, then crashed the process (a concurrent map
// read and write). The writer lock keeps commits out while the pages are
// checked; readers go on. (It must not run inside another transaction of
// this goroutine: a commit that remaps the file waits for that one.)
func (v *Vault) checkStructureNow(rep *VerifyReport) (bool, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	tx, err := v.db.Begin(true)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if err := checkPages(tx); err != nil {
		rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: "the database file's structure is damaged: " + err.Error()})
		return false, nil
	}
	return checkStructure(tx, rep), nil
}

// checkStructure runs bbolt's own check of the file's pages (every page
// reachable once or free, keys in order, elements in bounds) and reports
// what it finds; it reports false if the structure is damaged.
func checkStructure(tx *bbolt.Tx, rep *VerifyReport) bool {
	const shown = 5
	n := 0
	for err := range tx.Check() {
		if n < shown {
			rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: "the database file's structure is damaged: " + err.Error()})
		}
		n++
	}
	if n > shown {
		rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("and %d more structural problems", n-shown)})
	}
	return n == 0
}

// checkStrayChunks reports chunks that belong to no record and to no
// unfinished add.
func (v *Vault) checkStrayChunks(tx *bbolt.Tx, rep *VerifyReport) {
	recs, pend := tx.Bucket(bucketRecords), tx.Bucket(bucketPending)
	c := tx.Bucket(bucketChunks).Cursor()
	var prev []byte
	for k, _ := c.First(); k != nil; {
		if prev != nil && bytes.Compare(k, prev) <= 0 {
			// Keys out of order: the seek below would go round forever.
			rep.Problems = append(rep.Problems, Problem{What: "chunk", Detail: fmt.Sprintf("chunk keys out of order at %x (damaged file)", k)})
			return
		}
		prev = bytes.Clone(k)
		if len(k) != 20 {
			rep.Problems = append(rep.Problems, Problem{What: "chunk", Detail: fmt.Sprintf("malformed chunk key %x", k)})
			k, _ = c.Next()
			continue
		}
		id := record.ID(k[:16])
		if recs.Get(id[:]) == nil && pend.Get(id[:]) == nil {
			rep.Problems = append(rep.Problems, Problem{"chunk", id, "stored for no record (inserted outside medvault)"})
		}
		// Skip to the next record's chunks, past this one's last chunk
		// and an unfinished add's fences (see batchFences). What else a
		// record's keys hold is the content check's to find.
		k, _ = c.Seek(append(bytes.Clone(id[:]), 0xff, 0xff, 0xff, 0xff))
		for k != nil && bytes.HasPrefix(k, id[:]) {
			k, _ = c.Next()
		}
	}
}

// sortedEntries iterates m in record ID order, so reports are stable.
func sortedEntries(m map[record.ID]lastEntry) func(func(record.ID, lastEntry) bool) {
	return func(yield func(record.ID, lastEntry) bool) {
		ids := make([]record.ID, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b record.ID) int { return bytes.Compare(a[:], b[:]) })
		for _, id := range ids {
			if !yield(id, m[id]) {
				return
			}
		}
	}
}

// checkNonces reports a request nonce that a served request's ledger entry
// committed to (nonceCommit) but the nonces bucket no longer holds: with it
// gone (or its value changed), the same signed request would be admitted
// again. (A nonce without
// an entry is not reported: builds before the commitment logged none, and
// an extra nonce only refuses a request that carries it.)
func (v *Vault) checkNonces(tx *bbolt.Tx, want map[ledger.Hash]int64, rep *VerifyReport) {
	if len(want) == 0 {
		return
	}
	have := map[ledger.Hash]bool{}
	if b := tx.Bucket(bucketNonces); b != nil {
		b.ForEach(func(k, val []byte) error {
			if len(k) == 48 && bytes.Equal(val, []byte{1}) {
				have[nonceCommit(k)] = true
			}
			return nil
		})
	}
	var missing []int64
	for c, i := range want {
		if !have[c] {
			missing = append(missing, i)
		}
	}
	slices.Sort(missing)
	for _, i := range missing {
		rep.Problems = append(rep.Problems, Problem{What: "nonce", Detail: fmt.Sprintf("the request nonce ledger entry %d remembers is missing (the same request would be admitted again)", i)})
	}
}

// checkVaultID compares the stored vault ID with the one the ledger's first
// entry committed to (grants name the vault by this ID).
func (v *Vault) checkVaultID(tx *bbolt.Tx, rep *VerifyReport) {
	e, err := v.ledger.log.Entry(tx, 0)
	if err != nil || e.Action != ledger.ActionInit || len(e.Subjects) != 1 {
		rep.Problems = append(rep.Problems, Problem{What: "ledger", Detail: "the first entry is not the vault's creation"})
		return
	}
	if !bytes.Equal(e.Subjects[0], tx.Bucket(bucketMeta).Get(keyVaultID)) {
		rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: "the vault ID differs from the one recorded at creation"})
	}
}

// checkIndex compares the FHIR de-duplication index with the one rebuilt
// from the records' metadata. The order of versions within a value is the
// order they were imported, so values are compared as sets of entries.
func (v *Vault) checkIndex(tx *bbolt.Tx, want map[string][]byte, rep *VerifyReport) {
	norm := func(b []byte) string {
		var es []string
		for i := 0; i+indexEntry <= len(b); i += indexEntry {
			es = append(es, string(b[i:i+indexEntry]))
		}
		if len(b)%indexEntry != 0 {
			es = append(es, "malformed")
		}
		slices.Sort(es)
		return fmt.Sprint(es)
	}
	got := 0
	tx.Bucket(bucketIndex).ForEach(func(k, val []byte) error {
		got++
		if w, ok := want[string(k)]; !ok || norm(w) != norm(val) {
			rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("FHIR index entry %x does not match the records", k[:8])})
		}
		return nil
	})
	if got != len(want) {
		rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("FHIR index has %d entries, the records need %d", got, len(want))})
	}
}

// checkObjects compares stored grants and revocations with the ledger
// entries that recorded them: every grant entry's token and every
// revocation entry's statement must be stored exactly as committed (a
// deleted revocation would silently revive a grant), and every stored grant
// must have its entry (when want holds the whole ledger's, complete).
// Extra revocations (notices a provider received) are harmless: they only
// refuse more.
func (v *Vault) checkObjects(tx *bbolt.Tx, want map[Kind]map[string]lastEntry, complete bool, rep *VerifyReport) {
	for kind, entries := range want {
		stored := map[string]ledger.Hash{} // commitments of the stored objects
		name := map[string]string{}        // what a report calls them
		b, _ := objectBucket(tx, kind)
		if b != nil {
			b.ForEach(func(k, sealed []byte) error {
				o, err := v.openObject(kind, k, sealed)
				if err != nil {
					rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("a stored %s does not authenticate", kindNoun(kind))})
					return nil
				}
				key := o.Key
				if kind == KindContact {
					key = hex.EncodeToString(k) // as the ledger names it
				}
				stored[key], name[key] = objectCommit(kind, o.Key, o.Value), o.Key
				return nil
			})
		}
		for key, le := range entries {
			c, ok := stored[key]
			what := kindNoun(kind) + " " + key[:12]
			if kind == KindContact {
				what = "a contact"
				if n, ok := name[key]; ok {
					what = "contact " + n
				}
			}
			switch {
			case le.removed && ok:
				rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("%s removed by ledger entry %d is stored (put back outside medvault)", what, le.index)})
			case le.removed:
			case !ok:
				rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("%s recorded by ledger entry %d is missing", what, le.index)})
			case c != le.commit:
				rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("%s differs from what ledger entry %d committed to", what, le.index)})
			}
		}
		if kind == KindGrant && complete {
			for key := range stored {
				if _, ok := entries[key]; !ok {
					rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("grant %s is stored without a ledger entry", key[:min(12, len(key))])})
				}
			}
		}
	}
}

// problemsFound is verify's error for n problems.
func problemsFound(n int) error {
	if n == 1 {
		return fmt.Errorf("%w: 1 problem found", ErrTampered)
	}
	return fmt.Errorf("%w: %d problems found", ErrTampered, n)
}

// checkCommitMarks reports imports the ledger records as committed whose
// commit mark is gone: deleted outside medvault, which would have made the
// next Open roll the import back had it trusted the mark alone.
func (v *Vault) checkCommitMarks(tx *bbolt.Tx, logged map[ledger.Hash]int64, rep *VerifyReport) {
	c := tx.Bucket(bucketPending).Cursor()
	for k, val := c.Seek(commitMarkPrefix); k != nil && bytes.HasPrefix(k, commitMarkPrefix); k, val = c.Next() {
		if len(k) != len(commitMarkPrefix)+16 {
			continue
		}
		imp := [16]byte(k[len(commitMarkPrefix):])
		if hmac.Equal(val, v.commitMark(imp)) {
			delete(logged, importCommit(imp))
		}
	}
	for _, i := range slices.Sorted(maps.Values(logged)) {
		rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("the commit mark of the import committed by ledger entry %d is missing or changed (deleted outside medvault)", i)})
	}
}

// checkKept compares the objects a provider kept from patients' nodes
// with their keep entries: each entry's object must be stored as committed
// (a deleted receipt, or a checkpoint of a patient's ledger put back to an
// earlier one, is found), and, when want holds the whole ledger's
// (complete), each stored object must have an entry (received revocation
// notices excepted: the bucket also holds the owner's own revocations, and
// an extra notice only refuses more, and a vault left at format 1, whose
// kept objects were never adopted). Every stored object must authenticate.
func (v *Vault) checkKept(tx *bbolt.Tx, want map[Kind]map[string]lastEntry, complete bool, rep *VerifyReport) {
	for _, kind := range keptKinds {
		noun := keptNoun(kind)
		entries := want[kind]
		b, _ := objectBucket(tx, kind)
		stored := map[string]ledger.Hash{}
		if b != nil && (complete || len(entries) > 0) {
			b.ForEach(func(k, sealed []byte) error {
				o, err := v.openObject(kind, k, sealed)
				if err != nil {
					rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("a stored %s does not authenticate (changed or damaged)", noun)})
					return nil
				}
				stored[hex.EncodeToString(k)] = objectCommit(kind, o.Key, o.Value)
				return nil
			})
		}
		for _, key := range slices.Sorted(maps.Keys(entries)) {
			le := entries[key]
			c, ok := stored[key]
			switch {
			case !ok:
				rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("the %s kept by ledger entry %d is missing (deleted outside medvault)", noun, le.index)})
			case c != le.commit:
				rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("the %s kept by ledger entry %d differs from what it committed to (changed or put back outside medvault)", noun, le.index)})
			}
		}
		if complete && kind != KindRevoked && adopted(tx) {
			n := 0
			for key := range stored {
				if _, ok := entries[key]; !ok {
					n++
				}
			}
			if n > 0 {
				rep.Problems = append(rep.Problems, Problem{What: "vault", Detail: fmt.Sprintf("%d %s stored without a ledger entry (put there outside medvault)", n, keptNouns(kind, n))})
			}
		}
	}
}

func keptNoun(kind Kind) string { return keptNouns(kind, 1) }

func keptNouns(kind Kind, n int) string {
	if n == 1 {
		return map[Kind]string{KindInbox: "received grant", KindRevoked: "revocation notice", KindReceipt: "receipt",
			KindWitnessed: "checkpoint of a patient's ledger", KindLedgerEvidence: "evidence about a patient's ledger"}[kind]
	}
	return map[Kind]string{KindInbox: "received grants", KindRevoked: "revocation notices", KindReceipt: "receipts",
		KindWitnessed: "checkpoints of patients' ledgers", KindLedgerEvidence: "pieces of evidence about patients' ledgers"}[kind]
}

// ContactRemoved is the reason of a contact entry that removed a contact.
const ContactRemoved = "removed"
