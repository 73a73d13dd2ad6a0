package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"filippo.io/age"
	"go.etcd.io/bbolt"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// This file holds what the sharing protocol (package share) needs from a
// vault: on the patient's side, deciding a provider's request and logging it
// atomically, and streaming admitted records re-encrypted to the provider;
// on the provider's side, storing the ciphertext received as it is.

var bucketNonces = []byte("nonces") // grant ID || request nonce -> unused

// Receipt proves to a provider that its request was logged: the patient's
// signed checkpoint, the ledger leaf (salt and entry) of the request and an
// inclusion proof of that leaf in the checkpoint's tree.
type Receipt struct {
	Checkpoint []byte // signed note, verbatim
	Index      int64
	Leaf       []byte // ledger.Leaf binary
	Proof      []byte // ledger.Proof binary
}

// Admission records that a request was decided and logged. Only records it
// admits can be sent to the requester (Vault.Share).
type Admission struct {
	Allowed []record.ID
	Receipt Receipt
	allowed map[record.ID]bool
}

// AdmitState is the vault as a decision sees it, inside the transaction
// that will log the decision.
type AdmitState struct {
	v  *Vault
	tx *bbolt.Tx
}

// Object returns a stored object, or ErrNotFound.
func (s *AdmitState) Object(kind Kind, key string) ([]byte, error) {
	b, _ := objectBucket(s.tx, kind)
	bkey := s.v.objectKey(kind, key)
	var sealed []byte
	if b != nil {
		sealed = b.Get(bkey)
	}
	if sealed == nil {
		return nil, fmt.Errorf("%w: %s %q", ErrNotFound, kindNoun(kind), key)
	}
	o, err := s.v.openObject(kind, bkey, sealed)
	return o.Value, err
}

// Objects returns every stored object of a kind.
func (s *AdmitState) Objects(kind Kind) ([]Object, error) {
	b, _ := objectBucket(s.tx, kind)
	if b == nil {
		return nil, nil
	}
	var out []Object
	err := b.ForEach(func(k, sealed []byte) error {
		o, err := s.v.openObject(kind, k, sealed)
		if err != nil {
			return err
		}
		out = append(out, o)
		return nil
	})
	return out, err
}

// Revoked reports whether a revocation is stored for grant.
func (s *AdmitState) Revoked(grant [32]byte) (bool, error) {
	_, err := s.Object(KindRevoked, hex.EncodeToString(grant[:]))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// NonceSeen reports whether a request nonce was already used under grant.
func (s *AdmitState) NonceSeen(grant [32]byte, nonce [16]byte) bool {
	b := s.tx.Bucket(bucketNonces)
	return b != nil && b.Get(append(grant[:], nonce[:]...)) != nil
}

// Record returns the metadata of one of the owner's own records.
func (s *AdmitState) Record(id record.ID) (*Meta, bool, error) {
	sealed := s.tx.Bucket(bucketRecords).Get(id[:])
	if sealed == nil || s.v.hidden(s.tx, id) {
		return nil, false, nil
	}
	m, err := s.v.openMeta(id, sealed)
	if err != nil || !m.From.IsZero() {
		return nil, false, err
	}
	return m, true, nil
}

// Superseded reports whether the vault holds a later version of the FHIR
// resource m is (see the package function Superseded).
func (s *AdmitState) Superseded(m *Meta) (bool, error) { return s.v.supersededIn(s.tx, m) }

// Superseded reports whether the vault now holds a later version of the
// FHIR resource m is.
func (v *Vault) Superseded(m *Meta) (bool, error) {
	var out bool
	err := v.view(func(tx *bbolt.Tx) error {
		var err error
		out, err = v.supersededIn(tx, m)
		return err
	})
	return out, err
}

func (v *Vault) supersededIn(tx *bbolt.Tx, m *Meta) (bool, error) {
	if m.FHIR == nil {
		return false, nil
	}
	// Superseded in every series it belongs to (see seriesOf).
	keys := seriesOf(m)
	later := make([]bool, len(keys))
	for _, oid := range v.otherVersions(tx, m) {
		om, err := v.meta1(tx, oid)
		if err != nil {
			return false, err
		}
		if om.FHIR == nil || !om.FHIR.Newer(m.FHIR) {
			continue
		}
		for _, ok := range seriesOf(om) {
			if i := slices.Index(keys, ok); i >= 0 {
				later[i] = true
			}
		}
	}
	return !slices.Contains(later, false), nil
}

// MedicationUses returns what makes the Medication resource m current (see
// the Vault method).
func (s *AdmitState) MedicationUses(m *Meta) ([][]record.Label, error) {
	return s.v.medicationUsesIn(s.tx, m)
}

// MedicationUses returns, for a Medication resource, the labels of each
// current medication record that references it: a record of category
// medications that is Active, not Voided and not superseded by a later
// version (a MedicationRequest, MedicationStatement or
// MedicationAdministration), one entry per record, empty for one without
// labels. A Medication's own status is about the product, not whether the
// patient takes it: these records are what make it current. It returns nil
// for any other record, and for every record until the vault's reference
// index is built (IndexReferences; the next import builds it).
//
// A record found by the Medication's type and id counts unless the
// reference and the Medication both name a server and the two differ
// (refServer): the clinic's MedicationRequest that references
// "Medication/5" (which resolves against the clinic's base, R4 2.36.4.1)
// or "https://clinic.example/r4/Medication/5" does not make the hospital's
// Medication/5 current. When either names no server it counts: leaving a
// current medication out of an emergency summary is the worse error.
func (v *Vault) MedicationUses(m *Meta) ([][]record.Label, error) {
	var out [][]record.Label
	err := v.view(func(tx *bbolt.Tx) error {
		var err error
		out, err = v.medicationUsesIn(tx, m)
		return err
	})
	return out, err
}

func (v *Vault) medicationUsesIn(tx *bbolt.Tx, m *Meta) ([][]record.Label, error) {
	if m.FHIR == nil || m.FHIR.Type != "Medication" || !m.From.IsZero() || !refsIndexed(tx) {
		return nil, nil
	}
	rh := v.newRefHasher()
	var plain []byte // the ref key of its Type/id
	if m.FHIR.ID != "" {
		plain = rh.key(m.FHIR.Type + "/" + m.FHIR.ID)
	}
	servers := m.FHIR.servers()
	seen := map[record.ID]bool{}
	var out [][]record.Label
	for _, h := range v.referrerKeys(tx, m) {
		ids, exacts := v.referrers(tx, rh, h)
		for i, id := range ids {
			if seen[id] || len(exacts[i]) > 0 && len(v.holders(tx, exacts[i])) > 0 {
				continue // counted, or the reference as written names another resource
			}
			rm, err := v.meta1(tx, id)
			if err != nil {
				return nil, err
			}
			if rm.FHIR == nil || rm.Category != record.Medications || !rm.Active() || rm.Voided() {
				seen[id] = true
				continue
			}
			// Not marked seen when it names another server this way: it
			// may name m too, under another of m's keys.
			if ok, err := v.mayNameServer(tx, rh, rm, servers, h, plain, exacts[i]); err != nil || !ok {
				if err != nil {
					return nil, err
				}
				continue
			}
			seen[id] = true
			sup, err := v.supersededIn(tx, rm)
			if err != nil {
				return nil, err
			}
			if !sup {
				out = append(out, append([]record.Label{}, rm.Labels...))
			}
		}
	}
	return out, nil
}

// mayNameServer reports whether the reference record rm makes, found in
// the reference index under ref key h of a resource from server (its
// serverKey, "" if it names none), may name that server: unless both
// name one and they differ (see refServer). plain is the ref key of the
// resource's Type/id, exact the ref key of the reference as written for a
// fallback entry (nil otherwise). Only a fallback entry (an absolute or versioned reference
// no record holds) needs the reference itself: rm's content is decrypted
// in tx to find it (withContent, which wipes it).
func (v *Vault) mayNameServer(tx *bbolt.Tx, rh *refHasher, rm *Meta, servers []string, h, plain, exact []byte) (bool, error) {
	switch {
	case slices.Contains(servers, ""):
		return true, nil
	case exact == nil && !bytes.Equal(h, plain):
		return true, nil // the resource's fullUrl, as written
	case exact == nil:
		// "Type/id", relative: against the referrer's own base (any of
		// them, for a record two servers sent the same).
		return mayMeet(rm.FHIR.servers(), servers), nil
	}
	ok := false
	err := v.withContent(tx, rm, func(content []byte) error {
		for _, ref := range fhir.References(content) {
			if e, _ := fhir.ReferenceKeys(ref); !ok && bytes.Equal(rh.key(e), exact) {
				ok = mayMeet(refServers(ref, rm), servers)
			}
		}
		return nil
	})
	return ok, err
}

// mayMeet reports whether a reference naming one of the servers refs may
// name a resource of one of the servers of: unless neither list names no
// server ("") and they have none in common.
func mayMeet(refs, of []string) bool {
	if slices.Contains(refs, "") || slices.Contains(of, "") {
		return true
	}
	for _, r := range refs {
		if slices.Contains(of, r) {
			return true
		}
	}
	return false
}

// refServers returns the servers a reference that record from makes may
// name, as serverKey gives them: for an absolute RESTful reference (http or
// https, "/_history/v" ignored), the service base before its Type/id; for a
// relative one, the referrer's own servers, since a relative reference
// resolves against the base of the entry that makes it (R4 2.36.4.1); ""
// for any other (urn:uuid, urn:oid, another scheme).
func refServers(ref string, from *Meta) []string {
	if !strings.Contains(ref, ":") {
		return from.FHIR.servers() // an id has no ":", so a relative reference has none
	}
	_, fallback := fhir.ReferenceKeys(ref)
	typ, id, ok := fhir.PlainKey(fallback)
	if !ok {
		return []string{""}
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	return []string{serverKey(serverBase(strings.TrimSuffix(ref, "/"), typ, id))}
}

// Records returns the metadata of all the owner's own records.
func (s *AdmitState) Records() ([]*Meta, error) {
	var out []*Meta
	err := s.tx.Bucket(bucketRecords).ForEach(func(k, sealed []byte) error {
		if s.v.hidden(s.tx, record.ID(k)) {
			return nil
		}
		m, err := s.v.openMeta(record.ID(k), sealed)
		if err != nil {
			return err
		}
		if m.From.IsZero() {
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// Decision is what a decide function returns to Admit.
type Decision struct {
	Event   Event       // the ledger entry: Serve (allowed) or a denial
	More    []Event     // continuation entries (more subjects than one entry holds)
	Allowed []record.ID // records the requester may now fetch
	// Grant and Nonce, when Nonce is set, are remembered so the same
	// request cannot be admitted twice.
	Grant [32]byte
	Nonce *[16]byte
}

// nonceCommit is the Commit of a served request's ledger entry: the hash of
// its key in the nonces bucket (grant ID || request nonce).
func nonceCommit(key []byte) ledger.Hash {
	h := sha256.New()
	h.Write([]byte("medvault/request-nonce/v1\x00"))
	h.Write(key)
	var out ledger.Hash
	copy(out[:], h.Sum(nil))
	return out
}

// Admit decides a provider's request and logs the decision in one write
// transaction: decide looks at the vault through st; the event it returns is
// appended to the ledger, the request nonce remembered, a checkpoint signed
// and a receipt built. Two copies of one request therefore cannot both be
// admitted, and nothing is admitted without its ledger entry.
func (v *Vault) Admit(decide func(st *AdmitState) (Decision, error)) (*Admission, error) {
	var adm *Admission
	err := v.update(func(tx *bbolt.Tx) error {
		d, err := decide(&AdmitState{v: v, tx: tx})
		if err != nil {
			return err
		}
		if d.Nonce != nil {
			nb, err := tx.CreateBucketIfNotExists(bucketNonces)
			if err != nil {
				return err
			}
			key := append(d.Grant[:], d.Nonce[:]...)
			if err := nb.Put(key, []byte{1}); err != nil {
				return err
			}
			// The entry commits to the nonce it made the node
			// remember, so verify sees the nonce deleted (which would
			// let the same signed request in again).
			d.Event.commit = nonceCommit(key)
		}
		index, err := v.ledger.log.Size(tx)
		if err != nil {
			return err
		}
		if err := v.logAppend(tx, d.Event); err != nil {
			return err
		}
		for _, ev := range d.More {
			if err := v.logAppend(tx, ev); err != nil {
				return err
			}
		}
		cp, err := v.ledger.log.Checkpoint(tx)
		if err != nil {
			return err
		}
		leaf, err := v.ledger.log.Leaf(tx, index)
		if err != nil {
			return err
		}
		lb, err := leaf.MarshalBinary()
		if err != nil {
			return err
		}
		proof, err := v.ledger.log.InclusionProof(tx, index, cp.Size)
		if err != nil {
			return err
		}
		pb, err := proof.MarshalBinary()
		if err != nil {
			return err
		}
		adm = &Admission{Allowed: d.Allowed, allowed: map[record.ID]bool{},
			Receipt: Receipt{Checkpoint: bytes.Clone(cp.Note), Index: index, Leaf: lb, Proof: pb}}
		for _, id := range d.Allowed {
			adm.allowed[id] = true
		}
		return nil
	})
	return adm, err
}

// Outgoing is an admitted record ready to be sent to a provider (Share).
type Outgoing struct {
	Meta *Meta
	// Offset is where in the age payload the stream starts: the offset
	// the provider asked to resume from, or 0 for the whole file.
	Offset int64
	v      *Vault
	hdr    []byte // the new header, written first when the whole file is sent
	from   uint32 // the first chunk with bytes to send
	skip   int    // bytes of chunk from not sent
	// hashAll is set for a record stored without a header digest: every
	// stored chunk is then hashed and compared with the content digest.
	hashAll bool
}

// Share prepares an admitted record for the provider whose age recipient
// is `to`: an age file for `to`, made of a new header that wraps the
// record's file key to `to` and the stored payload as it is (see
// rewrap.go). A provider holding the first offset bytes of the payload
// (from an earlier, cut transfer) gets only the rest, when offset is within
// the payload; otherwise it gets the whole file.
func (v *Vault) Share(adm *Admission, id record.ID, to age.Recipient, offset int64) (*Outgoing, error) {
	if adm == nil || !adm.allowed[id] {
		return nil, fmt.Errorf("record %s was not admitted for this request", id)
	}
	m, err := v.Show(id)
	if err != nil {
		return nil, err
	}
	var head []byte
	if err := v.view(func(tx *bbolt.Tx) error {
		head = recordHead(tx.Bucket(bucketChunks), id)
		return nil
	}); err != nil {
		return nil, err
	}
	if len(head) == 0 {
		return nil, fmt.Errorf("%w: record %s has no content", ErrTampered, id)
	}
	// The stored header and nonce must be this record's: they make the
	// key under which age authenticates every payload chunk, which the
	// provider checks as they arrive.
	if err := checkHeader(m, head); err != nil {
		return nil, err
	}
	hdr, n, err := rewrap(head, to, v.identities()...)
	if err != nil {
		return nil, fmt.Errorf("%w: record %s: %v", ErrDecrypt, id, err)
	}
	hashAll := m.HeaderDigest == [32]byte{}
	whole := &Outgoing{Meta: m, v: v, hdr: hdr, skip: n, hashAll: hashAll}
	if offset <= 0 || offset > int64(m.Chunks)*chunkSize {
		// Nothing to resume, or past any payload this record has (the
		// provider says where its copy stops; n+offset must not overflow).
		return whole, nil
	}
	// Find the chunk holding byte n+offset of the stored file.
	var lens []int
	if err := v.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketChunks).Cursor()
		for k, val := c.Seek(id[:]); k != nil && bytes.HasPrefix(k, id[:]) && len(lens) < int(m.Chunks); k, val = c.Next() {
			lens = append(lens, len(val))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	pos := int64(n) + offset
	for i, l := range lens {
		if pos < int64(l) || (pos == int64(l) && i == len(lens)-1) {
			return &Outgoing{Meta: m, v: v, Offset: offset, from: uint32(i), skip: int(pos), hashAll: hashAll}, nil
		}
		pos -= int64(l)
	}
	return whole, nil // past the end: the whole file again
}

// WriteTo writes the age file (or its rest, after Offset) to w. It reads
// the record one chunk per short transaction, so a slow network peer never
// holds a long transaction open.
//
// Share checked the stored header against the record's header digest, and
// age authenticates every payload chunk under the key that header wraps:
// the provider checks each chunk as it arrives, so a damaged payload never
// completes. A record stored before header digests were kept is checked
// here instead: every stored chunk, sent or not, is hashed beside the
// sending, and a record whose bytes are not the ones its ledger entry
// committed to fails with ErrTampered before the end.
func (o *Outgoing) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if o.hdr != nil {
		n, err := w.Write(o.hdr)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	if !o.hashAll {
		src := &shortTxReader{v: o.v, id: o.Meta.ID, next: o.from, want: o.Meta.Chunks}
		for i := o.from; i < o.Meta.Chunks; i++ {
			c, err := src.chunk()
			if err != nil {
				return total, err
			}
			if i == o.from {
				c = c[min(o.skip, len(c)):]
			}
			n, err := w.Write(c)
			total += int64(n)
			if err != nil {
				return total, err
			}
		}
		return total, nil
	}
	todo, free := make(chan []byte, 2), make(chan []byte, 3)
	for range 3 {
		free <- make([]byte, 0, chunkSize)
	}
	var sum [32]byte
	hashed := make(chan struct{})
	go func() {
		h := sha256.New()
		for b := range todo {
			h.Write(b)
			free <- b[:0]
		}
		copy(sum[:], h.Sum(nil))
		close(hashed)
	}()
	src := &shortTxReader{v: o.v, id: o.Meta.ID, want: o.Meta.Chunks}
	var err error
	for i := uint32(0); i < o.Meta.Chunks; i++ {
		src.buf = <-free
		var c []byte
		if c, err = src.chunk(); err != nil {
			break
		}
		todo <- c // hashed while it is sent: both only read it
		if i < o.from {
			continue
		}
		if i == o.from {
			c = c[min(o.skip, len(c)):]
		}
		n, werr := w.Write(c)
		total += int64(n)
		if werr != nil {
			err = werr
			break
		}
	}
	close(todo)
	<-hashed
	if err == nil && sum != o.Meta.ContentDigest {
		err = fmt.Errorf("%w: record %s: stored content does not match its digest; not sent", ErrTampered, o.Meta.ID)
	}
	return total, err
}

// shortTxReader reads a record's chunks, each in its own read transaction.
type shortTxReader struct {
	v    *Vault
	id   record.ID
	next uint32
	want uint32
	buf  []byte // the last chunk loaded
	cur  []byte // what Read has not returned of it
	ra   *readahead
}

func (r *shortTxReader) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		c, err := r.chunk()
		if err != nil {
			return 0, err
		}
		r.cur = c
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// chunk loads the next chunk and returns it, bypassing Read; the slice is
// valid until the next load.
func (r *shortTxReader) chunk() ([]byte, error) {
	if r.next == r.want {
		return nil, io.EOF
	}
	if r.ra == nil {
		r.ra = &readahead{id: r.id, want: r.want}
	}
	err := r.v.view(func(tx *bbolt.Tx) error {
		r.ra.advance(tx, r.next)
		c := tx.Bucket(bucketChunks).Get(chunkKey(r.id, r.next))
		if c == nil {
			return fmt.Errorf("%w: record %s: chunk %d is missing", ErrTampered, r.id, r.next)
		}
		r.buf = append(r.buf[:0], c...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.next++
	return r.buf, nil
}

// Receiving makes fetches from one patient into this vault run one at a
// time (in a node, two 'fetch' commands can overlap) and returns the
// function that ends this one's turn. A fetch lists what the vault holds
// from the patient before it asks for the rest: two at once each asked
// for, and stored, every record the other was fetching.
func (v *Vault) Receiving(patient identity.ID) (done func()) {
	mu, _ := v.fetching.LoadOrStore(patient, &sync.Mutex{})
	m := mu.(*sync.Mutex)
	m.Lock()
	return m.Unlock
}

// ReceivedFrom returns the patient record IDs already stored from patient.
func (v *Vault) ReceivedFrom(patient identity.ID) (map[record.ID]bool, error) {
	ms, err := v.List(Filter{})
	if err != nil {
		return nil, err
	}
	out := map[record.ID]bool{}
	for _, m := range ms {
		if m.From == patient {
			out[m.SourceID] = true
		}
	}
	return out, nil
}
