package vault

import (
	"errors"
	"fmt"
)

// Errors callers branch on. The CLI maps each to a documented exit code.
var (
	// ErrNotFound means no record has that ID.
	ErrNotFound = errors.New("record not found")
	// ErrLocked means another process holds the vault.
	ErrLocked = errors.New("vault is in use by another medvault process")
	// ErrNoVault means the data directory holds no vault yet.
	ErrNoVault = errors.New("no vault here")
	// ErrExists means a vault already exists in the data directory.
	ErrExists = errors.New("a vault already exists here")
	// ErrNewerFormat means the vault was written by a newer medvault.
	ErrNewerFormat = errors.New("vault was written by a newer medvault")
	// ErrWrongOwner means the identity does not own this vault.
	ErrWrongOwner = errors.New("identity does not own this vault")
	// ErrTampered means stored data failed an integrity check.
	ErrTampered = errors.New("integrity check failed")
	// ErrDecrypt means stored ciphertext could not be decrypted with this
	// identity.
	ErrDecrypt = errors.New("decryption failed")
	// ErrDamaged means a received age file does not decrypt: a payload
	// chunk fails authentication, is out of order, or the file ends early
	// or goes on after its last chunk. Nothing of such a record is kept.
	ErrDamaged = errors.New("received record does not decrypt")
	// ErrImportRunning means a change of labels by hand waited for an
	// import that did not end in time; nothing was changed. It is
	// ErrLocked too (errors.Is).
	ErrImportRunning error = kindError{"an import is running: labels are changed by hand once it ends", ErrLocked}
	// ErrFileDamaged means the vault file cannot be opened at all: it is
	// empty, shorter than the pages its metadata says it holds, or its
	// structure is broken where opening reads it. verify cannot check such
	// a file either. It is ErrTampered too (errors.Is).
	ErrFileDamaged error = kindError{"the vault file is damaged", ErrTampered}
	// ErrInvalid means the caller's input was refused (an unknown
	// category, a title too long): nothing was changed.
	ErrInvalid = errors.New("invalid input")
)

// NotFoundf returns an error that is ErrNotFound (errors.Is) but reads only
// as the message given: for things that are not records (a contact, a
// grant), where "record not found" would mislead.
func NotFoundf(format string, a ...any) error {
	return kindError{fmt.Sprintf(format, a...), ErrNotFound}
}

// invalidf returns an error that is ErrInvalid (errors.Is) and reads only as
// the message given.
func invalidf(format string, a ...any) error {
	return kindError{fmt.Sprintf(format, a...), ErrInvalid}
}

// kindError is an error of a kind (a sentinel, for errors.Is) that reads
// only as its message.
type kindError struct {
	msg  string
	kind error
}

func (e kindError) Error() string        { return e.msg }
func (e kindError) Is(target error) bool { return target == e.kind }
