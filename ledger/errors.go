package ledger

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrTampered reports that stored ledger data does not match what was
	// signed or what the format allows: the file was changed outside this
	// package, or it was damaged. Every *VerifyError wraps it.
	ErrTampered = errors.New("ledger tampered")

	// ErrNotFound reports an index or size outside the log, or a log with
	// nothing to return (no entries, no checkpoint).
	ErrNotFound = errors.New("not found")

	// ErrBadSignature reports a checkpoint whose signature does not verify
	// with the expected key, or that carries no signature by that key.
	ErrBadSignature = errors.New("bad signature")

	// ErrMalformed reports input that is not in the canonical encoding
	// (entries, leaves, checkpoints, proofs, fork evidence), or a value
	// that cannot be encoded (out-of-range field).
	ErrMalformed = errors.New("malformed")

	// ErrBadProof reports an inclusion or consistency proof that does not
	// verify, or fork evidence that does not prove a fork.
	ErrBadProof = errors.New("proof does not verify")

	// ErrFork reports two checkpoints signed by one ledger's key that no
	// append-only log could both have produced. Errors wrapping it are
	// *ForkError, which carries the evidence.
	ErrFork = errors.New("ledger forked")
)

// VerifyError describes exactly what Verify found wrong. It never carries
// record content: only indexes, sizes, hashes and names of structures.
//
// errors.Is(err, ErrTampered) is true for every VerifyError; a checkpoint
// whose signature fails also matches ErrBadSignature.
type VerifyError struct {
	// Index is the entry index the problem concerns, or the tree size of
	// the checkpoint it concerns (see What); -1 when neither applies.
	Index int64
	// What names the failed check, e.g. "entry", "stored hash",
	// "checkpoint", "checkpoint set", "verified marker", "tail", "format",
	// "bucket", "key".
	What string
	// Detail says, in a few words, what was expected.
	Detail string
	// Want and Got are the expected and found values (hashes in base64,
	// sizes in decimal), empty when not meaningful.
	Want, Got string
	// Err is an underlying cause (ErrBadSignature, ErrMalformed, a
	// decryption failure), or nil.
	Err error
}

func (e *VerifyError) Error() string {
	s := "ledger: verify: " + e.What
	if e.Index >= 0 {
		s += fmt.Sprintf(" %d", e.Index)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Want != "" || e.Got != "" {
		s += fmt.Sprintf(" (want %s, got %s)", orNone(e.Want), orNone(e.Got))
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrTampered and the underlying cause, if any.
func (e *VerifyError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrTampered, e.Err}
	}
	return []error{ErrTampered}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func tampered(what string, index int64, detail string) *VerifyError {
	return &VerifyError{Index: index, What: what, Detail: detail}
}
