package vault

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

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
	// Relabelled counts records stored earlier that gained labels from
	// this import (they reference what it added, directly or through
	// other records).
	Relabelled int
	// RelabelledHand counts, of those, records that gained a label the
	// patient had removed from them by hand (Meta.inherit).
	RelabelledHand int
}

// importBatch is how many resources are encrypted and staged per
// transaction while a file is read.
const importBatch = 8192

// commitBatch is how many imported records one commit transaction holds.
const commitBatch = 4096

// importRow is what an import keeps of a resource once its content is
// staged, sealed in the scratch file until the commit pass.
type importRow struct {
	seq      uint64 // position among the file's new resources
	id       record.ID
	key      []byte   // index key for Type/ID
	content  [32]byte // keyed hash of the raw bytes
	version  int
	prev     uint64         // seq+1 of the previous version in this file, 0 if none
	base     []record.Label // labels of the versions in the vault (first version in the file only)
	typ      string
	fid      string
	fullURL  string
	aliases  []string // other fullUrls the file brings it under (commit only)
	title    string
	status   string
	category record.Category
	date     time.Time
	targets  [][]byte // scratch keys under which references may find it
	codes    [][]byte // scratch keys of its primary codes
	digest   [32]byte
	header   [32]byte // SHA-256 of the age header
	chunks   uint32
	size     int64
	updated  string // meta.lastUpdated, RFC 3339 UTC, "" if none
	verID    string // meta.versionId
}

// staged is a resource of the batch being read, before its row is written.
type staged struct {
	res *fhir.Resource // Raw dropped once encrypted
	importRow
}

func (r *importRow) encode() []byte {
	date, _ := r.date.MarshalBinary()
	e := enc(make([]byte, 0, 256)).b(r.id[:]).b(r.key).b(r.content[:]).u(uint64(r.version)).u(r.prev).
		u(uint64(len(r.base)))
	for _, l := range r.base {
		e = e.s(string(l))
	}
	return e.s(r.typ).s(r.fid).s(r.fullURL).s(r.title).s(r.status).s(string(r.category)).b(date).
		bs(r.targets).bs(r.codes).b(r.digest[:]).b(r.header[:]).u(uint64(r.chunks)).u(uint64(r.size)).
		s(r.updated).s(r.verID)
}

func decodeRow(seq uint64, p []byte) (*importRow, error) {
	d := &dec{p: p}
	r := &importRow{seq: seq}
	copy(r.id[:], d.b())
	r.key = d.b()
	copy(r.content[:], d.b())
	r.version, r.prev = int(d.u()), d.u()
	n := d.u()
	for i := uint64(0); i < n && !d.bad; i++ {
		r.base = append(r.base, record.Label(d.s()))
	}
	r.typ, r.fid, r.fullURL, r.title, r.status, r.category = d.s(), d.s(), d.s(), d.s(), d.s(), record.Category(d.s())
	if err := r.date.UnmarshalBinary(d.b()); err != nil {
		d.bad = true
	}
	r.targets, r.codes = d.bs(), d.bs()
	copy(r.digest[:], d.b())
	copy(r.header[:], d.b())
	r.chunks, r.size = uint32(d.u()), int64(d.u())
	r.updated, r.verID = d.s(), d.s()
	return r, d.err()
}

func encodeLabels(ls []record.Label) []byte {
	e := enc(nil).u(uint64(len(ls)))
	for _, l := range ls {
		e = e.s(string(l))
	}
	return e
}

func decodeLabels(p []byte) ([]record.Label, error) {
	d := &dec{p: p}
	n := d.u()
	var out []record.Label
	for i := uint64(0); i < n && !d.bad; i++ {
		out = append(out, record.Label(d.s()))
	}
	return out, d.err()
}

// Import reads one FHIR R4 file (a Bundle, NDJSON, or a single resource)
// and stores each resource as a record, with its original bytes exactly.
//
// An import takes the whole file or nothing of it. While the file is
// read, resources are encrypted in batches and their ciphertexts, with
// everything the whole file is needed for (de-duplication, version
// numbers, label propagation, the index entries), go to a scratch file
// beside the vault, sealed or encrypted under keys that exist only in
// memory during the import (see scratch); nothing reaches the vault yet.
// Once the whole file parsed and labels propagated, records are committed
// in record-ID order, chunks, metadata and ledger entries in transactions
// of commitBatch records (or batchSize bytes), each hidden behind a keyed
// pending mark that names the import; the index entries follow in
// index-key order. One small final transaction marks the import
// committed, which makes every record visible at once, and the marks are
// then cleared in batches. A parse error, or a process killed before that
// final transaction, leaves the vault as it was (the next Open rolls back
// what was committed, with ledger entries, and removes the scratch file).
//
// Importing the same data again adds nothing: a resource whose type, id and
// content are already in the vault is counted as unchanged; the same type
// and id with other content becomes a new version beside the old one, and
// keeps the labels of the earlier versions. Sensitivity labels found on a
// resource are propagated to the resources of the same file that reference
// it or carry the same codes (see fhir.Propagate), and along references
// between the file and the records earlier imports stored, both ways
// (refindex.go): a resource inherits the labels of the vault's records it
// references, and the vault's records that reference a resource of the
// file inherit its labels, with a label entry each, in the transaction
// that makes the import visible. Propagation only adds labels.
//
// Memory is bounded by batches, not by the file: one batch of importBatch
// resources (or batchSize bytes) being encrypted, one commit batch, and
// the pages bbolt dirties in one transaction, which writes keys in order.
// Measured peak RssAnon of medvault import: 100k generated resources
// ~95-105 MiB, 400k ~110-130 MiB (~315 and ~990 MiB when the file's index
// was kept in memory).
func (v *Vault) Import(name string, r io.Reader, progress func(resources int, offset int64)) (*ImportStats, error) {
	v.labels.RLock()
	defer v.labels.RUnlock()
	im := &importer{v: v, name: name, st: &ImportStats{File: name, ByCategory: map[record.Category]int{}}, rh: v.newRefHasher()}
	if err := v.ensureRefIndex(nil); err != nil {
		return nil, fmt.Errorf("import %s: %w", name, err)
	}
	rand.Read(im.id[:])
	sc, err := newScratch(v.dir)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", name, err)
	}
	im.sc = sc
	st, err := im.run(r, progress)
	if errors.Is(err, errTestDied) {
		sc.abandon()
		return nil, err
	}
	cerr := sc.close()
	if err != nil {
		if derr := v.settlePending(&im.id); derr != nil {
			err = errors.Join(err, fmt.Errorf("discard the staged records: %w (they are removed at the next open)", derr))
		}
		if cerr != nil {
			err = errors.Join(err, fmt.Errorf("remove the scratch file: %w (it is removed at the next open)", cerr))
		}
		return nil, err
	}
	// A scratch file that could not be removed holds nothing readable; the
	// next Open removes it.
	return st, nil
}

// testImportDies, set only by tests, is asked at each point where a killed
// import leaves a distinct state on disk ("staged", "committed", "indexed",
// "flipped"). When it returns true, Import stops there as if the process had
// been killed, leaving its scratch file and pending records as they are.
var testImportDies func(point string) bool

var errTestDied = errors.New("import: stopped by a test")

func (im *importer) dies(point string) bool {
	return testImportDies != nil && testImportDies(point)
}

// importer is the state of one running import.
type importer struct {
	v    *Vault
	name string
	id   [16]byte // names the import in its pending marks
	sc   *scratch
	st   *ImportStats
	seq  uint64     // rows so far
	rh   *refHasher // used by the goroutine that reads the file
	// vaultRefs: the vault held imported records when this import
	// started, so propagation looks beyond the file (set in propagate).
	vaultRefs bool
	// What the batch being read adds to the scratch file, and what the
	// batch being flushed (if any) does.
	cur, prev *tables
	// types are the types of the file's resources with a UUID id
	// (resolveUUIDs).
	types map[string]bool
}

// tables is what one batch adds to the scratch file's tables, written in
// key order when the batch is flushed (bbolt inserts in key order are
// cheap).
type tables struct {
	dups   map[string]uint64 // -> seq of the version with that content
	keys   map[string]keyState
	vers   map[string]int // H(fhir key, server base) -> the series' last version number in this file
	target map[string]targetOp
	edges  [][]byte
	codes  map[string][]record.Label
	chain  []uint64
	refs   []refEntry // the vault's reference index entries
	fulls  [][]byte   // the vault's targets entries
	held   []refEntry // scHeld entries: record ID || ref key -> the fullUrl
	alias  []refEntry // scAlias entries: seq || ref key -> the fullUrl
	uuids  []refEntry // scUUIDs entries: ref key || seq -> the id
	known  [][]byte   // scKnown keys
}

// refEntry is an entry of the vault's reference index (refindex.go).
type refEntry struct{ key, val []byte }

func newTables() *tables {
	return &tables{dups: map[string]uint64{}, keys: map[string]keyState{}, vers: map[string]int{}, target: map[string]targetOp{}, codes: map[string][]record.Label{}}
}

// keyState is what the file holds of a type and id, whichever servers its
// versions came from (labels chain along them all); version numbers are
// kept per series apart (tables.vers).
type keyState struct {
	seq      uint64   // the last version's
	first    [32]byte // content of the first version
	firstSeq uint64   // the first version's
}

type targetOp struct {
	seq      uint64
	rec      *record.ID // set for a record of the vault (an unchanged resource), seq unused
	override bool
	actor    bool // the resource passes no labels on
}

func (im *importer) run(r io.Reader, progress func(resources int, offset int64)) (*ImportStats, error) {
	im.cur, im.types = newTables(), map[string]bool{}
	st := im.st
	rd := fhir.NewReader(r, im.name)
	var batch []*staged
	batchBytes := 0
	// One batch is encrypted and written while the next is read.
	var inflight chan error
	wait := func() error {
		if inflight == nil {
			return nil
		}
		err := <-inflight
		inflight, im.prev = nil, nil
		return err
	}
	defer wait()
	for {
		res, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		st.Resources++
		offset := res.Offset + int64(len(res.Raw))
		s, err := im.admit(res)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", im.name, err)
		}
		if s == nil {
			st.Unchanged++
			continue
		}
		batch = append(batch, s)
		batchBytes += len(res.Raw)
		// A batch is importBatch resources or batchSize bytes of them,
		// whichever comes first: resources may be up to 64 MiB.
		if len(batch) == importBatch || batchBytes >= batchSize {
			if err := wait(); err != nil {
				return nil, fmt.Errorf("import %s: %w", im.name, err)
			}
			if im.dies("staged") {
				return nil, errTestDied
			}
			if progress != nil {
				progress(st.Resources, offset)
			}
			inflight = make(chan error, 1)
			go func(batch []*staged, t *tables) { inflight <- im.flush(batch, t) }(batch, im.cur)
			im.prev, im.cur = im.cur, newTables()
			batch, batchBytes = make([]*staged, 0, importBatch), 0
		}
	}
	if err := wait(); err != nil {
		return nil, fmt.Errorf("import %s: %w", im.name, err)
	}
	if err := im.flush(batch, im.cur); err != nil {
		return nil, fmt.Errorf("import %s: %w", im.name, err)
	}
	batch, im.cur = nil, nil
	if im.dies("staged") {
		return nil, errTestDied
	}
	if progress != nil {
		progress(st.Resources, -1)
	}
	// A Bundle's own meta.security (a whole file marked SUD, say) labels
	// every resource in it, wherever in the file the meta came.
	if ls := rd.BundleLabels(); len(ls) > 0 {
		err := im.sc.each(scRows, nil, func(k, _ []byte) error {
			_, err := im.addLabels(binary.BigEndian.Uint64(k), ls)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", im.name, err)
		}
	}
	if err := im.resolveUUIDs(); err != nil {
		return nil, fmt.Errorf("import %s: %w", im.name, err)
	}
	if err := im.propagate(); err != nil {
		return nil, fmt.Errorf("import %s: %w", im.name, err)
	}
	if err := im.commit(); err != nil {
		return nil, err
	}
	if err := im.writeIndex(); err != nil {
		return nil, err
	}
	if err := im.writeRefs(); err != nil {
		return nil, err
	}
	if im.dies("indexed") {
		return nil, errTestDied
	}
	// The moment the whole file becomes visible, in the ledger too: the
	// commit mark alone could be deleted by anyone with the file, and the
	// next Open would then roll back a committed import (settlePending).
	// Labels this import spreads to earlier records change in the same
	// transaction: they appear exactly when the records that caused them.
	if err := im.v.update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketPending).Put(commitMarkKey(im.id), im.v.commitMark(im.id)); err != nil {
			return err
		}
		if err := im.v.logAppend(tx, Event{Action: ledger.ActionImport, commit: importCommit(im.id)}); err != nil {
			return err
		}
		n, hand, err := im.relabel(tx)
		if err != nil {
			return err
		}
		st.Relabelled, st.RelabelledHand = n, hand
		if err := im.alias(tx); err != nil {
			return err
		}
		return im.v.ledger.checkpoint(tx)
	}); err != nil {
		return nil, fmt.Errorf("import %s: %w", im.name, err)
	}
	if im.dies("flipped") {
		return nil, errTestDied
	}
	// The import is done; marks that cannot be cleared now (a full disk)
	// hide nothing, and the next Open clears them.
	im.v.settlePending(&im.id)
	return st, nil
}

// relabel writes, in tx, the labels this import spreads to records the
// vault held before it, each change a label entry of the ledger (reason
// LabelPropagated), and returns how many records changed and how many of
// those gained a label removed from them by hand (Meta.inherit). It adds to the
// labels each record has now (the patient may have changed them while the
// import ran) and skips records removed meanwhile.
func (im *importer) relabel(tx *bbolt.Tx) (n, overrode int, _ error) {
	c := im.sc.b(scVault).Cursor()
	for k, sealed := c.First(); k != nil; k, sealed = c.Next() {
		p, err := im.sc.open(scVault, k, sealed)
		if err != nil {
			return n, overrode, err
		}
		add, err := decodeLabels(p)
		if err != nil {
			return n, overrode, err
		}
		m, err := im.v.meta1(tx, record.ID(k))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, overrode, err
		}
		if len(normLabels(append(slices.Clone(m.Labels), add...))) == len(m.Labels) {
			continue
		}
		if m.inherit(add) {
			overrode++
		}
		if err := im.v.putMetaEvent(tx, m, Event{Action: ledger.ActionLabel, Reason: LabelPropagated}); err != nil {
			return n, overrode, err
		}
		n++
	}
	return n, overrode, nil
}

// alias adds, in tx, to the metadata of each record the vault held before
// this import the fullUrls the file brought it under, unchanged, that it
// does not list yet (unless a resource of the file took the fullUrl over),
// each change an import ledger entry with reason FullURLSeen, and their
// targets entries: references by those fullUrls in later imports find the
// record, and verify rebuilds targets from the metadata as before. It
// skips records removed while the import ran.
func (im *importer) alias(tx *bbolt.Tx) error {
	tb := tx.Bucket(bucketTargets)
	c := im.sc.b(scHeld).Cursor()
	for k, sealed := c.First(); k != nil; k, sealed = c.Next() {
		id, h := record.ID(k[:16]), k[16:]
		if t := im.sc.b(scTarget).Get(h); len(t) != 17 || !bytes.Equal(t[:16], id[:]) {
			continue
		}
		tk := append(bytes.Clone(h), id[:]...)
		if tb.Get(tk) != nil {
			continue // known under it already
		}
		url, err := im.sc.open(scHeld, k, sealed)
		if err != nil {
			return err
		}
		m, err := im.v.meta1(tx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if m.FHIR == nil || len(m.FHIR.FullURLs) >= maxFullURLs {
			continue
		}
		m.FHIR.FullURLs = append(m.FHIR.FullURLs, string(url))
		if err := im.v.putMetaEvent(tx, m, Event{Action: ledger.ActionImport, Reason: FullURLSeen}); err != nil {
			return err
		}
		if err := tb.Put(tk, nil); err != nil {
			return err
		}
	}
	return nil
}

// maxFullURLs bounds the fullUrls a record keeps besides its own: an
// export that makes new urn:uuids each time would otherwise add one to
// every record, with a ledger entry, at every import.
const maxFullURLs = 8

// FullURLSeen is the reason of an import entry that records a fullUrl an
// import brought a record stored earlier under, unchanged, added to its
// metadata.
const FullURLSeen = "fullurl"

// LabelPropagated is the reason of a label entry that records labels an
// import spread to a record stored earlier.
const LabelPropagated = "propagated"

// admit decides what becomes of a resource just read: nil if the vault, or
// this file earlier, already holds its type/id with the same content;
// otherwise its row, numbered, with its version.
func (im *importer) admit(res *fhir.Resource) (*staged, error) {
	v, sc := im.v, im.sc
	s := &staged{res: res}
	s.key, s.content = v.fhirKey(res), v.contentKey(res.Raw)
	uuid := false
	if _, uuid = fhir.UUIDReference("urn:uuid:" + res.ID); uuid {
		im.types[res.Type] = true
	}
	kh := string(sc.hash('k', s.key))
	ks, inFile := im.cur.keys[kh]
	if !inFile && im.prev != nil {
		ks, inFile = im.prev.keys[kh]
	}
	if !inFile {
		p, err := sc.viewSealed(scKeys, []byte(kh))
		if err != nil {
			return nil, err
		}
		if p != nil {
			d := &dec{p: p}
			ks, inFile = keyState{seq: d.u(), first: [32]byte(append(d.b(), make([]byte, 32)...)), firstSeq: d.u()}, true
			if err := d.err(); err != nil {
				return nil, err
			}
		}
	}
	var dh string
	if inFile {
		// Seen in this file: the same content as one of its versions? Its
		// fullUrl here, if another, finds that version too.
		if ks.first == s.content {
			im.seenAgain(res, ks.firstSeq)
			return nil, nil
		}
		dh = string(sc.hash('d', s.key, s.content[:]))
		seq, ok := im.cur.dups[dh]
		if !ok && im.prev != nil {
			seq, ok = im.prev.dups[dh]
		}
		if !ok {
			if p := sc.get(scDups, []byte(dh)); p != nil {
				seq, ok = binary.BigEndian.Uint64(p), true
			}
		}
		if ok {
			im.seenAgain(res, seq)
			return nil, nil
		}
	}
	// Versions are numbered per series (seriesOf): after this file's last
	// version from the same server, else after the vault's.
	base := serverKey(serverBase(res.FullURL, res.Type, res.ID))
	vh := string(sc.hash('v', s.key, []byte(base)))
	ver, verInFile := im.cur.vers[vh]
	if !verInFile && im.prev != nil {
		ver, verInFile = im.prev.vers[vh]
	}
	if !verInFile && inFile {
		if p := sc.get(scVers, []byte(vh)); len(p) == 8 {
			ver, verInFile = int(binary.BigEndian.Uint64(p)), true
		}
	}
	var known *record.ID
	held := false // the vault holds a version of this type and id
	err := v.view(func(tx *bbolt.Tx) error {
		// Entries of records still hidden (another import running in this
		// process, not yet committed) do not count: that import may yet
		// be rolled back.
		val := tx.Bucket(bucketIndex).Get(s.key)
		for i := 0; i+indexEntry <= len(val); i += indexEntry {
			if id := record.ID(val[i : i+16]); bytes.Equal(val[i+16:i+indexEntry], s.content[:]) && !v.hidden(tx, id) {
				known = &id
				return nil
			}
		}
		if verInFile {
			return nil
		}
		// The first version of its series in this file: number it after
		// the vault's versions from the same server (an id is unique on
		// one server only: seriesOf); numbering continues after removed
		// versions. The first version of its type and id in this file
		// also keeps the labels of every version of its type and id (a
		// label the patient added by hand must not fall off because the
		// hospital re-exported the resource; labels stay on the side of
		// caution where two servers' ids meet); a later one has them
		// through the file's earlier versions (chain).
		recs := tx.Bucket(bucketRecords)
		for i := 0; i+indexEntry <= len(val); i += indexEntry {
			id := record.ID(val[i : i+16])
			if v.hidden(tx, id) {
				continue
			}
			// A version whose metadata does not open stops the import
			// (ErrTampered): its labels, which this version keeps, and its
			// number are unknown.
			m, err := v.openMeta(id, recs.Get(id[:]))
			if err != nil {
				return err
			}
			if m.FHIR != nil {
				if slices.Contains(m.FHIR.servers(), base) {
					s.version = max(s.version, m.FHIR.Version)
				}
				if !inFile {
					s.base = append(s.base, m.Labels...)
					held = true
				}
			}
		}
		s.base = normLabels(s.base)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if known != nil {
		// Unchanged, so not imported again; but the file's references
		// by its fullUrl (urn:uuid:..., as a Bundle gives it) find the
		// record the vault holds, with its labels.
		if res.FullURL != "" {
			h := im.rh.key(res.FullURL)
			im.cur.target[string(h)] = targetOp{rec: known, override: true, actor: !fhir.PassesLabels(res.Type)}
			im.cur.held = append(im.cur.held, refEntry{key: append(known[:], h...), val: []byte(res.FullURL)})
		}
		if uuid {
			// A urn:uuid reference may name it by its id (resolveUUIDs).
			im.cur.known = append(im.cur.known, s.key)
		}
		return nil, nil
	}
	s.seq, s.id = im.seq, record.NewID()
	im.seq++
	if inFile {
		s.prev = ks.seq + 1
		im.cur.chain = append(im.cur.chain, ks.seq, s.seq)
		im.cur.dups[dh] = s.seq
	} else {
		ks.first, ks.firstSeq = s.content, s.seq
	}
	if verInFile {
		s.version = ver
	}
	s.version++
	if !inFile && held {
		// A new version of a resource the vault holds: labels that
		// propagation gives it reach those versions too.
		im.cur.chain = append(im.cur.chain, s.seq)
	}
	im.cur.keys[kh] = keyState{s.seq, ks.first, ks.firstSeq}
	im.cur.vers[vh] = s.version

	// What label propagation needs: the keys references find it by, its
	// references, its primary codes, and the codes its source labelled.
	// Keys are ref keys (refindex.go), so that the vault's reference index
	// can be matched against the file's.
	actor := !fhir.PassesLabels(res.Type)
	for _, tk := range fhir.TargetKeys(res) {
		h := im.rh.key(tk.Key)
		s.targets = append(s.targets, h)
		if _, held := im.cur.target[string(h)]; tk.Override || !held {
			im.cur.target[string(h)] = targetOp{seq: s.seq, override: tk.Override, actor: actor}
		}
	}
	if res.FullURL != "" {
		im.cur.fulls = append(im.cur.fulls, append(im.rh.key(res.FullURL), s.id[:]...))
	}
	for _, ref := range res.References {
		exact, fallback := fhir.ReferenceKeys(ref)
		he := im.rh.key(exact)
		im.cur.edges = append(im.cur.edges, append(slices.Clip(he), seqKey(s.seq)...))
		var hf []byte
		if fallback != "" {
			hf = im.rh.key(fallback)
			im.cur.edges = append(im.cur.edges, append(append(slices.Clip(hf), seqKey(s.seq)...), he...))
		}
		if fhir.MayCarryLabels(ref) {
			im.cur.refs = im.rh.appendRefEntries(im.cur.refs, s.id, he, hf)
		}
		if id, ok := fhir.UUIDReference(ref); ok {
			im.cur.uuids = append(im.cur.uuids, refEntry{key: append(slices.Clip(he), seqKey(s.seq)...), val: []byte(id)})
		}
	}
	src := fhir.SourceLabels(res)
	for _, ck := range fhir.CodeKeys(res) {
		h := sc.hash('c', []byte(ck))
		s.codes = append(s.codes, h)
		if len(src) > 0 {
			im.cur.codes[string(h)] = append(im.cur.codes[string(h)], src...)
		}
	}
	s.typ, s.fid, s.fullURL, s.title, s.status, s.category, s.date = res.Type, res.ID, res.FullURL, res.Title, res.Status, res.Category, res.Date
	s.verID = res.VersionID
	if !res.Updated.IsZero() {
		s.updated = res.Updated.Format(time.RFC3339Nano)
	}
	// Only Raw (until encrypted) and Labels are needed from here on.
	res.Codes, res.CategoryCodes, res.Subject, res.Why, res.Code, res.Security, res.References = nil, nil, "", nil, nil, nil, nil
	return s, nil
}

// seenAgain notes that the file brings row seq again, unchanged, as res: a
// fullUrl res has finds that row for the rest of the file (as the file's
// last resource with a fullUrl does), and its record lists it
// (FHIRInfo.FullURLs), with a targets entry, so later imports find it too.
func (im *importer) seenAgain(res *fhir.Resource, seq uint64) {
	if res.FullURL == "" {
		return
	}
	h := im.rh.key(res.FullURL)
	im.cur.target[string(h)] = targetOp{seq: seq, override: true, actor: !fhir.PassesLabels(res.Type)}
	im.cur.alias = append(im.cur.alias, refEntry{key: append(seqKey(seq), h...), val: []byte(res.FullURL)})
}

// flush encrypts and stages a batch, then writes its rows and what it adds
// to the file-wide tables into the scratch file, each table in key order.
func (im *importer) flush(batch []*staged, t *tables) error {
	// The batch is encrypted on both cores while this goroutine writes
	// the tables that do not need the ciphertexts.
	type encrypted struct {
		cts [][]byte
		err error
	}
	enc := make(chan encrypted, 1)
	go func() {
		cts, err := im.v.encryptBatch(batch)
		enc <- encrypted{cts, err}
	}()
	err := im.writeTables(batch, t)
	e := <-enc
	if err != nil {
		return err
	}
	if e.err != nil {
		return e.err
	}
	cts, sc := e.cts, im.sc
	for i, s := range batch {
		k := seqKey(s.seq)
		if _, err := sc.maybeCommit(); err != nil {
			return err
		}
		// The content, already age-encrypted under the vault key, waits
		// here until the commit pass writes it in record-ID order.
		if err := sc.putBytes(scContent, k, cts[i]); err != nil {
			return err
		}
		cts[i] = nil
		// The index entry, under the vault's index key (a keyed hash)
		// and the file position, which keeps versions in file order.
		if err := sc.put(scIndex, append(bytes.Clone(s.key), k...), append(s.id[:], s.content[:]...)); err != nil {
			return err
		}
		if err := sc.putSealed(scRows, k, s.encode()); err != nil {
			return err
		}
		// Labels of the versions in the vault seed propagation as the
		// vault's records do (see seedFromVault).
		if ls := normLabels(append(s.res.Labels, s.base...)); len(ls) > 0 {
			if _, err := sc.maybeCommit(); err != nil {
				return err
			}
			if err := sc.putSealed(scLabels, k, encodeLabels(ls)); err != nil {
				return err
			}
		}
		s.res = nil
	}
	return sc.commit()
}

// writeTables writes what a batch adds to the scratch file's tables, each
// in key order (bbolt inserts in key order are cheap). It does not touch
// what encryptBatch writes (sizes, digests, chunk counts, Raw).
func (im *importer) writeTables(batch []*staged, t *tables) error {
	sc := im.sc
	for _, k := range sortedKeys(t.dups) {
		if _, err := sc.maybeCommit(); err != nil {
			return err
		}
		if err := sc.put(scDups, []byte(k), seqKey(t.dups[k])); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(t.keys) {
		ks := t.keys[k]
		if _, err := sc.maybeCommit(); err != nil {
			return err
		}
		if err := sc.putSealed(scKeys, []byte(k), enc(nil).u(ks.seq).b(ks.first[:]).u(ks.firstSeq)); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(t.vers) {
		if _, err := sc.maybeCommit(); err != nil {
			return err
		}
		if err := sc.put(scVers, []byte(k), seqKey(uint64(t.vers[k]))); err != nil {
			return err
		}
	}
	slices.Sort(t.chain)
	for _, seq := range t.chain {
		if _, err := sc.maybeCommit(); err != nil {
			return err
		}
		if err := sc.put(scChain, seqKey(seq), nil); err != nil {
			return err
		}
	}
	byID := slices.Clone(batch)
	slices.SortFunc(byID, func(a, b *staged) int { return bytes.Compare(a.id[:], b.id[:]) })
	for _, s := range byID {
		if _, err := sc.maybeCommit(); err != nil {
			return err
		}
		if err := sc.put(scByID, s.id[:], seqKey(s.seq)); err != nil {
			return err
		}
	}
	// Propagate's byKey: a fullUrl takes the key from earlier resources,
	// a Type/id only if no resource holds it yet.
	for _, k := range sortedKeys(t.target) {
		op := t.target[k]
		if !op.override && sc.b(scTarget).Get([]byte(k)) != nil {
			continue
		}
		if _, err := sc.maybeCommit(); err != nil {
			return err
		}
		flag := byte(0)
		if op.actor {
			flag = 1
		}
		holder := seqKey(op.seq)
		if op.rec != nil {
			holder = op.rec[:]
		}
		if err := sc.put(scTarget, []byte(k), append(holder, flag)); err != nil {
			return err
		}
	}
	for _, set := range []struct {
		bucket []byte
		es     []refEntry
	}{{scHeld, t.held}, {scAlias, t.alias}, {scUUIDs, t.uuids}} {
		slices.SortFunc(set.es, func(a, b refEntry) int { return bytes.Compare(a.key, b.key) })
		for _, e := range set.es {
			if _, err := sc.maybeCommit(); err != nil {
				return err
			}
			if err := sc.putSealed(set.bucket, e.key, e.val); err != nil {
				return err
			}
		}
	}
	fulls := make([]refEntry, len(t.fulls))
	for i, k := range t.fulls {
		fulls[i] = refEntry{key: k}
	}
	for _, set := range []struct {
		bucket []byte
		es     []refEntry
	}{{scRefs, t.refs}, {scFulls, fulls}} {
		slices.SortFunc(set.es, func(a, b refEntry) int { return bytes.Compare(a.key, b.key) })
		for _, e := range set.es {
			if _, err := sc.maybeCommit(); err != nil {
				return err
			}
			if err := sc.put(set.bucket, e.key, e.val); err != nil {
				return err
			}
		}
	}
	slices.SortFunc(t.known, bytes.Compare)
	for _, k := range t.known {
		if _, err := sc.maybeCommit(); err != nil {
			return err
		}
		if err := sc.put(scKnown, k, nil); err != nil {
			return err
		}
	}
	slices.SortFunc(t.edges, bytes.Compare)
	for _, e := range t.edges {
		if _, err := sc.maybeCommit(); err != nil {
			return err
		}
		if err := sc.put(scEdges, e, nil); err != nil {
			return err
		}
	}
	for _, k := range sortedKeys(t.codes) {
		old, err := sc.getSealed(scCodes, []byte(k))
		if err != nil {
			return err
		}
		ls, err := decodeLabels(old)
		if old == nil {
			ls, err = nil, nil
		}
		if err != nil {
			return err
		}
		if _, err := sc.maybeCommit(); err != nil {
			return err
		}
		if err := sc.putSealed(scCodes, []byte(k), encodeLabels(normLabels(append(ls, t.codes[k]...)))); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// labelsAt returns the labels the scratch holds for row seq.
func (im *importer) labelsAt(seq uint64) ([]record.Label, error) {
	p, err := im.sc.getSealed(scLabels, seqKey(seq))
	if err != nil || p == nil {
		return nil, err
	}
	return decodeLabels(p)
}

// addLabels adds ls to row seq's labels and reports whether it gained one.
func (im *importer) addLabels(seq uint64, ls []record.Label) (bool, error) {
	if len(ls) == 0 {
		return false, nil
	}
	have, err := im.labelsAt(seq)
	if err != nil {
		return false, err
	}
	n := normLabels(append(slices.Clone(have), ls...))
	if len(n) == len(have) {
		return false, nil
	}
	return true, im.sc.putSealed(scLabels, seqKey(seq), encodeLabels(n))
}

func (im *importer) row(seq uint64) (*importRow, error) {
	p, err := im.sc.getSealed(scRows, seqKey(seq))
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("scratch file: row missing")
	}
	return decodeRow(seq, p)
}

// resolveUUIDs gives each urn:uuid reference that no fullUrl of the file
// holds (NDJSON has none) a fallback edge to the "Type/id" of the
// resources of the file with that id, found by trying the id with each
// type of the file's resources with a UUID id, among its new resources
// (scTarget) and the unchanged ones it brings again (scKnown); when
// resources of two types have it, none (fhir.UUIDReference). From then
// on the reference counts as one by "Type/id" (the edge's fallback key)
// that does not apply while a resource holds the reference as written, in
// the file or the vault. Within the file only: the vault keeps no such
// edge (refs3), so a later import does not find a record by its id alone.
func (im *importer) resolveUUIDs() error {
	sc := im.sc
	if k, _ := sc.b(scUUIDs).Cursor().First(); k == nil {
		return nil
	}
	types := sortedKeys(im.types)
	first, _ := sc.b(scKnown).Cursor().First()
	known := first != nil
	var last, target []byte
	err := sc.each(scUUIDs, nil, func(k, sealed []byte) error {
		exact := k[:refKeyLen]
		if !bytes.Equal(exact, last) {
			last, target = append(last[:0], exact...), nil
			if sc.b(scTarget).Get(exact) != nil {
				return nil // a fullUrl of the file
			}
			id, err := sc.open(scUUIDs, k, sealed)
			if err != nil {
				return err
			}
			for _, typ := range types {
				h := im.rh.key(typ + "/" + string(id))
				if sc.b(scTarget).Get(h) == nil && (!known || sc.b(scKnown).Get(h) == nil) {
					continue
				}
				if target != nil {
					target = nil // two types: no guess
					break
				}
				target = h
			}
		}
		if target == nil {
			return nil
		}
		return sc.put(scEdges, slices.Concat(target, k[refKeyLen:], exact), nil)
	})
	if err != nil {
		return err
	}
	return sc.commit()
}

// propagate applies fhir.Propagate's two rules to the rows in the scratch
// file, with the same outcome: rule 2 (codes a source labelled) once, then
// rule 1 (referrers inherit from referents) to a fixed point, driven by a
// work list of rows whose labels grew.
func (im *importer) propagate() error {
	sc := im.sc
	if k, _ := sc.b(scCodes).Cursor().First(); k != nil {
		err := sc.each(scRows, nil, func(k, sealed []byte) error {
			p, err := sc.open(scRows, k, sealed)
			if err != nil {
				return err
			}
			r, err := decodeRow(binary.BigEndian.Uint64(k), p)
			if err != nil {
				return err
			}
			for _, c := range r.codes {
				p, err := sc.getSealed(scCodes, c)
				if err != nil || p == nil {
					if err != nil {
						return err
					}
					continue
				}
				ls, err := decodeLabels(p)
				if err != nil {
					return err
				}
				if _, err := im.addLabels(r.seq, ls); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// Beyond the file: the records the vault holds already.
	if err := im.v.view(func(tx *bbolt.Tx) error {
		k, _ := tx.Bucket(bucketIndex).Cursor().First()
		im.vaultRefs = k != nil && refsIndexed(tx)
		return nil
	}); err != nil {
		return err
	}
	// Labels a version has of its own (its codes, its source's, rule 2, a
	// Bundle's) cover every version of its resource, earlier ones too, in
	// the file and in the vault, as propagated ones do.
	if err := sc.each(scChain, nil, func(k, _ []byte) error {
		seq := binary.BigEndian.Uint64(k)
		ls, err := im.labelsAt(seq)
		if err != nil || len(ls) == 0 {
			return err
		}
		r, err := im.row(seq)
		if err != nil {
			return err
		}
		return im.gainVersions(r.key, ls, scWork, &labelSource{key: r.key})
	}); err != nil {
		return err
	}
	if im.vaultRefs {
		if err := im.seedFromVault(); err != nil {
			return err
		}
	}
	// Rule 1 in rounds: the rows whose labels grew in one round are the
	// work list of the next (a bbolt cursor that pops deleted keys would
	// walk the emptied leaves again on every pop). Records of the vault
	// that gain labels join the work list too (16-byte keys, where rows
	// have 8), so labels go on from them to rows and records in turn.
	if err := sc.each(scLabels, nil, func(k, _ []byte) error { return sc.put(scWork, bytes.Clone(k), nil) }); err != nil {
		return err
	}
	// The vault's records the file names by fullUrl without importing
	// them again (unchanged) pass their labels to the rows that reference
	// them that way: they start on the work list too.
	var last []byte
	if err := sc.each(scHeld, nil, func(k, _ []byte) error {
		if bytes.Equal(k[:16], last) {
			return nil
		}
		last = append(last[:0], k[:16]...)
		return sc.put(scWork, bytes.Clone(k[:16]), nil)
	}); err != nil {
		return err
	}
	cur, next := scWork, scWorkNext
	for {
		if k, _ := sc.b(cur).Cursor().First(); k == nil {
			break
		}
		err := sc.each(cur, nil, func(k, _ []byte) error {
			if len(k) == 16 {
				return im.spreadVault(record.ID(k), next)
			}
			return im.spread(binary.BigEndian.Uint64(k), next)
		})
		if err != nil {
			return err
		}
		if err := sc.tx.DeleteBucket(cur); err != nil {
			return fmt.Errorf("scratch file: %w", err)
		}
		if _, err := sc.tx.CreateBucket(cur); err != nil {
			return fmt.Errorf("scratch file: %w", err)
		}
		cur, next = next, cur
	}
	return sc.commit()
}

// spread gives row t's labels to the rows that reference it, and adds
// those that gained one to the work list next.
func (im *importer) spread(t uint64, next []byte) error {
	sc := im.sc
	r, err := im.row(t)
	if err != nil {
		return err
	}
	if !fhir.PassesLabels(r.typ) {
		return nil
	}
	ls, err := im.labelsAt(t)
	if err != nil {
		return err
	}
	// The other fullUrls the file brings it under (scAlias), while it
	// holds them.
	if err := sc.each(scAlias, seqKey(t), func(k, _ []byte) error {
		h := bytes.Clone(k[8:])
		if got := sc.b(scTarget).Get(h); len(got) != 9 || binary.BigEndian.Uint64(got) != t {
			return nil
		}
		return im.passOn(t, h, ls, next, &labelSource{key: r.key})
	}); err != nil {
		return err
	}
	for i, h := range r.targets {
		if slices.ContainsFunc(r.targets[:i], func(x []byte) bool { return bytes.Equal(x, h) }) {
			continue
		}
		if ok, err := im.passesThrough(r, h); err != nil || !ok {
			return err // another resource holds this key
		}
		if err := im.passOn(t, h, ls, next, &labelSource{key: r.key}); err != nil {
			return err
		}
	}
	return nil
}

// passOn gives labels ls of row t, which holds ref key h, to the rows and
// the vault's records that reference h, and adds those that gained one to
// the work list next. src is row t's resource (see labelSource).
func (im *importer) passOn(t uint64, h []byte, ls []record.Label, next []byte, src *labelSource) error {
	sc := im.sc
	err := sc.each(scEdges, h, func(e, _ []byte) error {
		from := binary.BigEndian.Uint64(e[refKeyLen : refKeyLen+8])
		if from == t {
			return nil
		}
		if len(e) > refKeyLen+8 && sc.b(scTarget).Get(e[refKeyLen+8:]) != nil {
			return nil // the reference as written names another resource
		}
		return im.gain(from, ls, next)
	})
	if err != nil || !im.vaultRefs {
		return err
	}
	return im.reverse(h, ls, next, src)
}

// passesThrough reports whether row r passes its labels to the references
// that ref key h, one of its targets, resolves: if r holds h, or if h is
// r's own "Type/id" and another version of r holds it (a reference by
// Type/id resolves to every version of the resource: the vault's labels
// cover them all).
func (im *importer) passesThrough(r *importRow, h []byte) (bool, error) {
	got := im.sc.b(scTarget).Get(h)
	if len(got) != 9 {
		return false, nil // none, or a record of the vault
	}
	holder := binary.BigEndian.Uint64(got)
	if holder == r.seq {
		return true, nil
	}
	if r.fid == "" || !bytes.Equal(h, r.key) {
		return false, nil
	}
	o, err := im.row(holder)
	if err != nil {
		return false, err
	}
	return bytes.Equal(o.key, r.key), nil
}

// gain adds labels ls, which propagation gives row seq, to it and to the
// other versions of its resource, in the file and in the vault (labels
// cover every version of a resource, as SetLabels applies them), and adds
// those that gained one to the work list next.
func (im *importer) gain(seq uint64, ls []record.Label, next []byte) error {
	grew, err := im.addLabels(seq, ls)
	if err != nil || !grew {
		return err
	}
	if err := im.sc.put(next, seqKey(seq), nil); err != nil {
		return err
	}
	if im.sc.b(scChain).Get(seqKey(seq)) == nil {
		return nil // the only version
	}
	r, err := im.row(seq)
	if err != nil {
		return err
	}
	return im.gainVersions(r.key, ls, next, &labelSource{key: r.key})
}

// gainVersions adds labels ls to every version of the resource whose FHIR
// index key is key, the file's rows and the vault's records, and adds those
// that gained one to the work list next. src says where the labels come
// from (see labelSource).
func (im *importer) gainVersions(key []byte, ls []record.Label, next []byte, src *labelSource) error {
	sc := im.sc
	p, err := sc.getSealed(scKeys, sc.hash('k', key))
	if err != nil {
		return err
	}
	if p != nil {
		d := &dec{p: p}
		seq := d.u()
		for {
			grew, err := im.addLabels(seq, ls)
			if err != nil {
				return err
			}
			if grew {
				if err := sc.put(next, seqKey(seq), nil); err != nil {
					return err
				}
			}
			r, err := im.row(seq)
			if err != nil {
				return err
			}
			if r.prev == 0 {
				break
			}
			seq = r.prev - 1
		}
	}
	if !im.vaultRefs {
		return nil
	}
	var ids []record.ID
	if err := im.v.view(func(tx *bbolt.Tx) error {
		val := tx.Bucket(bucketIndex).Get(key)
		for i := 0; i+indexEntry <= len(val); i += indexEntry {
			if id := record.ID(val[i : i+16]); !im.v.hidden(tx, id) {
				ids = append(ids, id)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, id := range ids {
		grew, err := im.addVaultLabel(id, ls, src)
		if err != nil {
			return err
		}
		if grew {
			if err := sc.put(next, id[:], nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// seedFromVault gives each row the labels of the vault's records its
// references resolve to, where no resource of the file holds the key: a
// Claim imported now inherits MH from the Encounter an earlier import
// stored. The rule is fhir.Propagate's rule 1, with the vault's records
// (every visible version of each resource) as further resources of the
// batch that the file's own resources take precedence over. What a row
// gains reaches the other versions of its resource (gain); rows go on the
// work list anyway, vault records that gain are added to it.
func (im *importer) seedFromVault() error {
	sc, v := im.sc, im.v
	var lastKey []byte
	var lastLabels []record.Label
	return sc.each(scEdges, nil, func(e, _ []byte) error {
		h := e[:refKeyLen]
		if sc.b(scTarget).Get(h) != nil {
			return nil // resolved within the file
		}
		if len(e) > refKeyLen+8 {
			held, err := im.holds(e[refKeyLen+8:])
			if err != nil || held {
				return err // the reference as written names another resource
			}
		}
		if !bytes.Equal(h, lastKey) {
			lastKey = append(lastKey[:0], h...)
			if err := v.view(func(tx *bbolt.Tx) error {
				var err error
				lastLabels, err = v.heldLabels(tx, h)
				return err
			}); err != nil {
				return err
			}
		}
		return im.gain(binary.BigEndian.Uint64(e[refKeyLen:refKeyLen+8]), lastLabels, scWork)
	})
}

// holds reports whether a resource of the file or a visible record of the
// vault holds ref key h.
func (im *importer) holds(h []byte) (bool, error) {
	if im.sc.b(scTarget).Get(h) != nil {
		return true, nil
	}
	held := false
	err := im.v.view(func(tx *bbolt.Tx) error { held = len(im.v.holders(tx, h)) > 0; return nil })
	return held, err
}

// reverse gives labels ls, of a resource holding ref key h, to the
// vault's records that reference h, and adds those that gained one to the
// work list next. (Records of this import are not in the vault's index
// yet: their rows are spread to through the scratch file.)
func (im *importer) reverse(h []byte, ls []record.Label, next []byte, src *labelSource) error {
	v := im.v
	var refs []record.ID
	var exacts [][]byte // the reference as written, for fallback entries
	err := v.view(func(tx *bbolt.Tx) error {
		refs, exacts = v.referrers(tx, im.rh, h)
		return nil
	})
	if err != nil {
		return err
	}
	for i, id := range refs {
		if len(exacts[i]) > 0 {
			held, err := im.holds(exacts[i])
			if err != nil {
				return err
			}
			if held {
				continue
			}
		}
		if err := im.addVaultLabels(id, ls, next, src); err != nil {
			return err
		}
	}
	return nil
}

// vaultLabels returns the labels record id of the vault has with what this
// import adds to it so far, and its metadata (nil if it is not a visible
// FHIR record).
//
// A record whose metadata does not open is an error (ErrTampered), as it
// is when relabel writes: what it references, and so which labels it must
// gain, cannot be known.
func (im *importer) vaultLabels(id record.ID) ([]record.Label, *Meta, error) {
	var m *Meta
	err := im.v.view(func(tx *bbolt.Tx) error {
		var err error
		m, err = im.v.meta1(tx, id)
		if errors.Is(err, ErrNotFound) || err == nil && m.FHIR == nil {
			m, err = nil, nil
		}
		return err
	})
	if err != nil || m == nil {
		return nil, nil, err
	}
	p, err := im.sc.getSealed(scVault, id[:])
	if err != nil || p == nil {
		return m.Labels, m, err
	}
	ls, err := decodeLabels(p)
	return ls, m, err
}

// addVaultLabels adds ls, which propagation gives record id of the vault,
// to what it gains from this import, and to every other version of its
// resource (gainVersions), and adds those that gained one to the work
// list next.
func (im *importer) addVaultLabels(id record.ID, ls []record.Label, next []byte, src *labelSource) error {
	grew, err := im.addVaultLabel(id, ls, src)
	if err != nil || !grew {
		return err
	}
	if err := im.sc.put(next, id[:], nil); err != nil {
		return err
	}
	var m *Meta
	if err := im.v.view(func(tx *bbolt.Tx) error {
		var err error
		m, err = im.v.meta1(tx, id)
		return err
	}); err != nil {
		return err
	}
	return im.gainVersions(im.v.fhirKey(&fhir.Resource{Type: m.FHIR.Type, ID: m.FHIR.ID, FullURL: m.FHIR.FullURL}), ls, next, src)
}

// addVaultLabel adds ls to what record id of the vault gains from this
// import, and reports whether it gained a label. A label the patient
// removed from the record by hand is added only if it is new to src, the
// resource that passes it on (Meta.inherit then takes it off the record's
// hand-removed list): a re-export of an Encounter that was MH all along
// does not undo the patient's removal of MH from its Claim.
func (im *importer) addVaultLabel(id record.ID, ls []record.Label, src *labelSource) (bool, error) {
	have, m, err := im.vaultLabels(id)
	if err != nil || m == nil || len(ls) == 0 {
		return false, err
	}
	if src != nil && slices.ContainsFunc(ls, func(l record.Label) bool { return slices.Contains(m.HandRemoved, l) }) {
		fresh, err := im.fresh(src, ls)
		if err != nil {
			return false, err
		}
		ls = slices.DeleteFunc(slices.Clone(ls), func(l record.Label) bool {
			return slices.Contains(m.HandRemoved, l) && !slices.Contains(fresh, l)
		})
	}
	n := normLabels(append(slices.Clone(have), ls...))
	if len(n) == len(have) {
		return false, nil
	}
	return true, im.sc.putSealed(scVault, id[:], encodeLabels(n))
}

// labelSource is the resource whose labels propagation passes on, as far
// as it matters to a record the patient removed one of them from by hand:
// only a label new to it comes back on such a record (addVaultLabel). Not
// new are the labels in had (those a record of the vault had before this
// import), and those of the vault's versions of the resource whose FHIR
// index key is key (a version of the file: the resource had them before).
type labelSource struct {
	key []byte
	had []record.Label
}

// fresh returns the labels of ls new to src.
func (im *importer) fresh(src *labelSource, ls []record.Label) ([]record.Label, error) {
	old := slices.Clone(src.had)
	if src.key != nil {
		if err := im.v.view(func(tx *bbolt.Tx) error {
			val := tx.Bucket(bucketIndex).Get(src.key)
			for i := 0; i+indexEntry <= len(val); i += indexEntry {
				m, err := im.v.meta1(tx, record.ID(val[i:i+16]))
				if errors.Is(err, ErrNotFound) {
					continue // hidden, or removed
				}
				if err != nil {
					return err
				}
				old = append(old, m.Labels...)
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return slices.DeleteFunc(slices.Clone(ls), func(l record.Label) bool { return slices.Contains(old, l) }), nil
}

// spreadVault gives the labels record id of the vault gained from this
// import to the vault's records and the file's rows that reference it, and
// adds those that gained one to the work list next.
func (im *importer) spreadVault(id record.ID, next []byte) error {
	sc := im.sc
	ls, m, err := im.vaultLabels(id)
	if err != nil || m == nil || len(ls) == 0 || !fhir.PassesLabels(m.FHIR.Type) {
		return err
	}
	own := im.v.fhirKey(&fhir.Resource{Type: m.FHIR.Type, ID: m.FHIR.ID, FullURL: m.FHIR.FullURL})
	src := &labelSource{had: m.Labels}
	for _, h := range im.v.targetRefKeys(m) {
		if err := im.reverse(h, ls, next, src); err != nil {
			return err
		}
		if sc.b(scTarget).Get(h) != nil && (m.FHIR.ID == "" || !bytes.Equal(h, own)) {
			// The file's rows find a resource of the file (a reference by
			// Type/id finds the file's versions and the vault's alike).
			continue
		}
		err := sc.each(scEdges, h, func(e, _ []byte) error {
			if len(e) > refKeyLen+8 {
				held, err := im.holds(e[refKeyLen+8:])
				if err != nil || held {
					return err
				}
			}
			return im.gain(binary.BigEndian.Uint64(e[refKeyLen:refKeyLen+8]), ls, next)
		})
		if err != nil {
			return err
		}
	}
	// The fullUrls under which the file names it (scHeld), unless a
	// resource of the file took one over.
	return sc.each(scHeld, id[:], func(k, _ []byte) error {
		h := bytes.Clone(k[16:])
		if t := sc.b(scTarget).Get(h); len(t) != 17 || !bytes.Equal(t[:16], id[:]) {
			return nil
		}
		if err := im.reverse(h, ls, next, src); err != nil {
			return err
		}
		return sc.each(scEdges, h, func(e, _ []byte) error {
			if len(e) > refKeyLen+8 {
				held, err := im.holds(e[refKeyLen+8:])
				if err != nil || held {
					return err
				}
			}
			return im.gain(binary.BigEndian.Uint64(e[refKeyLen:refKeyLen+8]), ls, next)
		})
	})
}

// commit writes the records, commitBatch per transaction in record ID
// order (as one sorted pass over the whole file: each transaction then
// touches only its own range of the records bucket), hidden behind pending
// marks that name this import. Each record's labels are its propagated
// labels plus those of its earlier versions, the vault's and this file's
// (after propagation, as they always were): versions within the file are
// settled first, in file order.
func (im *importer) commit() error {
	sc, st := im.sc, im.st
	err := sc.each(scChain, nil, func(k, _ []byte) error {
		r, err := im.row(binary.BigEndian.Uint64(k))
		if err != nil {
			return err
		}
		ls, err := im.labelsAt(r.seq)
		if err != nil {
			return err
		}
		earlier := r.base
		if r.prev != 0 {
			if earlier, err = im.labelsAt(r.prev - 1); err != nil {
				return err
			}
		}
		final := normLabels(append(slices.Clone(earlier), ls...))
		if len(final) == len(ls) {
			return nil
		}
		return sc.putSealed(scLabels, seqKey(r.seq), encodeLabels(final))
	})
	if err == nil {
		err = sc.commit()
	}
	if err != nil {
		return fmt.Errorf("import %s: %w", im.name, err)
	}
	var after []byte
	for {
		var batch []*importRow
		c := sc.b(scByID).Cursor()
		k, val := c.First()
		if after != nil {
			if k, val = c.Seek(after); bytes.Equal(k, after) {
				k, val = c.Next()
			}
		}
		var content [][]byte
		size := 0
		for ; k != nil && len(batch) < commitBatch && size < batchSize; k, val = c.Next() {
			r, err := im.row(binary.BigEndian.Uint64(val))
			if err != nil {
				return fmt.Errorf("import %s: %w", im.name, err)
			}
			ct := sc.b(scContent).Get(seqKey(r.seq))
			if ct == nil {
				return fmt.Errorf("import %s: the scratch file lost a resource's content", im.name)
			}
			batch = append(batch, r)
			content = append(content, bytes.Clone(ct))
			size += len(ct)
			after = append(after[:0], k...)
		}
		if len(batch) == 0 {
			return nil
		}
		labels := make([][]record.Label, len(batch))
		for i, r := range batch {
			ls, err := im.labelsAt(r.seq)
			if err != nil {
				return fmt.Errorf("import %s: %w", im.name, err)
			}
			if r.prev == 0 {
				ls = append(ls, r.base...)
			}
			labels[i] = normLabels(ls)
		}
		fulls, err := im.aliases(batch)
		if err != nil {
			return fmt.Errorf("import %s: %w", im.name, err)
		}
		if err := im.v.commitHidden(im.id, batch, content, labels); err != nil {
			return fmt.Errorf("import %s: %w", im.name, err)
		}
		for _, k := range fulls {
			if err := sc.put(scFulls, k, nil); err != nil {
				return fmt.Errorf("import %s: %w", im.name, err)
			}
		}
		for i, r := range batch {
			if r.version == 1 {
				st.Added++
			} else {
				st.Versions++
			}
			st.ByCategory[r.category]++
			if len(labels[i]) > 0 {
				st.Labelled++
			}
		}
		if im.dies("committed") {
			return errTestDied
		}
	}
}

// aliases sets, on each row of batch, the other fullUrls the file brings
// it under that it still holds (a later resource may take one over), and
// returns their targets entries.
func (im *importer) aliases(batch []*importRow) ([][]byte, error) {
	sc := im.sc
	var fulls [][]byte
	for _, r := range batch {
		err := sc.each(scAlias, seqKey(r.seq), func(k, sealed []byte) error {
			h := k[8:]
			if got := sc.b(scTarget).Get(h); len(got) != 9 || binary.BigEndian.Uint64(got) != r.seq {
				return nil
			}
			p, err := sc.open(scAlias, k, sealed)
			if err != nil {
				return err
			}
			if u := string(p); u != r.fullURL && !slices.Contains(r.aliases, u) {
				r.aliases = append(r.aliases, u)
				fulls = append(fulls, append(bytes.Clone(h), r.id[:]...))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return fulls, nil
}

// commitHidden writes the metadata, index entries and ledger entries of a
// batch of imported records in one transaction, each record behind a
// pending mark of import imp. Records are written in ID order and index
// entries in key order (bbolt splits nodes only at commit, so inserting
// random keys into one transaction costs a memmove per insert); versions of
// one resource keep their file order in its index value.
func (v *Vault) commitHidden(imp [16]byte, batch []*importRow, content [][]byte, labels [][]record.Label) error {
	order := make([]int, len(batch))
	for i := range order {
		order[i] = i
	}
	return v.update(func(tx *bbolt.Tx) error {
		pb, cb := tx.Bucket(bucketPending), tx.Bucket(bucketChunks)
		slices.SortFunc(order, func(a, b int) int { return bytes.Compare(batch[a].id[:], batch[b].id[:]) })
		for _, i := range order {
			r := batch[i]
			ct := content[i]
			for j := uint32(0); len(ct) > 0; j++ {
				n := min(len(ct), chunkSize)
				if err := cb.Put(chunkKey(r.id, j), ct[:n]); err != nil {
					return err
				}
				ct = ct[n:]
			}
			m := &Meta{ID: r.id, Title: r.title, Category: r.category, Labels: labels[i],
				Date: r.date, Added: v.now().UTC(), Size: r.size, Source: SourceImport,
				FHIR: &FHIRInfo{Type: r.typ, ID: r.fid, FullURL: r.fullURL, FullURLs: r.aliases, Version: r.version, ContentKey: r.content[:],
					Updated: r.updated, VersionID: r.verID},
				Status: r.status, ContentDigest: r.digest, HeaderDigest: r.header, Chunks: r.chunks}
			if err := v.putMeta(tx, m, ledger.ActionImport); err != nil {
				return err
			}
			if err := pb.Put(r.id[:], v.pendingMark(r.id, imp)); err != nil {
				return err
			}
		}
		return v.ledger.checkpoint(tx)
	})
}

// writeIndex adds the import's records to the FHIR index, in index-key
// order over the whole file (the scratch keeps them sorted), so that each
// transaction touches one range of the index instead of pages all over
// it; versions of one resource keep their file order. The records are
// still hidden; a rollback removes their entries.
func (im *importer) writeIndex() error {
	sc := im.sc
	var after []byte
	for {
		type entry struct{ key, val []byte }
		var es []entry
		c := sc.b(scIndex).Cursor()
		k, val := c.First()
		if after != nil {
			if k, val = c.Seek(after); bytes.Equal(k, after) {
				k, val = c.Next()
			}
		}
		for ; k != nil && len(es) < indexBatch; k, val = c.Next() {
			es = append(es, entry{bytes.Clone(k[:len(k)-8]), bytes.Clone(val)})
			after = append(after[:0], k...)
		}
		if len(es) == 0 {
			return nil
		}
		err := im.v.update(func(tx *bbolt.Tx) error {
			idx := tx.Bucket(bucketIndex)
			for i := 0; i < len(es); {
				key := es[i].key
				cur := bytes.Clone(idx.Get(key))
				for ; i < len(es) && bytes.Equal(es[i].key, key); i++ {
					cur = append(cur, es[i].val...)
				}
				if err := idx.Put(key, cur); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("import %s: %w", im.name, err)
		}
	}
}

// writeRefs adds the import's records to the reference index
// (refindex.go), in key order, indexBatch entries per transaction. Every
// reference that may carry labels has its entries, even one that resolves
// within the file to an actor (a Patient by urn:uuid, say), through which
// Propagate passes nothing: the index is then what the records' content
// gives (appendRecordRefs), which full verify checks. The records are
// still hidden; a rollback removes their entries.
func (im *importer) writeRefs() error {
	sc := im.sc
	for _, set := range []struct{ from, to []byte }{{scRefs, bucketRefs}, {scFulls, bucketTargets}} {
		var after []byte
		for {
			var es []refEntry
			c := sc.b(set.from).Cursor()
			k, val := c.First()
			if after != nil {
				if k, val = c.Seek(after); bytes.Equal(k, after) {
					k, val = c.Next()
				}
			}
			for ; k != nil && len(es) < indexBatch; k, val = c.Next() {
				after = append(after[:0], k...)
				es = append(es, refEntry{key: bytes.Clone(k), val: bytes.Clone(val)})
			}
			if k == nil && len(es) == 0 {
				break
			}
			err := im.v.update(func(tx *bbolt.Tx) error {
				b := tx.Bucket(set.to)
				for _, e := range es {
					if err := b.Put(e.key, e.val); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("import %s: %w", im.name, err)
			}
			if k == nil {
				break
			}
		}
	}
	return nil
}

// indexBatch is how many index entries one transaction of writeIndex adds.
const indexBatch = 16384

// Pending values of imports. Staged content waits in the scratch file and
// never reaches the vault before the commit pass. A committed but hidden
// record's mark is import ID || HMAC(index key, "medvault/pending-commit/v2"
// 0x00 || record ID || import ID), and the import's commit mark, under key
// "import-committed/" || import ID, is HMAC(index key,
// "medvault/import-committed/v1" 0x00 || import ID). Marks are keyed, so a
// mark written by anyone but this vault's owner is recognised as forged
// and never makes the vault delete a record.
var commitMarkPrefix = []byte("import-committed/")

func (v *Vault) pendingMark(id record.ID, imp [16]byte) []byte {
	m := hmac.New(sha256.New, v.index)
	m.Write([]byte("medvault/pending-commit/v2\x00"))
	m.Write(id[:])
	m.Write(imp[:])
	return m.Sum(imp[:16:16])
}

// pendingMarkV1 is the mark of builds that made a whole import visible in
// one transaction; a vault may still hold one after such a build was killed.
func (v *Vault) pendingMarkV1(id record.ID) []byte {
	m := hmac.New(sha256.New, v.index)
	m.Write([]byte("medvault/pending-commit/v1\x00"))
	m.Write(id[:])
	return m.Sum(nil)
}

func commitMarkKey(imp [16]byte) []byte { return append(slices.Clone(commitMarkPrefix), imp[:]...) }

func (v *Vault) commitMark(imp [16]byte) []byte {
	m := hmac.New(sha256.New, v.index)
	m.Write([]byte("medvault/import-committed/v1\x00"))
	m.Write(imp[:])
	return m.Sum(nil)
}

// markOf returns the import that mark p names, if p is an authentic mark
// of record id (v1 marks name no import: imp is zero).
func (v *Vault) markOf(id record.ID, p []byte) (imp [16]byte, ok bool) {
	switch len(p) {
	case 32:
		return imp, hmac.Equal(p, v.pendingMarkV1(id))
	case 48:
		imp = [16]byte(p[:16])
		return imp, hmac.Equal(p, v.pendingMark(id, imp))
	}
	return imp, false
}

// importCommit is what the ledger entry of an import's commit (an import
// entry naming no record) commits to:
// SHA-256("medvault/import-commit/v1" 0x00 || import ID).
func importCommit(imp [16]byte) ledger.Hash {
	return sha256.Sum256(append([]byte("medvault/import-commit/v1\x00"), imp[:]...))
}

// loggedCommits returns the commitments of the import commits the ledger
// records (see importCommit).
func (v *Vault) loggedCommits(tx *bbolt.Tx) (map[ledger.Hash]int64, error) {
	out := map[ledger.Hash]int64{}
	err := v.ledger.log.Scan(tx, 0, func(i int64, e *ledger.Entry) error {
		if e.Action == ledger.ActionImport && len(e.Subjects) == 0 && e.Commit != (ledger.Hash{}) {
			out[e.Commit] = i
		}
		return nil
	})
	return out, err
}

func (v *Vault) committed(tx *bbolt.Tx, imp [16]byte) bool {
	if imp == ([16]byte{}) {
		return false
	}
	m := tx.Bucket(bucketPending).Get(commitMarkKey(imp))
	return m != nil && hmac.Equal(m, v.commitMark(imp))
}

// hidden reports whether record id belongs to an import not yet complete.
func (v *Vault) hidden(tx *bbolt.Tx, id record.ID) bool {
	p := tx.Bucket(bucketPending).Get(id[:])
	if p == nil {
		return false
	}
	imp, ok := v.markOf(id, p)
	return ok && !v.committed(tx, imp)
}

// settlePending settles the pending bucket, commitBatch entries per
// transaction, so memory stays bounded however large the import was:
// marks of committed imports are cleared; records of imports that did not
// commit are rolled back, with ledger entries; chunks of adds and imports
// that never stored their record are deleted; a pending mark this vault
// did not write is dropped, keeping its record. With own set, only the
// entries of that import are settled (an import cleaning up after
// itself); otherwise everything is (at Open, where we hold the exclusive
// lock, so anything pending belongs to a process that died), and commit
// marks go last.
func (v *Vault) settlePending(own *[16]byte) error {
	var after []byte
	var logged map[ledger.Hash]int64 // import commits the ledger records, read when first needed
	for {
		var clearIDs, roll, unstored []record.ID
		var last []byte
		err := v.view(func(tx *bbolt.Tx) error {
			pb, recs := tx.Bucket(bucketPending), tx.Bucket(bucketRecords)
			c := pb.Cursor()
			k, val := c.First()
			if after != nil {
				if k, val = c.Seek(after); bytes.Equal(k, after) {
					k, val = c.Next()
				}
			}
			for n := 0; k != nil && n < commitBatch; k, val = c.Next() {
				n++
				last = k
				if len(k) != 16 {
					continue
				}
				id := record.ID(k)
				stored := recs.Get(k) != nil
				if own == nil && v.isPartial(id, val) {
					if stored {
						// A record completes by deleting its
						// partial value in the same transaction:
						// this one was put back from an older copy,
						// and would make the next fetch drop the
						// record's chunks.
						clearIDs = append(clearIDs, id)
					}
					continue // a cut transfer, kept to resume (receive.go)
				}
				imp, mark := v.markOf(id, val)
				ours := mark && own != nil && len(val) == 48 && imp == *own
				if own != nil && !ours {
					continue
				}
				switch {
				case mark && v.committed(tx, imp):
					clearIDs = append(clearIDs, id)
				case mark && stored && own == nil:
					// Its import's commit mark is missing. The ledger
					// says whether the import committed: if it did, the
					// mark was deleted outside medvault (full verify
					// reports it) and the record stays.
					if logged == nil {
						var err error
						if logged, err = v.loggedCommits(tx); err != nil {
							return err
						}
					}
					if _, ok := logged[importCommit(imp)]; ok {
						clearIDs = append(clearIDs, id)
					} else {
						roll = append(roll, id)
					}
				case mark && stored:
					roll = append(roll, id)
				case stored:
					// A pending mark on a stored record that this vault
					// did not write (it can only come from outside
					// medvault): keep the record, drop the mark; verify
					// still checks the record.
					clearIDs = append(clearIDs, id)
				default:
					unstored = append(unstored, id)
				}
			}
			last = bytes.Clone(last)
			return nil
		})
		if err != nil {
			return err
		}
		if last == nil {
			break
		}
		after = last
		if len(clearIDs) > 0 {
			if err := v.update(func(tx *bbolt.Tx) error {
				pb := tx.Bucket(bucketPending)
				for _, id := range clearIDs {
					if err := pb.Delete(id[:]); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		if err := v.rollBack(roll); err != nil {
			return fmt.Errorf("roll back an unfinished import: %w", err)
		}
		if err := v.discardUnstored(unstored); err != nil {
			return fmt.Errorf("discard unfinished adds: %w", err)
		}
	}
	// Commit marks stay (48 bytes per import): a record mark of a
	// committed import, put back into the file later (from a backup, or
	// from free pages), then finds its import committed and is cleared,
	// where without the commit mark it would roll an acknowledged record
	// back.
	return nil
}

// discardUnstored deletes the chunks and pending marks of records that were
// never stored, a bounded number of chunks per transaction.
func (v *Vault) discardUnstored(ids []record.ID) error {
	const perTx = 8192
	for len(ids) > 0 {
		err := v.update(func(tx *bbolt.Tx) error {
			cb, pb := tx.Bucket(bucketChunks), tx.Bucket(bucketPending)
			for n := 0; len(ids) > 0 && n < perTx; {
				id := ids[0]
				c := cb.Cursor()
				for k, _ := c.Seek(id[:]); hasPrefix(k, id[:]) && n < perTx; k, _ = c.Seek(id[:]) {
					if err := c.Delete(); err != nil {
						return err
					}
					n++
				}
				if k, _ := c.Seek(id[:]); hasPrefix(k, id[:]) {
					return nil // more chunks: the next transaction
				}
				if err := pb.Delete(id[:]); err != nil {
					return err
				}
				ids = ids[1:]
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// rollBack removes records of an import that did not complete: their
// metadata, index entries (FHIR and reference index), chunks and marks, each with a ledger entry
// saying so.
func (v *Vault) rollBack(ids []record.ID) error {
	for len(ids) > 0 {
		n := min(len(ids), commitBatch)
		err := v.update(func(tx *bbolt.Tx) error {
			recs, cb, pb := tx.Bucket(bucketRecords), tx.Bucket(bucketChunks), tx.Bucket(bucketPending)
			if err := v.unref(tx, ids[:n]); err != nil {
				return err
			}
			for _, id := range ids[:n] {
				if m, err := v.openMeta(id, recs.Get(id[:])); err == nil {
					if err := v.unindex(tx, m); err != nil {
						return err
					}
				}
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

// encryptBatch encrypts a batch of resources (on both cores) and gives
// each its record ID, digest, size and chunk count; it returns their
// ciphertexts, in batch order.
func (v *Vault) encryptBatch(batch []*staged) ([][]byte, error) {
	out := make([][]byte, len(batch))
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	work := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i], errs[i] = v.encryptSmall(batch[i])
			}
		}()
	}
	for i := range batch {
		work <- i
	}
	close(work)
	wg.Wait()
	for i := range batch {
		if errs[i] != nil {
			return nil, errs[i]
		}
	}
	return out, nil
}

// encryptSmall encrypts one resource's raw bytes in memory (resources are
// bounded by the reader's size limit) and returns the ciphertext, which
// will be cut into s.chunks chunks.
func (v *Vault) encryptSmall(s *staged) ([]byte, error) {
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
	s.header, _ = headerDigest(ct)
	s.chunks = uint32((len(ct) + chunkSize - 1) / chunkSize)
	return ct, nil
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
