package ledger

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

const forkVersion = 1

// ForkEvidence is an offline-checkable proof that the holder of a ledger
// key signed two checkpoints that cannot both be true: two views of the
// log that no single append-only log could have produced.
//
// A and B are signed checkpoint notes, verbatim, with size(A) ≤ size(B).
// If the sizes are equal, Proof is empty and the roots differ. Otherwise
// Proof is a consistency proof from size(A) to size(B) computed in B's
// tree, in full form: the hash of the size(A) subtree is prepended when
// size(A) is a power of two (plain RFC 6962 proofs omit it). The proof
// recomputes B's root, and with it a root for size(A) that differs from
// A's: by collision resistance of SHA-256, B's tree does not extend A's.
type ForkEvidence struct {
	A, B  []byte
	Proof Proof
}

// Check returns nil if f proves a fork of the log v verifies: both notes
// are signed by v's key for v's origin and are provably inconsistent. It
// fails with ErrBadSignature or ErrMalformed for bad notes and with
// ErrBadProof if the evidence does not prove a fork.
func (f *ForkEvidence) Check(v *Verifier) error {
	a, err := ParseCheckpoint(f.A, v)
	if err != nil {
		return fmt.Errorf("ledger: fork evidence: first checkpoint: %w", err)
	}
	b, err := ParseCheckpoint(f.B, v)
	if err != nil {
		return fmt.Errorf("ledger: fork evidence: second checkpoint: %w", err)
	}
	if a.Size > b.Size {
		return fmt.Errorf("ledger: fork evidence: first checkpoint is larger than the second: %w", ErrMalformed)
	}
	if a.Size == b.Size {
		if len(f.Proof) != 0 {
			return fmt.Errorf("ledger: fork evidence: unexpected proof for equal sizes: %w", ErrMalformed)
		}
		if a.Root == b.Root {
			return fmt.Errorf("ledger: fork evidence: checkpoints agree: %w", ErrBadProof)
		}
		return nil
	}
	if len(f.Proof) > MaxProofHashes+1 {
		return fmt.Errorf("ledger: fork evidence: proof too long: %w", ErrMalformed)
	}
	oldRoot, newRoot, err := runForkProof(f.Proof, 0, b.Size, a.Size)
	if err != nil {
		return fmt.Errorf("ledger: fork evidence: proof has the wrong shape: %w", ErrBadProof)
	}
	if newRoot != b.Root {
		return fmt.Errorf("ledger: fork evidence: proof does not lead to the second checkpoint's root: %w", ErrBadProof)
	}
	if oldRoot == a.Root {
		return fmt.Errorf("ledger: fork evidence: checkpoints are consistent: %w", ErrBadProof)
	}
	return nil
}

// maxForkEvidenceSize bounds the encoding of ForkEvidence.
const maxForkEvidenceSize = 1 + 2*(2+MaxCheckpointSize) + 1 + (MaxProofHashes+1)*HashSize

// MarshalBinary encodes f: version byte 1, uint16 length and bytes of A,
// the same for B, one byte giving the number of proof hashes, and the
// hashes. Lengths are big-endian.
func (f *ForkEvidence) MarshalBinary() ([]byte, error) {
	if len(f.A) > MaxCheckpointSize || len(f.B) > MaxCheckpointSize || len(f.Proof) > MaxProofHashes+1 {
		return nil, fmt.Errorf("ledger: fork evidence too large: %w", ErrMalformed)
	}
	out := make([]byte, 0, 1+2+len(f.A)+2+len(f.B)+1+len(f.Proof)*HashSize)
	out = append(out, forkVersion)
	out = binary.BigEndian.AppendUint16(out, uint16(len(f.A)))
	out = append(out, f.A...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(f.B)))
	out = append(out, f.B...)
	out = append(out, byte(len(f.Proof)))
	for _, h := range f.Proof {
		out = append(out, h[:]...)
	}
	return out, nil
}

// UnmarshalBinary decodes the encoding of MarshalBinary, rejecting
// anything else. It does not check the evidence: call Check.
func (f *ForkEvidence) UnmarshalBinary(data []byte) error {
	bad := fmt.Errorf("ledger: fork evidence encoding: %w", ErrMalformed)
	if len(data) > maxForkEvidenceSize || len(data) < 1 || data[0] != forkVersion {
		return bad
	}
	d := data[1:]
	note := func() ([]byte, bool) {
		if len(d) < 2 {
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(d))
		if n > MaxCheckpointSize || len(d) < 2+n {
			return nil, false
		}
		v := append([]byte(nil), d[2:2+n]...)
		d = d[2+n:]
		return v, true
	}
	a, ok1 := note()
	b, ok2 := note()
	if !ok1 || !ok2 || len(d) < 1 {
		return bad
	}
	cnt := int(d[0])
	d = d[1:]
	if cnt > MaxProofHashes+1 || len(d) != cnt*HashSize {
		return bad
	}
	var p Proof
	if cnt > 0 {
		p = make(Proof, cnt)
		for i := range p {
			copy(p[i][:], d[i*HashSize:])
		}
	}
	*f = ForkEvidence{A: a, B: b, Proof: p}
	return nil
}

// ProveFork builds fork evidence from foreign, a checkpoint signed by this
// ledger's key that disagrees with the local log (shown, say, by a
// provider holding an old receipt). It fails with ErrBadProof if foreign
// agrees with the log, and with ErrTampered if foreign is ahead of the
// local log: then the local file was rolled back (or the key signed
// elsewhere), and no local proof is possible.
func (l *Log) ProveFork(tx *bbolt.Tx, foreign []byte) (*ForkEvidence, error) {
	fc, err := ParseCheckpoint(foreign, l.verifier)
	if err != nil {
		return nil, fmt.Errorf("ledger: prove fork: %w", err)
	}
	b, err := l.open(tx)
	if err != nil {
		return nil, err
	}
	latest, err := l.Latest(tx)
	if err != nil {
		return nil, err
	}
	if fc.Size > latest.Size {
		return nil, &VerifyError{Index: latest.Size, What: "tail",
			Detail: "a checkpoint signed by the ledger key is ahead of the local log (the file was rolled back, or the key signed elsewhere)",
			Want:   fmt.Sprint(fc.Size), Got: fmt.Sprint(latest.Size)}
	}
	ev := &ForkEvidence{A: fc.Note, B: latest.Note}
	if fc.Size == latest.Size {
		if fc.Root == latest.Root {
			return nil, fmt.Errorf("ledger: prove fork: checkpoint agrees with the log: %w", ErrBadProof)
		}
	} else {
		r := hashReader{b.hashes}
		ours, err := tlog.TreeHash(fc.Size, r)
		if err != nil {
			return nil, fmt.Errorf("ledger: prove fork: %w", err)
		}
		if Hash(ours) == fc.Root {
			return nil, fmt.Errorf("ledger: prove fork: checkpoint agrees with the log: %w", ErrBadProof)
		}
		p, err := tlog.ProveTree(latest.Size, fc.Size, r)
		if err != nil {
			return nil, fmt.Errorf("ledger: prove fork: %w", err)
		}
		ev.Proof = proofFrom(p)
		if isPow2(fc.Size) {
			ev.Proof = append(Proof{Hash(ours)}, ev.Proof...)
		}
	}
	if err := ev.Check(l.verifier); err != nil {
		return nil, fmt.Errorf("ledger: prove fork: local tree is inconsistent: %w", err)
	}
	return ev, nil
}

// ForkError is the error CheckExtends returns when its proof shows that one
// checkpoint's tree does not extend the other's. errors.Is(err, ErrFork)
// is true for it.
type ForkError struct{ Evidence *ForkEvidence }

func (e *ForkError) Error() string {
	return "ledger: a signed checkpoint does not extend an earlier one: the log was rewritten (forked)"
}

func (e *ForkError) Unwrap() error { return ErrFork }

// ExtensionProof returns the proof that the tree of size newSize extends
// the tree of size oldSize (1 ≤ oldSize ≤ newSize ≤ Size), in the full form
// of ForkEvidence: if the trees are not consistent, the proof together with
// the two checkpoints is evidence of it. It is empty when the sizes are
// equal. A peer holding an older checkpoint asks for it (CheckExtends).
func (l *Log) ExtensionProof(tx *bbolt.Tx, oldSize, newSize int64) (Proof, error) {
	p, err := l.ConsistencyProof(tx, oldSize, newSize)
	if err != nil || oldSize == newSize {
		return nil, err
	}
	if isPow2(oldSize) {
		b, err := l.open(tx)
		if err != nil {
			return nil, err
		}
		old, err := tlog.TreeHash(oldSize, hashReader{b.hashes})
		if err != nil {
			return nil, fmt.Errorf("ledger: extension proof: %w", err)
		}
		p = append(Proof{Hash(old)}, p...)
	}
	return p, nil
}

// CheckExtends checks that checkpoint b's tree extends checkpoint a's, given
// p, the proof from ExtensionProof(a.Size, b.Size) in b's log. Both
// checkpoints must already be verified for the same log (ParseCheckpoint
// with one Verifier), and a.Size ≤ b.Size. It returns nil when b extends
// a; a *ForkError (ErrFork) with checkable evidence when p shows that b's
// tree holds other entries where a's were; an error wrapping ErrBadProof
// when p shows neither (it does not lead to b's root): the peer that sent
// it did not prove anything.
func CheckExtends(a, b *Checkpoint, p Proof) error {
	if a.Origin != b.Origin {
		return fmt.Errorf("ledger: check extension: checkpoints of two logs (%q, %q): %w", a.Origin, b.Origin, ErrMalformed)
	}
	if a.Size > b.Size {
		return fmt.Errorf("ledger: check extension: the older checkpoint is larger (%d > %d): %w", a.Size, b.Size, ErrMalformed)
	}
	ev := &ForkEvidence{A: a.Note, B: b.Note, Proof: p}
	if a.Size == b.Size {
		if len(p) != 0 {
			return fmt.Errorf("ledger: check extension: unexpected proof for equal sizes: %w", ErrBadProof)
		}
		if a.Root != b.Root {
			ev.Proof = nil
			return &ForkError{ev}
		}
		return nil
	}
	if len(p) > MaxProofHashes+1 {
		return fmt.Errorf("ledger: check extension: proof too long: %w", ErrBadProof)
	}
	oldRoot, newRoot, err := runForkProof(p, 0, b.Size, a.Size)
	if err != nil || newRoot != b.Root {
		return fmt.Errorf("ledger: check extension: the proof does not lead to the newer checkpoint's root: %w", ErrBadProof)
	}
	if oldRoot != a.Root {
		return &ForkError{ev}
	}
	return nil
}
