package ledger

import (
	"bytes"
	"crypto"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// bbolt layout (see FORMAT.md): one top-level bucket holding four nested
// buckets, so the ledger never collides with its host's buckets.
var (
	bucketLedger      = []byte("ledger")
	bucketMeta        = []byte("meta")
	bucketEntries     = []byte("entries")
	bucketHashes      = []byte("hashes")
	bucketCheckpoints = []byte("checkpoints")

	keyFormat   = []byte("format")
	keyVerified = []byte("verified")
)

const (
	formatVersion = 1
	flagSealed    = 1 << 0
	minNonceSize  = 12
)

// Config configures a Log.
type Config struct {
	// Origin names the log, e.g. "medvault.ledger/<peer ID>". It is the
	// first line of every checkpoint and the name of the signing key:
	// 1..255 bytes of printable ASCII, no space, no '+'.
	Origin string
	// Signer signs checkpoints with the owner's Ed25519 key
	// (an ed25519.PrivateKey works). Nil makes a read-only Log:
	// Checkpoint fails, everything else works.
	Signer crypto.Signer
	// Public is the owner's Ed25519 public key. Required when Signer is
	// nil; when both are set they must match.
	Public ed25519.PublicKey
	// AEAD seals stored entries (use chacha20poly1305.NewX: random
	// 24-byte nonces). It must be safe for concurrent use, as the
	// standard AEADs are. Nil stores entries in the clear, for tests and
	// for benchmarks of the bare tree; a ledger is created sealed or not
	// and keeps that property.
	AEAD cipher.AEAD
	// Now returns the time stamped on entries appended with a zero Time.
	// Defaults to time.Now.
	Now func() time.Time
	// MarkerKey, if set, authenticates the verified marker: it is stored
	// with an HMAC-SHA256 under this key, and a marker without a valid one
	// (a checkpoint copied into it by someone without the key, or one an
	// older build wrote) is ignored, so that Verify checks everything.
	// Without it any checkpoint signed by the owner is accepted as the
	// marker, and whoever can write the file can make incremental
	// verification skip every entry.
	MarkerKey []byte
}

// Log is a tamper-evident access log stored in bbolt buckets. It holds only
// configuration: every method works inside a caller-supplied transaction,
// so a ledger entry commits or rolls back together with the change it
// records. A Log is safe for concurrent use; bbolt transactions are not.
type Log struct {
	origin   string
	signer   *noteSigner
	verifier *Verifier
	aead     cipher.AEAD
	now      func() time.Time
	markKey  []byte

	mu sync.Mutex
	st *appendState // of the last write transaction that appended
}

// New checks cfg and returns a Log.
func New(cfg Config) (*Log, error) {
	if err := checkOrigin(cfg.Origin); err != nil {
		return nil, err
	}
	pub := cfg.Public
	if cfg.Signer != nil {
		sp, ok := cfg.Signer.Public().(ed25519.PublicKey)
		if !ok || len(sp) != ed25519.PublicKeySize {
			return nil, errors.New("ledger: signer does not hold an Ed25519 key")
		}
		if pub != nil && !sp.Equal(pub) {
			return nil, errors.New("ledger: signer and public key do not match")
		}
		pub = sp
	}
	if pub == nil {
		return nil, errors.New("ledger: need a signer or a public key")
	}
	v, err := NewVerifier(cfg.Origin, pub)
	if err != nil {
		return nil, err
	}
	l := &Log{origin: cfg.Origin, verifier: v, aead: cfg.AEAD, now: cfg.Now, markKey: bytes.Clone(cfg.MarkerKey)}
	if cfg.Signer != nil {
		l.signer = &noteSigner{name: cfg.Origin, hash: v.nv.KeyHash(), key: cfg.Signer}
	}
	if l.aead != nil && l.aead.NonceSize() < minNonceSize {
		return nil, fmt.Errorf("ledger: AEAD nonce of %d bytes is too short for random nonces", l.aead.NonceSize())
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

// Verifier returns the Verifier for this log's checkpoints.
func (l *Log) Verifier() *Verifier { return l.verifier }

// Origin returns the log's origin.
func (l *Log) Origin() string { return l.origin }

type buckets struct {
	root, meta, entries, hashes, checkpoints *bbolt.Bucket
}

func (l *Log) formatValue() []byte {
	f := byte(0)
	if l.aead != nil {
		f |= flagSealed
	}
	return []byte{formatVersion, f}
}

// Init creates the ledger's buckets if they do not exist. It is
// idempotent; on an existing ledger it checks that the stored format
// matches the Log's configuration (sealed or not).
func (l *Log) Init(tx *bbolt.Tx) error {
	if tx.Bucket(bucketLedger) != nil {
		_, err := l.open(tx)
		return err
	}
	root, err := tx.CreateBucket(bucketLedger)
	if err != nil {
		return fmt.Errorf("ledger: init: %w", err)
	}
	var bs [4]*bbolt.Bucket
	for i, name := range [][]byte{bucketMeta, bucketEntries, bucketHashes, bucketCheckpoints} {
		if bs[i], err = root.CreateBucket(name); err != nil {
			return fmt.Errorf("ledger: init: %w", err)
		}
	}
	if err := bs[0].Put(keyFormat, l.formatValue()); err != nil {
		return fmt.Errorf("ledger: init: %w", err)
	}
	if err := bs[0].Put(keyVerified, []byte{}); err != nil {
		return fmt.Errorf("ledger: init: %w", err)
	}
	return nil
}

var errNotInit = fmt.Errorf("ledger: not initialised: %w", ErrNotFound)

// open returns the ledger's buckets after checking the stored format.
func (l *Log) open(tx *bbolt.Tx) (*buckets, error) {
	root := tx.Bucket(bucketLedger)
	if root == nil {
		return nil, errNotInit
	}
	b := &buckets{
		root:        root,
		meta:        root.Bucket(bucketMeta),
		entries:     root.Bucket(bucketEntries),
		hashes:      root.Bucket(bucketHashes),
		checkpoints: root.Bucket(bucketCheckpoints),
	}
	if b.meta == nil || b.entries == nil || b.hashes == nil || b.checkpoints == nil {
		return nil, tampered("bucket", -1, "a ledger bucket is missing")
	}
	f := b.meta.Get(keyFormat)
	if f == nil {
		return nil, tampered("format", -1, "format record is missing")
	}
	if len(f) != 2 || f[0] != formatVersion || f[1]&^flagSealed != 0 {
		return nil, tampered("format", -1, "unknown format version or flags")
	}
	if !bytes.Equal(f, l.formatValue()) {
		if l.aead == nil {
			return nil, tampered("format", -1, "ledger is sealed but no AEAD is configured")
		}
		return nil, tampered("format", -1, "ledger is not sealed but an AEAD is configured")
	}
	return b, nil
}

func key(i int64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(i))
	return k
}

// keyIndex decodes a key of the entries, hashes or checkpoints bucket.
func keyIndex(k []byte) (int64, bool) {
	if len(k) != 8 {
		return 0, false
	}
	i := int64(binary.BigEndian.Uint64(k))
	return i, i >= 0
}

// storedLen is the length of the hashes value of entry i: its leaf hash
// and the root of every complete subtree that entry i closes.
func storedLen(i int64) int { return HashSize * (1 + bits.TrailingZeros64(^uint64(i))) }

// size returns the number of entries, from the last key.
func (b *buckets) size() (int64, error) {
	k, _ := b.entries.Cursor().Last()
	if k == nil {
		return 0, nil
	}
	i, ok := keyIndex(k)
	if !ok {
		return 0, tampered("key", -1, "entries bucket holds a malformed key")
	}
	return i + 1, nil
}

// hashReader reads tlog stored hashes from the hashes bucket, where the
// hash with tlog coordinates (level, n) is at offset 32*level of the value
// of entry (n+1)<<level - 1.
type hashReader struct{ b *bbolt.Bucket }

func (r hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, err := r.read(x)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

func (r hashReader) read(storedIndex int64) (tlog.Hash, error) {
	level, n := tlog.SplitStoredHashIndex(storedIndex)
	rec := (n+1)<<level - 1
	v := r.b.Get(key(rec))
	if len(v) != storedLen(rec) || len(v) < (level+1)*HashSize {
		return tlog.Hash{}, tampered("stored hash", rec, "hashes record is missing or has the wrong length")
	}
	var h tlog.Hash
	copy(h[:], v[level*HashSize:])
	return h, nil
}

// Size returns the number of entries in the log.
func (l *Log) Size(tx *bbolt.Tx) (int64, error) {
	b, err := l.open(tx)
	if err != nil {
		return 0, err
	}
	return b.size()
}

// Append adds e to the log and returns its index. tx must be writable; the
// entry is stored in tx, so it commits or rolls back with whatever else tx
// does. A zero e.Time is replaced by Config.Now(); e itself is not
// modified. Many appends per transaction are cheap (the Log remembers the
// buckets and the right edge of the tree for the transaction until
// Checkpoint); call Checkpoint once before committing.
func (l *Log) Append(tx *bbolt.Tx, e *Entry) (int64, error) {
	if !tx.Writable() {
		return 0, errors.New("ledger: append: read-only transaction")
	}
	ec := *e
	if ec.Time.IsZero() {
		ec.Time = l.now()
	}
	elen, err := ec.encodedLen()
	if err != nil {
		return 0, fmt.Errorf("ledger: append: %w", err)
	}
	st, err := l.appendState(tx)
	if err != nil {
		return 0, err
	}
	n := st.n
	salt, err := newSalt()
	if err != nil {
		return 0, err
	}
	buf := leafBuf(SaltSize + elen)
	buf = append(buf, salt[:]...)
	buf = ec.appendBinary(buf)
	leaf := Hash(sha256.Sum256(buf))

	var nonce []byte
	if l.aead != nil {
		nonce = make([]byte, l.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return 0, fmt.Errorf("ledger: append: reading random nonce: %w", err)
		}
	}
	blob := seal(l.aead, n, buf[leafPrefixLen:], nonce)

	// The stored hashes of entry n: its leaf hash, then the root of each
	// complete subtree it closes, built from the right edge of the tree.
	t := trailingOnes(n)
	if t > len(st.stack) {
		l.dropAppendState(tx)
		return 0, tampered("stored hash", n, "the right edge of the tree is inconsistent with the log size")
	}
	hv := make([]byte, 0, HashSize*(1+t))
	hv = append(hv, leaf[:]...)
	h := leaf
	stack := st.stack
	for range t {
		h = Hash(tlog.NodeHash(tlog.Hash(stack[len(stack)-1]), tlog.Hash(h)))
		stack = stack[:len(stack)-1]
		hv = append(hv, h[:]...)
	}
	k := key(n)
	if err := st.b.entries.Put(k, blob); err != nil {
		l.dropAppendState(tx)
		return 0, fmt.Errorf("ledger: append: %w", err)
	}
	if err := st.b.hashes.Put(k, hv); err != nil {
		l.dropAppendState(tx)
		return 0, fmt.Errorf("ledger: append: %w", err)
	}
	st.stack = append(stack, h)
	st.n = n + 1
	return n, nil
}

// appendState is what Append remembers within one write transaction: the
// buckets, the log size, and the right edge of the tree (the roots of the
// complete subtrees of the tree of size n, left to right). It keeps tx
// reachable, so a later transaction can never have the same address.
type appendState struct {
	tx    *bbolt.Tx
	b     *buckets
	n     int64
	stack []Hash
}

func (l *Log) appendState(tx *bbolt.Tx) (*appendState, error) {
	l.mu.Lock()
	st := l.st
	l.mu.Unlock()
	if st != nil && st.tx == tx {
		if n, err := st.b.size(); err == nil && n == st.n {
			return st, nil
		}
	}
	b, err := l.open(tx)
	if err != nil {
		return nil, err
	}
	n, err := b.size()
	if err != nil {
		return nil, err
	}
	stack, err := frontier(b, n)
	if err != nil {
		return nil, err
	}
	st = &appendState{tx: tx, b: b, n: n, stack: stack}
	l.mu.Lock()
	l.st = st
	l.mu.Unlock()
	return st, nil
}

// dropAppendState forgets the state of tx (at Checkpoint, or after a
// failed write).
func (l *Log) dropAppendState(tx *bbolt.Tx) {
	l.mu.Lock()
	if l.st != nil && l.st.tx == tx {
		l.st = nil
	}
	l.mu.Unlock()
}

// checkpointSizes returns the sizes of the stored checkpoints, ascending.
func (b *buckets) checkpointSizes() ([]int64, error) {
	var sizes []int64
	c := b.checkpoints.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		s, ok := keyIndex(k)
		if !ok || s == 0 || v == nil {
			return nil, tampered("key", -1, "checkpoints bucket holds a malformed key")
		}
		sizes = append(sizes, s)
	}
	return sizes, nil
}

// Checkpoint signs the current tree size, stores the checkpoint, thins
// older checkpoints (see FORMAT.md) and returns the new checkpoint. Call
// it once at the end of every write transaction that appended entries.
// If the latest checkpoint already covers every entry it returns that one
// and signs nothing. It fails with ErrNotFound on an empty log.
func (l *Log) Checkpoint(tx *bbolt.Tx) (*Checkpoint, error) {
	if l.signer == nil {
		return nil, errors.New("ledger: checkpoint: no signing key configured")
	}
	if !tx.Writable() {
		return nil, errors.New("ledger: checkpoint: read-only transaction")
	}
	l.mu.Lock()
	st := l.st
	l.mu.Unlock()
	l.dropAppendState(tx)
	b, err := l.open(tx)
	if err != nil {
		return nil, err
	}
	n, err := b.size()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("ledger: checkpoint: log is empty: %w", ErrNotFound)
	}
	sizes, err := b.checkpointSizes()
	if err != nil {
		return nil, err
	}
	if len(sizes) > 0 {
		last := sizes[len(sizes)-1]
		if last == n {
			return l.storedCheckpoint(b, n)
		}
		if last > n {
			return nil, tampered("tail", n, "a checkpoint covers more entries than the log holds")
		}
	}
	var root Hash
	if st != nil && st.tx == tx && st.n == n {
		root = foldStack(st.stack)
	} else {
		r, err := tlog.TreeHash(n, hashReader{b.hashes})
		if err != nil {
			return nil, fmt.Errorf("ledger: checkpoint: %w", err)
		}
		root = Hash(r)
	}
	keep := thinCheckpoints(append(sizes, n))
	kept := keep[:len(keep)-1]
	for _, s := range sizes {
		if _, found := slicesBinarySearch(kept, s); !found {
			if err := b.checkpoints.Delete(key(s)); err != nil {
				return nil, fmt.Errorf("ledger: checkpoint: %w", err)
			}
		}
	}
	cp, err := signCheckpoint(l.signer, n, root, keptHash(kept))
	if err != nil {
		return nil, err
	}
	if err := b.checkpoints.Put(key(n), cp.Note); err != nil {
		return nil, fmt.Errorf("ledger: checkpoint: %w", err)
	}
	return cp.clone(), nil
}

func slicesBinarySearch(s []int64, x int64) (int, bool) {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(s) && s[lo] == x
}

// storedCheckpoint reads, verifies and returns the checkpoint of size s.
func (l *Log) storedCheckpoint(b *buckets, s int64) (*Checkpoint, error) {
	v := b.checkpoints.Get(key(s))
	if v == nil {
		return nil, fmt.Errorf("ledger: no checkpoint of size %d: %w", s, ErrNotFound)
	}
	cp, err := ParseCheckpoint(v, l.verifier)
	if err != nil {
		return nil, &VerifyError{Index: s, What: "checkpoint", Detail: "stored checkpoint does not verify", Err: err}
	}
	if cp.Size != s {
		return nil, &VerifyError{Index: s, What: "checkpoint", Detail: "stored under the wrong size",
			Want: fmt.Sprint(s), Got: fmt.Sprint(cp.Size)}
	}
	return cp, nil
}

// Latest returns the most recent checkpoint, its signature checked. It
// fails with ErrNotFound if there is none.
func (l *Log) Latest(tx *bbolt.Tx) (*Checkpoint, error) {
	b, err := l.open(tx)
	if err != nil {
		return nil, err
	}
	k, _ := b.checkpoints.Cursor().Last()
	if k == nil {
		return nil, fmt.Errorf("ledger: no checkpoint: %w", ErrNotFound)
	}
	s, ok := keyIndex(k)
	if !ok {
		return nil, tampered("key", -1, "checkpoints bucket holds a malformed key")
	}
	return l.storedCheckpoint(b, s)
}

// readPlain returns salt || entry of entry i, appended to dst.
func (l *Log) readPlain(b *buckets, i int64, dst []byte) ([]byte, error) {
	v := b.entries.Get(key(i))
	if v == nil {
		return dst, fmt.Errorf("ledger: entry %d: %w", i, ErrNotFound)
	}
	return l.openBlob(i, v, dst)
}

func (l *Log) openBlob(i int64, v, dst []byte) ([]byte, error) {
	out, err := open(l.aead, i, v, dst)
	if err != nil {
		return dst, &VerifyError{Index: i, What: "entry", Detail: errOpen.Error()}
	}
	if len(out)-len(dst) < SaltSize {
		return dst, &VerifyError{Index: i, What: "entry", Detail: "stored entry is truncated"}
	}
	return out, nil
}

// Leaf returns entry i with its salt: what an inclusion proof for i is
// about. The result shares no memory with the database.
func (l *Log) Leaf(tx *bbolt.Tx, i int64) (*Leaf, error) {
	if i < 0 {
		return nil, fmt.Errorf("ledger: entry %d: %w", i, ErrNotFound)
	}
	b, err := l.open(tx)
	if err != nil {
		return nil, err
	}
	plain, err := l.readPlain(b, i, nil)
	if err != nil {
		return nil, err
	}
	var lf Leaf
	if err := lf.UnmarshalBinary(plain); err != nil {
		return nil, &VerifyError{Index: i, What: "entry", Detail: "stored entry is malformed", Err: err}
	}
	return &lf, nil
}

// Entry returns a decrypted copy of entry i. It fails with ErrNotFound if
// i is out of range, and with ErrTampered if the stored entry does not
// authenticate or decode.
func (l *Log) Entry(tx *bbolt.Tx, i int64) (*Entry, error) {
	lf, err := l.Leaf(tx, i)
	if err != nil {
		return nil, err
	}
	return &lf.Entry, nil
}

// Scan calls fn for each entry from index from to the end, in order, with
// a fresh copy of the entry (fn may keep it). It stops at the first error
// from fn and returns it. Scan checks that each entry decrypts and decodes
// but not the Merkle tree: use Verify for that.
func (l *Log) Scan(tx *bbolt.Tx, from int64, fn func(i int64, e *Entry) error) error {
	if from < 0 {
		return fmt.Errorf("ledger: scan from %d: %w", from, ErrNotFound)
	}
	b, err := l.open(tx)
	if err != nil {
		return err
	}
	c := b.entries.Cursor()
	var buf []byte
	want := from
	for k, v := c.Seek(key(from)); k != nil; k, v = c.Next() {
		i, ok := keyIndex(k)
		if !ok || i != want {
			return tampered("entry", want, "entries are not contiguous")
		}
		want++
		buf, err = l.openBlob(i, v, buf[:0])
		if err != nil {
			return err
		}
		var e Entry
		if err := e.UnmarshalBinary(buf[SaltSize:]); err != nil {
			return &VerifyError{Index: i, What: "entry", Detail: "stored entry is malformed", Err: err}
		}
		if err := fn(i, &e); err != nil {
			return err
		}
	}
	return nil
}

// InclusionProof returns the proof that entry index is in the tree of
// the given size (usually the Size of the checkpoint handed over with it).
func (l *Log) InclusionProof(tx *bbolt.Tx, index, size int64) (Proof, error) {
	b, err := l.open(tx)
	if err != nil {
		return nil, err
	}
	n, err := b.size()
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= size || size > n {
		return nil, fmt.Errorf("ledger: inclusion proof of entry %d in size %d (log has %d): %w", index, size, n, ErrNotFound)
	}
	p, err := tlog.ProveRecord(size, index, hashReader{b.hashes})
	if err != nil {
		return nil, fmt.Errorf("ledger: inclusion proof: %w", err)
	}
	return proofFrom(p), nil
}

// ConsistencyProof returns the proof that the tree of size newSize extends
// the tree of size oldSize (1 ≤ oldSize ≤ newSize ≤ Size).
func (l *Log) ConsistencyProof(tx *bbolt.Tx, oldSize, newSize int64) (Proof, error) {
	b, err := l.open(tx)
	if err != nil {
		return nil, err
	}
	n, err := b.size()
	if err != nil {
		return nil, err
	}
	if oldSize < 1 || oldSize > newSize || newSize > n {
		return nil, fmt.Errorf("ledger: consistency proof from size %d to %d (log has %d): %w", oldSize, newSize, n, ErrNotFound)
	}
	p, err := tlog.ProveTree(newSize, oldSize, hashReader{b.hashes})
	if err != nil {
		return nil, fmt.Errorf("ledger: consistency proof: %w", err)
	}
	return proofFrom(p), nil
}
