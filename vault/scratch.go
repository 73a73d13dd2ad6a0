package vault

import (
	"bytes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/crypto/chacha20poly1305"
)

// A scratch is the disposable store an import keeps its working state in,
// so that memory does not grow with the file: a bbolt file beside the
// vault (import-<random>.scratch, mode 0600) opened without fsync, since a
// crash discards it anyway.
//
// Nothing in it says more than the vault file does: values that say
// anything about a record are sealed with an ephemeral XChaCha20-Poly1305
// key that lives only in this process's memory; the content is age
// ciphertext under the vault key, as stored in the vault; keys are
// sequence numbers (file order), record IDs, the vault's own index keys
// (FHIR index and reference index keys, see refindex.go), or keyed hashes under an ephemeral HMAC key. The file is removed
// when the import ends and, if a crash left it, at the next Open.
type scratch struct {
	path  string
	db    *bbolt.DB
	aead  cipher.AEAD
	mac   hash.Hash
	nonce uint64
	tx    *bbolt.Tx // the open write transaction
	ops   int       // writes in tx
	size  int       // bytes written in tx by putBytes
	gen   int       // transactions begun
}

// scratchPattern matches scratch files in a data directory.
const scratchPattern = "import-*.scratch"

// scratchOps is how many writes a scratch transaction takes before it is
// committed: bbolt keeps a transaction's dirty pages in memory, so this
// bounds them. Writes come in key order, so committing more often costs
// little: each transaction touches its own range of keys.
const scratchOps = 2048

// scratchBytes bounds the content bytes one scratch transaction holds.
const scratchBytes = 8 << 20

var (
	scRows     = []byte("rows")    // seq -> sealed importRow
	scContent  = []byte("content") // seq -> the resource's age ciphertext (vault key)
	scIndex    = []byte("index")   // vault index key || seq -> record ID || content key
	scDups     = []byte("dups")    // H(fhir key, content) -> seq of the row with that content (a later version)
	scKeys     = []byte("keys")    // H(fhir key) -> sealed last seq, first content and first seq in this file
	scVers     = []byte("vers")    // H(fhir key, server base) -> the last version number this file gave that series
	scChain    = []byte("chain")   // seq -> nothing: one of several versions in this file, or a new version of a resource the vault holds
	scByID     = []byte("byid")    // record ID -> seq: the commit order
	scTarget   = []byte("target")  // ref key -> seq of the resource it resolves to, or ID of a vault record (an unchanged resource) || 1 if that is an actor, else 0
	scAlias    = []byte("alias")   // seq || ref key of a fullUrl -> the fullUrl (sealed): the file brings the row again, unchanged, under it
	scHeld     = []byte("held")    // record ID || ref key of a fullUrl -> the fullUrl (sealed): the file names a vault record (unchanged) so
	scEdges    = []byte("edges")   // ref key || referrer seq || (fallback edges) ref key of the reference as written
	scCodes    = []byte("codes")   // H(primary code) -> sealed labels the source gave it
	scLabels   = []byte("labels")  // seq -> sealed labels (only labelled rows)
	scWork     = []byte("work")    // seq, or record ID of a vault record -> nothing: propagation work list
	scWorkNext = []byte("work2")   // the same: the work list of the next round
	scRefs     = []byte("refs")    // refs key || record ID -> the vault's refs value (refindex.go)
	scFulls    = []byte("fulls")   // ref key of a fullUrl || record ID -> nothing: the vault's targets entries
	scVault    = []byte("vault")   // record ID of an earlier record -> sealed labels it gains from this import
	scUUIDs    = []byte("uuids")   // ref key of a urn:uuid reference || referrer seq -> its id (sealed)
	scKnown    = []byte("known")   // ref key of the Type/id of an unchanged resource with a UUID id -> nothing
)

func newScratch(dir string) (*scratch, error) {
	var name [8]byte
	rand.Read(name[:])
	path := filepath.Join(dir, "import-"+hex.EncodeToString(name[:])+".scratch")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("scratch file: %w", err)
	}
	f.Close()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: time.Second, NoSync: true, NoFreelistSync: true, NoGrowSync: true,
		FreelistType: bbolt.FreelistMapType, InitialMmapSize: 1 << 28,
	})
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("scratch file: %w", err)
	}
	var k [32 + 32]byte
	rand.Read(k[:])
	aead, _ := chacha20poly1305.NewX(k[:32])
	s := &scratch{path: path, db: db, aead: aead, mac: hmac.New(sha256.New, k[32:])}
	if err := s.begin(); err != nil {
		s.close()
		return nil, err
	}
	for _, b := range [][]byte{scRows, scContent, scIndex, scDups, scKeys, scVers, scChain, scByID, scTarget, scEdges, scCodes, scLabels, scWork, scWorkNext, scRefs, scFulls, scVault, scHeld, scAlias, scUUIDs, scKnown} {
		if _, err := s.tx.CreateBucket(b); err != nil {
			s.close()
			return nil, fmt.Errorf("scratch file: %w", err)
		}
	}
	if err := s.commit(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *scratch) begin() error {
	tx, err := s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("scratch file: %w", err)
	}
	s.tx, s.ops, s.size = tx, 0, 0
	s.gen++
	return nil
}

// commit commits the open transaction and begins the next.
func (s *scratch) commit() error {
	if err := s.tx.Commit(); err != nil {
		s.tx = nil
		return fmt.Errorf("scratch file: %w", err)
	}
	return s.begin()
}

// maybeCommit commits when the transaction holds scratchOps writes; it
// reports whether it did (cursors must then be opened again).
func (s *scratch) maybeCommit() (bool, error) {
	if s.ops < scratchOps && s.size < scratchBytes {
		return false, nil
	}
	return true, s.commit()
}

// close closes the scratch file and removes it.
func (s *scratch) close() error {
	err := s.abandon()
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// abandon closes the scratch file and leaves it on disk, as a killed
// process would (tests only).
func (s *scratch) abandon() error {
	if s.tx != nil {
		s.tx.Rollback()
		s.tx = nil
	}
	return s.db.Close()
}

// each calls fn for every key of bucket that starts with prefix, in order,
// committing the transaction whenever it holds scratchOps writes. fn may
// write to other buckets and call each itself; k and v are valid only
// during the call.
func (s *scratch) each(bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := s.b(bucket).Cursor()
	k, v := c.Seek(prefix)
	var last []byte
	for hasPrefix(k, prefix) {
		last = append(last[:0], k...)
		gen := s.gen
		if err := fn(k, v); err != nil {
			return err
		}
		if s.gen == gen && s.ops < scratchOps {
			k, v = c.Next()
			continue
		}
		if s.gen == gen {
			if err := s.commit(); err != nil {
				return err
			}
		}
		// The transaction changed: find our place again.
		c = s.b(bucket).Cursor()
		if k, v = c.Seek(last); bytes.Equal(k, last) {
			k, v = c.Next()
		}
	}
	return nil
}

func (s *scratch) b(name []byte) *bbolt.Bucket { return s.tx.Bucket(name) }

func (s *scratch) put(bucket, key, val []byte) error {
	s.ops++
	return s.b(bucket).Put(key, val)
}

// putBytes stores val as it is (content already encrypted) and counts its
// bytes toward the transaction's bound.
func (s *scratch) putBytes(bucket, key, val []byte) error {
	s.size += len(val)
	return s.put(bucket, key, val)
}

// putSealed seals plain, bound to its bucket and key, and stores it.
func (s *scratch) putSealed(bucket, key, plain []byte) error {
	var n [chacha20poly1305.NonceSizeX]byte
	s.nonce++
	binary.BigEndian.PutUint64(n[:], s.nonce)
	out := append(n[:0:0], n[:]...)
	out = s.aead.Seal(out, n[:], plain, s.ad(bucket, key))
	return s.put(bucket, key, out)
}

// getSealed opens the value at key, or returns nil if there is none.
func (s *scratch) getSealed(bucket, key []byte) ([]byte, error) {
	v := s.b(bucket).Get(key)
	if v == nil {
		return nil, nil
	}
	return s.open(bucket, key, v)
}

// viewSealed is getSealed in a read transaction of its own, for the
// goroutine that reads the file while another writes: it sees what was
// committed.
func (s *scratch) viewSealed(bucket, key []byte) ([]byte, error) {
	var p []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucket).Get(key)
		if v == nil {
			return nil
		}
		var err error
		p, err = s.open(bucket, key, v)
		return err
	})
	return p, err
}

// has reports whether key is committed in bucket (see viewSealed).
// get returns a copy of the value of key, in a read transaction of its
// own (as has).
func (s *scratch) get(bucket, key []byte) []byte {
	var out []byte
	s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucket).Get(key); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out
}

func (s *scratch) has(bucket, key []byte) bool {
	found := false
	s.db.View(func(tx *bbolt.Tx) error { found = tx.Bucket(bucket).Get(key) != nil; return nil })
	return found
}

func (s *scratch) open(bucket, key, sealed []byte) ([]byte, error) {
	if len(sealed) < chacha20poly1305.NonceSizeX {
		return nil, errors.New("scratch file: damaged value")
	}
	p, err := s.aead.Open(nil, sealed[:chacha20poly1305.NonceSizeX], sealed[chacha20poly1305.NonceSizeX:], s.ad(bucket, key))
	if err != nil {
		return nil, errors.New("scratch file: damaged value")
	}
	return p, nil
}

func (s *scratch) ad(bucket, key []byte) []byte {
	return append(append(append(make([]byte, 0, len(bucket)+1+len(key)), bucket...), 0), key...)
}

// hash is the keyed hash that stands for a string in scratch keys,
// truncated to 128 bits. domain separates what is hashed.
func (s *scratch) hash(domain byte, parts ...[]byte) []byte {
	s.mac.Reset()
	s.mac.Write([]byte{domain})
	for _, p := range parts {
		var n [binary.MaxVarintLen64]byte
		s.mac.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		s.mac.Write(p)
	}
	return s.mac.Sum(nil)[:16]
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// removeScratch deletes scratch files a killed import left in dir. The
// caller holds the vault's lock, so none of them is in use.
func removeScratch(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, scratchPattern))
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// enc and dec are the scratch's record encoding: uvarints and
// length-prefixed byte strings.
type enc []byte

func (e enc) u(x uint64) enc { return binary.AppendUvarint(e, x) }
func (e enc) b(p []byte) enc { return append(e.u(uint64(len(p))), p...) }
func (e enc) s(x string) enc { return append(e.u(uint64(len(x))), x...) }
func (e enc) bs(ps [][]byte) enc {
	e = e.u(uint64(len(ps)))
	for _, p := range ps {
		e = e.b(p)
	}
	return e
}

type dec struct {
	p   []byte
	bad bool
}

func (d *dec) u() uint64 {
	x, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.bad, d.p = true, nil
		return 0
	}
	d.p = d.p[n:]
	return x
}

func (d *dec) b() []byte {
	n := d.u()
	if n > uint64(len(d.p)) {
		d.bad, d.p = true, nil
		return nil
	}
	out := d.p[:n:n]
	d.p = d.p[n:]
	return out
}

func (d *dec) s() string { return string(d.b()) }

func (d *dec) bs() [][]byte {
	n := d.u()
	if n > uint64(len(d.p)) {
		d.bad, d.p = true, nil
		return nil
	}
	out := make([][]byte, 0, n)
	for range n {
		out = append(out, d.b())
	}
	return out
}

func (d *dec) err() error {
	if d.bad || len(d.p) != 0 {
		return errors.New("scratch file: malformed value")
	}
	return nil
}

// hasPrefix reports whether k starts with p (k may be nil).
func hasPrefix(k, p []byte) bool { return k != nil && bytes.HasPrefix(k, p) }
