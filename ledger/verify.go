package ledger

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"runtime/debug"
	"sync"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// Report describes a successful Verify.
type Report struct {
	Size        int64       // entries in the log
	From, To    int64       // entries re-hashed and checked in this run: [From, To)
	Full        bool        // whether every entry was checked
	Checkpoints int         // stored checkpoints whose signatures and roots were checked
	Latest      *Checkpoint // the latest checkpoint (nil for an empty log)
	Marked      bool        // the verified-through marker was advanced to Latest
	// MarkerIgnored: the stored marker did not authenticate under the
	// marker key (see Config.MarkerKey), so everything was checked.
	MarkerIgnored bool
}

// chunkLog is log2 of the number of entries a verification worker handles
// at once; chunks are aligned so a worker can build their subtrees alone.
const chunkLog = 12

const chunkSize = 1 << chunkLog

// Verify checks the ledger against its signed checkpoints:
//
//   - the buckets and keys are exactly those of the format, nothing more;
//   - every stored checkpoint is signed by the ledger key, is stored under
//     its own size, and the set of retained checkpoints is the one the
//     latest checkpoint commits to;
//   - the latest checkpoint covers exactly the entries stored (no unsigned
//     tail, no truncated tail);
//   - every entry checked decrypts (sealed ledgers), is canonical, and the
//     Merkle tree recomputed from the entries has, at every retained
//     checkpoint and at the verified-through marker, the signed root; every
//     stored tree hash checked equals the recomputed one.
//
// With full false, entries and stored hashes before the verified-through
// marker (the latest checkpoint a previous Verify in a writable transaction
// accepted) are trusted: only the frontier hashes of that tree are checked
// against its signed root, and only later entries are re-hashed. A change
// to an older entry is then not seen; full mode re-checks everything.
//
// On success, if tx is writable, the marker advances to the latest
// checkpoint. On failure the error is a *VerifyError (errors.Is(err,
// ErrTampered)) naming the first problem found.
func (l *Log) Verify(tx *bbolt.Tx, full bool) (*Report, error) {
	b, err := l.open(tx)
	if err != nil {
		if errors.Is(err, errNotInit) {
			return nil, tampered("bucket", -1, "the ledger bucket is missing")
		}
		return nil, err
	}
	if err := checkLayout(b); err != nil {
		return nil, err
	}
	n, err := b.size()
	if err != nil {
		return nil, err
	}

	// Checkpoints: signatures, keys, retained set, tail.
	sizes, err := b.checkpointSizes()
	if err != nil {
		return nil, err
	}
	cps := make([]*Checkpoint, len(sizes))
	for i, s := range sizes {
		if cps[i], err = l.storedCheckpoint(b, s); err != nil {
			return nil, err
		}
		if cps[i].extraSigs != 0 {
			return nil, tampered("checkpoint", s, "stored checkpoint carries extra signature lines")
		}
	}
	var latest *Checkpoint
	if len(cps) > 0 {
		latest = cps[len(cps)-1]
		if latest.Size > n {
			return nil, &VerifyError{Index: n, What: "tail", Detail: "the log is shorter than its latest checkpoint (entries were removed)",
				Want: fmt.Sprint(latest.Size), Got: fmt.Sprint(n)}
		}
		if keptHash(sizes[:len(sizes)-1]) != latest.kept {
			return nil, &VerifyError{Index: latest.Size, What: "checkpoint set",
				Detail: "the retained checkpoints are not those the latest checkpoint commits to (one was removed or inserted)"}
		}
	}
	// An unsigned tail is reported after checking the signed part, so
	// that an entry inserted in the middle is named as such.
	end := n
	var tailErr error
	if n > 0 && (latest == nil || latest.Size < n) {
		end = 0
		if latest != nil {
			end = latest.Size
		}
		tailErr = &VerifyError{Index: n, What: "tail", Detail: "entries after the latest checkpoint are not signed (entries were added, or a checkpoint removed)",
			Want: fmt.Sprint(n), Got: fmt.Sprint(end)}
	}

	// Verified-through marker.
	mv := b.meta.Get(keyVerified)
	if mv == nil {
		return nil, tampered("verified marker", -1, "the verified marker is missing")
	}
	var marker *Checkpoint
	mv, markerOK := l.openMarker(mv)
	if len(mv) > 0 && markerOK {
		if marker, err = ParseCheckpoint(mv, l.verifier); err != nil {
			return nil, &VerifyError{Index: -1, What: "verified marker", Detail: "the verified marker is not a valid checkpoint", Err: err}
		}
		if marker.extraSigs != 0 {
			return nil, tampered("verified marker", marker.Size, "the verified marker carries extra signature lines")
		}
		if marker.Size > end {
			if tailErr != nil {
				return nil, tailErr
			}
			return nil, &VerifyError{Index: n, What: "tail", Detail: "the log is shorter than the verified marker (entries were removed)",
				Want: fmt.Sprint(marker.Size), Got: fmt.Sprint(n)}
		}
	}

	// Tree.
	var start int64
	var stack []Hash
	if !full && marker != nil {
		start = marker.Size
		if stack, err = frontier(b, start); err != nil {
			return nil, err
		}
		if got := foldStack(stack); got != marker.Root {
			return nil, &VerifyError{Index: start, What: "stored hash", Detail: "stored hashes no longer match the verified checkpoint",
				Want: marker.Root.String(), Got: got.String()}
		}
	}
	res, err := l.verifyRange(b, start, end, n, stack)
	if err != nil {
		return nil, err
	}
	if res.bad != nil {
		return nil, res.bad
	}
	if latest != nil && res.root != latest.Root {
		if res.leafMis >= 0 {
			return nil, &VerifyError{Index: res.leafMis, What: "entry", Detail: "the entry does not match its leaf hash (entry changed, replaced or reordered)",
				Want: res.leafWant.String(), Got: res.leafGot.String()}
		}
		return nil, &VerifyError{Index: latest.Size, What: "checkpoint", Detail: "the tree recomputed from the entries does not have the signed root",
			Want: latest.Root.String(), Got: res.root.String()}
	}
	if tailErr != nil {
		return nil, tailErr
	}
	if res.leafMis >= 0 {
		return nil, &VerifyError{Index: res.leafMis, What: "stored hash", Detail: "the stored leaf hash was changed",
			Want: res.leafGot.String(), Got: res.leafWant.String()}
	}
	if res.nodeMis >= 0 {
		return nil, &VerifyError{Index: res.nodeMis, What: "stored hash", Detail: fmt.Sprintf("the stored tree hash at level %d was changed", res.nodeLevel)}
	}

	// Older checkpoints and the marker: roots from the (now checked)
	// stored hashes.
	checkRoot := func(c *Checkpoint, what string) error {
		got, err := tlog.TreeHash(c.Size, hashReader{b.hashes})
		if err != nil {
			return err
		}
		if Hash(got) != c.Root {
			return &VerifyError{Index: c.Size, What: what, Detail: "signed root differs from the tree (fork: two signed checkpoints that cannot both hold)",
				Want: c.Root.String(), Got: Hash(got).String()}
		}
		return nil
	}
	for _, c := range cps {
		if err := checkRoot(c, "checkpoint"); err != nil {
			return nil, err
		}
	}
	if marker != nil {
		if err := checkRoot(marker, "verified marker"); err != nil {
			return nil, err
		}
	}

	rep := &Report{Size: n, From: start, To: n, Full: start == 0, Checkpoints: len(cps), Latest: latest, MarkerIgnored: !markerOK}
	if tx.Writable() && latest != nil && (marker == nil || !bytes.Equal(marker.Note, latest.Note)) {
		if err := b.meta.Put(keyVerified, l.sealMarker(latest.Note)); err != nil {
			return nil, fmt.Errorf("ledger: verify: saving marker: %w", err)
		}
		rep.Marked = true
	}
	return rep, nil
}

// checkLayout checks that the ledger bucket and its meta bucket hold
// exactly the keys of the format.
func checkLayout(b *buckets) error {
	c := b.root.Cursor()
	count := 0
	for k, v := c.First(); k != nil; k, v = c.Next() {
		ok := v == nil && (bytes.Equal(k, bucketMeta) || bytes.Equal(k, bucketEntries) ||
			bytes.Equal(k, bucketHashes) || bytes.Equal(k, bucketCheckpoints))
		if !ok {
			return tampered("key", -1, "the ledger bucket holds an unexpected key")
		}
		count++
	}
	if count != 4 {
		return tampered("bucket", -1, "a ledger bucket is missing")
	}
	c = b.meta.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil || !(bytes.Equal(k, keyFormat) || bytes.Equal(k, keyVerified)) {
			return tampered("key", -1, "the meta bucket holds an unexpected key")
		}
	}
	return nil
}

// frontier returns the roots of the complete subtrees that make up the
// tree of size n, left to right: the stack of the incremental builder.
func frontier(b *buckets, n int64) ([]Hash, error) {
	var stack []Hash
	r := hashReader{b.hashes}
	var lo int64
	for level := 62; level >= 0; level-- {
		if n&(1<<level) == 0 {
			continue
		}
		h, err := r.read(tlog.StoredHashIndex(level, lo>>level))
		if err != nil {
			return nil, err
		}
		stack = append(stack, Hash(h))
		lo += 1 << level
	}
	return stack, nil
}

// foldStack returns the root of the tree whose complete subtrees are
// stack, left to right.
func foldStack(stack []Hash) Hash {
	if len(stack) == 0 {
		h, _ := tlog.TreeHash(0, nil)
		return Hash(h)
	}
	h := stack[len(stack)-1]
	for i := len(stack) - 2; i >= 0; i-- {
		h = Hash(tlog.NodeHash(tlog.Hash(stack[i]), tlog.Hash(h)))
	}
	return h
}

// trailingOnes returns the number of complete subtrees entry i closes.
func trailingOnes(i int64) int { return bits.TrailingZeros64(^uint64(i)) }

type rangeResult struct {
	root               Hash
	bad                *VerifyError // first entry that fails to open or decode
	leafMis            int64        // first entry whose stored leaf hash differs, or -1
	leafWant, leafGot  Hash         // stored and recomputed leaf hash of leafMis
	nodeMis, nodeLevel int64        // first entry with a differing stored interior hash, or -1
}

type verifyJob struct {
	start   int64
	fault   error    // reading the job's values faulted (see guarded)
	ents    [][]byte // stored entry values (valid for the transaction)
	hs      [][]byte // stored hash values
	aligned bool

	leaves []Hash // !aligned: leaf hashes
	root   Hash   // aligned: root of the chunk's subtree

	bad                *VerifyError
	leafMis            int64
	leafWant, leafGot  Hash
	nodeMis, nodeLevel int64
	done               chan struct{}
}

// verifyRange re-hashes entries [start, end) in parallel, continuing the
// incremental tree builder from stack, and compares every stored hash. n is
// the number of stored entries (end < n when the tail is unsigned).
func (l *Log) verifyRange(b *buckets, start, end, n int64, stack []Hash) (*rangeResult, error) {
	res := &rangeResult{leafMis: -1, nodeMis: -1}
	workers := runtime.GOMAXPROCS(0)
	work := make(chan *verifyJob, 2*workers)
	order := make(chan *verifyJob, 2*workers)
	var prodErr error
	go func() {
		if err := guarded(func() { prodErr = produce(b, start, end, n, work, order) }); err != nil {
			prodErr = err
		}
		close(work)
		close(order)
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := leafBuf(512)
			for j := range work {
				j.fault = guarded(func() { buf = l.runJob(j, buf) })
				close(j.done)
			}
		}()
	}
	var stackErr error
	for j := range order {
		<-j.done
		if j.fault != nil && stackErr == nil {
			stackErr = j.fault
		}
		if stackErr != nil {
			continue // drain
		}
		if j.bad != nil && res.bad == nil {
			res.bad = j.bad
		}
		if j.leafMis >= 0 && res.leafMis < 0 {
			res.leafMis, res.leafWant, res.leafGot = j.leafMis, j.leafWant, j.leafGot
		}
		if j.nodeMis >= 0 && res.nodeMis < 0 {
			res.nodeMis, res.nodeLevel = j.nodeMis, j.nodeLevel
		}
		push := func(i int64, h Hash, fromLevel int, hv []byte) {
			for lvl := fromLevel + 1; lvl <= trailingOnes(i); lvl++ {
				if len(stack) == 0 {
					stackErr = errors.New("ledger: verify: tree builder underflow")
					return
				}
				h = Hash(tlog.NodeHash(tlog.Hash(stack[len(stack)-1]), tlog.Hash(h)))
				stack = stack[:len(stack)-1]
				if !bytes.Equal(hv[lvl*HashSize:(lvl+1)*HashSize], h[:]) && res.nodeMis < 0 {
					res.nodeMis, res.nodeLevel = i, int64(lvl)
				}
			}
			stack = append(stack, h)
		}
		if j.aligned {
			push(j.start+chunkSize-1, j.root, chunkLog, j.hs[chunkSize-1])
		} else {
			for k, h := range j.leaves {
				push(j.start+int64(k), h, 0, j.hs[k])
			}
		}
	}
	wg.Wait()
	if prodErr != nil {
		return nil, prodErr
	}
	if stackErr != nil {
		return nil, stackErr
	}
	res.root = foldStack(stack)
	return res, nil
}

// guarded runs f, which reads the ledger's values where bbolt maps them,
// on a goroutine of the verify's own: a fault or a panic while it reads a
// damaged file (a value pointing past the map) is ErrTampered, not the end
// of the whole process, which the caller's guard (on its own goroutine)
// could not catch.
func guarded(f func()) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = tampered("file", -1, fmt.Sprintf("reading the ledger failed (%v): the database file is damaged", r))
		}
	}()
	f()
	return nil
}

// produce walks the entries and hashes buckets over [start, end) in step,
// checks their keys and value lengths, and hands out chunk-aligned jobs.
func produce(b *buckets, start, end, n int64, work, order chan<- *verifyJob) error {
	ec, hc := b.entries.Cursor(), b.hashes.Cursor()
	ek, ev := ec.Seek(key(start))
	hk, hv := hc.Seek(key(start))
	var j *verifyJob
	flush := func() {
		if j != nil && len(j.ents) > 0 {
			j.aligned = j.start%chunkSize == 0 && len(j.ents) == chunkSize
			order <- j
			work <- j
		}
		j = nil
	}
	var want [8]byte
	for i := start; i < end; i++ {
		binary.BigEndian.PutUint64(want[:], uint64(i))
		if !bytes.Equal(ek, want[:]) || ev == nil {
			flush()
			return &VerifyError{Index: i, What: "entry", Detail: "the entry is missing, or an entry was inserted before it"}
		}
		if !bytes.Equal(hk, want[:]) {
			flush()
			return &VerifyError{Index: i, What: "stored hash", Detail: "the stored hashes are missing, or a key was inserted before them"}
		}
		if len(hv) != storedLen(i) {
			flush()
			return &VerifyError{Index: i, What: "stored hash", Detail: "the stored hashes have the wrong length",
				Want: fmt.Sprint(storedLen(i)), Got: fmt.Sprint(len(hv))}
		}
		if j == nil {
			j = &verifyJob{start: i, leafMis: -1, nodeMis: -1, done: make(chan struct{})}
			m := min(chunkSize-int(i%chunkSize), int(end-i))
			j.ents = make([][]byte, 0, m)
			j.hs = make([][]byte, 0, m)
		}
		j.ents = append(j.ents, ev)
		j.hs = append(j.hs, hv)
		if (i+1)%chunkSize == 0 {
			flush()
		}
		ek, ev = ec.Next()
		hk, hv = hc.Next()
	}
	flush()
	if end < n {
		return nil // the unsigned tail is reported by the caller
	}
	if ek != nil {
		return &VerifyError{Index: n, What: "key", Detail: "the entries bucket holds a key past the last entry"}
	}
	if hk != nil {
		return &VerifyError{Index: n, What: "stored hash", Detail: "the hashes bucket holds a key past the last entry"}
	}
	if start == 0 {
		if k, _ := b.hashes.Cursor().First(); k != nil && !bytes.Equal(k, key(0)) {
			return &VerifyError{Index: 0, What: "stored hash", Detail: "the hashes bucket holds a key before the first entry"}
		}
		if k, _ := b.entries.Cursor().First(); k != nil && !bytes.Equal(k, key(0)) {
			return &VerifyError{Index: 0, What: "entry", Detail: "the entries bucket holds a key before the first entry"}
		}
	}
	return nil
}

// runJob opens, checks and hashes the entries of one job; buf is scratch
// space holding the leaf prefix, returned for reuse.
func (l *Log) runJob(j *verifyJob, buf []byte) []byte {
	var stack [chunkLog + 1]Hash
	sp := 0
	if !j.aligned {
		j.leaves = make([]Hash, len(j.ents))
	}
	for k, v := range j.ents {
		i := j.start + int64(k)
		var leaf Hash
		plain, err := open(l.aead, i, v, buf[:leafPrefixLen])
		switch {
		case err != nil:
			if j.bad == nil {
				j.bad = &VerifyError{Index: i, What: "entry", Detail: errOpen.Error()}
			}
		case len(plain) < leafPrefixLen+SaltSize:
			if j.bad == nil {
				j.bad = &VerifyError{Index: i, What: "entry", Detail: "the stored entry is truncated"}
			}
		default:
			if err := checkEntry(plain[leafPrefixLen+SaltSize:]); err != nil && j.bad == nil {
				j.bad = &VerifyError{Index: i, What: "entry", Detail: "the stored entry is malformed", Err: err}
			}
			leaf = sha256.Sum256(plain)
		}
		if cap(plain) > cap(buf) {
			buf = plain[:leafPrefixLen]
		}
		hv := j.hs[k]
		if !bytes.Equal(hv[:HashSize], leaf[:]) && j.leafMis < 0 {
			j.leafMis = i
			copy(j.leafWant[:], hv)
			j.leafGot = leaf
		}
		if !j.aligned {
			j.leaves[k] = leaf
			continue
		}
		h := leaf
		top := min(trailingOnes(i), chunkLog)
		for lvl := 1; lvl <= top; lvl++ {
			sp--
			h = Hash(tlog.NodeHash(tlog.Hash(stack[sp]), tlog.Hash(h)))
			if !bytes.Equal(hv[lvl*HashSize:(lvl+1)*HashSize], h[:]) && j.nodeMis < 0 {
				j.nodeMis, j.nodeLevel = i, int64(lvl)
			}
		}
		stack[sp] = h
		sp++
	}
	if j.aligned {
		j.root = stack[0]
	}
	return buf
}

const markerDomain = "medvault/ledger/verified/v1\x00"

// sealMarker returns the stored form of the verified marker: the
// checkpoint's note, followed by its HMAC when the log has a marker key.
func (l *Log) sealMarker(note []byte) []byte {
	out := bytes.Clone(note)
	if l.markKey == nil {
		return out
	}
	return append(out, l.markerMAC(note)...)
}

// openMarker returns the note of a stored marker and whether it may be
// trusted: without a marker key any stored value is (ParseCheckpoint then
// checks the signature); with one, only a value whose HMAC is valid. An
// empty marker (none yet) is returned as it is.
func (l *Log) openMarker(stored []byte) ([]byte, bool) {
	if l.markKey == nil || len(stored) == 0 {
		return stored, true
	}
	if len(stored) <= sha256.Size {
		return nil, false
	}
	note, mac := stored[:len(stored)-sha256.Size], stored[len(stored)-sha256.Size:]
	if !hmac.Equal(mac, l.markerMAC(note)) {
		return nil, false
	}
	return note, true
}

func (l *Log) markerMAC(note []byte) []byte {
	m := hmac.New(sha256.New, l.markKey)
	m.Write([]byte(markerDomain))
	m.Write(note)
	return m.Sum(nil)
}
