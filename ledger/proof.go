package ledger

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// MaxProofHashes bounds the hashes in a Proof: enough for any tree of up
// to 2^63 entries.
const MaxProofHashes = 64

// Proof is an RFC 6962 inclusion proof (audit path) or consistency proof,
// as produced by golang.org/x/mod/sumdb/tlog. Its binary encoding is the
// hashes concatenated, nothing else: a proof for a tree of n entries takes
// 32 bytes per hash.
type Proof []Hash

// MarshalBinary returns the concatenated hashes. It fails if p is longer
// than MaxProofHashes.
func (p Proof) MarshalBinary() ([]byte, error) {
	if len(p) > MaxProofHashes {
		return nil, fmt.Errorf("ledger: proof has %d hashes, more than %d: %w", len(p), MaxProofHashes, ErrMalformed)
	}
	b := make([]byte, 0, len(p)*HashSize)
	for _, h := range p {
		b = append(b, h[:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes concatenated hashes: the length must be a
// multiple of 32 and at most MaxProofHashes hashes.
func (p *Proof) UnmarshalBinary(data []byte) error {
	if len(data)%HashSize != 0 || len(data) > MaxProofHashes*HashSize {
		return fmt.Errorf("ledger: proof of %d bytes: %w", len(data), ErrMalformed)
	}
	q := make(Proof, len(data)/HashSize)
	for i := range q {
		copy(q[i][:], data[i*HashSize:])
	}
	*p = q
	return nil
}

func (p Proof) tlog() []tlog.Hash {
	t := make([]tlog.Hash, len(p))
	for i, h := range p {
		t[i] = tlog.Hash(h)
	}
	return t
}

func proofFrom(t []tlog.Hash) Proof {
	p := make(Proof, len(t))
	for i, h := range t {
		p[i] = Hash(h)
	}
	return p
}

// VerifyInclusion checks that p proves that the tree of checkpoint c holds
// the leaf with hash leaf at index. The caller must have obtained c from
// ParseCheckpoint (which checks its signature). leaf is usually
// Leaf.Hash() of the leaf handed over with the proof.
func VerifyInclusion(c *Checkpoint, index int64, leaf Hash, p Proof) error {
	if c == nil || index < 0 || index >= c.Size {
		return fmt.Errorf("ledger: inclusion proof: index outside the checkpoint: %w", ErrBadProof)
	}
	if len(p) > MaxProofHashes {
		return fmt.Errorf("ledger: inclusion proof: too long: %w", ErrBadProof)
	}
	if err := tlog.CheckRecord(tlog.RecordProof(p.tlog()), c.Size, tlog.Hash(c.Root), index, tlog.Hash(leaf)); err != nil {
		return fmt.Errorf("ledger: inclusion proof of entry %d in tree of size %d: %w", index, c.Size, ErrBadProof)
	}
	return nil
}

// VerifyConsistency checks that p proves that the tree of checkpoint
// newer extends the tree of checkpoint older (same origin, older.Size ≤
// newer.Size). Both checkpoints must come from ParseCheckpoint.
func VerifyConsistency(older, newer *Checkpoint, p Proof) error {
	if older == nil || newer == nil {
		return fmt.Errorf("ledger: consistency proof: missing checkpoint: %w", ErrBadProof)
	}
	if older.Origin != newer.Origin {
		return fmt.Errorf("ledger: consistency proof: checkpoints of different logs: %w", ErrBadProof)
	}
	if older.Size > newer.Size {
		return fmt.Errorf("ledger: consistency proof: older checkpoint is larger (%d > %d): %w", older.Size, newer.Size, ErrBadProof)
	}
	if len(p) > MaxProofHashes {
		return fmt.Errorf("ledger: consistency proof: too long: %w", ErrBadProof)
	}
	if err := tlog.CheckTree(tlog.TreeProof(p.tlog()), newer.Size, tlog.Hash(newer.Root), older.Size, tlog.Hash(older.Root)); err != nil {
		return fmt.Errorf("ledger: consistency proof from size %d to %d: %w", older.Size, newer.Size, ErrBadProof)
	}
	return nil
}

// runForkProof runs a consistency proof in "full" form — the tlog proof
// for old size n in a tree of size hi, with the hash of the old tree
// prepended when n is a power of two (tlog omits it then) — and returns
// the old and new roots it implies. Unlike tlog.CheckTree it takes nothing
// from the old checkpoint, so a proof that yields the newer root but a
// different older root shows that the two trees are not consistent.
func runForkProof(p Proof, lo, hi, n int64) (oldRoot, newRoot Hash, err error) {
	if !(lo < n && n <= hi) {
		return Hash{}, Hash{}, ErrBadProof
	}
	if n == hi {
		if len(p) != 1 {
			return Hash{}, Hash{}, ErrBadProof
		}
		return p[0], p[0], nil
	}
	if len(p) == 0 {
		return Hash{}, Hash{}, ErrBadProof
	}
	k := maxPow2Below(hi - lo)
	last := tlog.Hash(p[len(p)-1])
	if n <= lo+k {
		o, t, err := runForkProof(p[:len(p)-1], lo, lo+k, n)
		if err != nil {
			return Hash{}, Hash{}, err
		}
		return o, Hash(tlog.NodeHash(tlog.Hash(t), last)), nil
	}
	o, t, err := runForkProof(p[:len(p)-1], lo+k, hi, n)
	if err != nil {
		return Hash{}, Hash{}, err
	}
	return Hash(tlog.NodeHash(last, tlog.Hash(o))), Hash(tlog.NodeHash(last, tlog.Hash(t))), nil
}

// maxPow2Below returns the largest power of two strictly less than n (n ≥ 2).
func maxPow2Below(n int64) int64 {
	k := int64(1)
	for k<<1 < n {
		k <<= 1
	}
	return k
}

func isPow2(n int64) bool { return n > 0 && n&(n-1) == 0 }
