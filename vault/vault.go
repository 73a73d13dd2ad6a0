package vault

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// FormatVersion is the on-disk format this build writes and reads. Version
// 2 logs what a provider keeps from patients' nodes (keep entries); a
// version 1 vault is brought to version 2 when opened (adoptKept). Version
// 3 keeps, sealed, the rules the records' sensitivity labels were derived
// by, and which labels the patient removed by hand; a version 2 vault has
// its records' labels derived again under this build's rules, and is
// brought to version 3, when opened (rederive).
const FormatVersion = 3

// formatKept is the format that first logged kept objects.
const formatKept = 2

// File names inside a data directory.
const (
	IdentityFile = "identity.age"
	DBFile       = "vault.db"
	LockFile     = "vault.lock"
)

// Bucket names. Keys are opaque IDs; every value that says anything about a
// record is encrypted.
var (
	bucketMeta    = []byte("meta")    // vault-level settings, plaintext, nothing personal
	bucketRecords = []byte("records") // record.ID -> sealed metadata
	bucketChunks  = []byte("chunks")  // record.ID || uint32 BE index -> age ciphertext segment
	bucketPending = []byte("pending") // record.ID -> start time of an unfinished add
	bucketIndex   = []byte("index")   // keyed hash of (resourceType, id) -> record.ID list

	keyFormat  = []byte("format")
	keyOwner   = []byte("owner")
	keyVaultID = []byte("vault-id")
	// keyCompactOwed marks a delete whose compaction failed.
	keyCompactOwed = []byte("compact-owed")
)

// Options tune Open and Create.
type Options struct {
	// LockTimeout is how long to wait for another process to release the
	// vault before failing with ErrLocked. Zero means one second.
	LockTimeout time.Duration
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
	// Rederiving, if set, is told how far Open has got when it derives
	// sensitivity labels again under changed value lists (see
	// Vault.Rederived): once with done 0 before the first record, then
	// after each batch. A large vault takes seconds.
	Rederiving func(done, total int)
}

// Vault is an open vault. It holds the exclusive lock on the data directory
// until Close. Methods are safe for use by one goroutine at a time per call
// sequence; bbolt serialises writers.
type Vault struct {
	dir     string
	db      *bbolt.DB
	lock    *os.File
	id      *identity.Identity
	vaultID [16]byte
	meta    cipher.AEAD     // seals record metadata
	content *vaultRecipient // wraps the file keys of the owner's records
	index   []byte          // key for the FHIR de-duplication index
	// deferred: the last compaction after a delete found the vault being
	// read and was left owed (CompactIfOwed retries it).
	deferred atomic.Bool
	now      func() time.Time
	ledger   *ledgerLog
	// mu guards db: every transaction holds it for reading; compaction,
	// which replaces the database file, holds it for writing.
	mu sync.RWMutex
	// busy holds the partial records (record.ID) a receive is writing or
	// dropping, so two fetches running at once never write one together.
	busy sync.Map
	// fetching holds a *sync.Mutex per patient (identity.ID): see
	// Receiving.
	fetching sync.Map
	// gen counts this process's writes of objects, per kind
	// (ObjectsGeneration).
	genMu sync.Mutex
	gen   map[Kind]uint64
	// labels is held for reading by each import and for writing by a
	// change of labels by hand: an import reads the labels of the records
	// its resources reference before it makes its own records visible, so
	// a label added in between would reach neither (the spread skips the
	// import's hidden records, and the import has read the old labels).
	// SetLabels never waits on Lock (labelsWithin): a waiting writer
	// stops every new reader, so one import reading a paused pipe in the
	// node would, through a label waiting for it, hold up every other
	// import, and a label whose input is the import's ('{ medvault label
	// ...; cat x.json; } | medvault import -') would wait for ever.
	labels sync.RWMutex
	// rederived is what Open's rederive changed, nil if nothing ran.
	rederived *Rederivation
}

// labelWait is how long a change of labels by hand waits for imports.
var labelWait = 30 * time.Second

// labelsWithin takes labels for writing if it can within d, without making
// new imports wait meanwhile.
func (v *Vault) labelsWithin(d time.Duration) bool { return tryLockWithin(&v.labels, d) }

func (v *Vault) view(fn func(*bbolt.Tx) error) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.db.View(fn)
}

func (v *Vault) update(fn func(*bbolt.Tx) error) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.db.Update(fn)
}

// boltOptions are the bbolt settings for the vault file. The lock timeout
// makes a second process fail (ErrLocked) instead of blocking forever; a
// large initial mmap (address space only) avoids remapping every few
// megabytes while a large record is written; the map freelist keeps commits
// fast in large files.
func boltOptions(timeout time.Duration) *bbolt.Options {
	return &bbolt.Options{
		Timeout:         timeout,
		InitialMmapSize: 1 << 30,
		FreelistType:    bbolt.FreelistMapType,
	}
}

// openStored opens the existing vault file at path. bbolt maps the file
// and trusts its metadata: a file cut short made it read past the end of
// the mapping (SIGBUS, a crash of the whole process, on the freelist at
// open or on any page later), and an empty file it silently started over
// as a new database. Both are refused as ErrFileDamaged: the file must
// reach every page its metadata counts (checkFileForOpen, before bbolt
// reads it), and a fault or panic while bbolt opens it becomes that error
// too.
func openStored(path string, timeout time.Duration) (db *bbolt.DB, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrFileDamaged, path)
	}
	if err := checkFileForOpen(path); err != nil {
		return nil, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %s could not be read (%v): it may be cut short", ErrFileDamaged, path, r)
		}
	}()
	if db, err = openBolt(path, timeout); err != nil {
		if errors.Is(err, bbolt.ErrTimeout) || errors.As(err, new(*fs.PathError)) {
			return nil, err
		}
		// What bbolt found wrong with the file ("file size too small",
		// a bad meta page).
		return nil, fmt.Errorf("%w: %s: %w", ErrFileDamaged, path, err)
	}
	return db, nil
}

func openBolt(path string, timeout time.Duration) (*bbolt.DB, error) {
	db, err := bbolt.Open(path, 0o600, boltOptions(timeout))
	if err != nil {
		return nil, err
	}
	return db, nil
}

func (o *Options) fill() {
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Exists reports whether dir holds a vault database.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, DBFile))
	return err == nil
}

// Create makes a new, empty vault in dir (which must exist, mode 0700) owned
// by id, and records the key creation as the first ledger entry.
//
// The vault appears whole or not at all: it is built in DBFile+".new" and
// renamed into place once its first transaction is on disk, so a process
// killed halfway leaves no vault file that opens as damaged and blocks the
// next 'init'. A ".new" file left by such a process is removed (Create holds
// the lock, so no other process is writing it).
func Create(dir string, id *identity.Identity, opts Options) error {
	opts.fill()
	lock, err := lockFile(filepath.Join(dir, LockFile), opts.LockTimeout)
	if err != nil {
		return err
	}
	defer lock.Close()
	path := filepath.Join(dir, DBFile)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, path)
	}
	tmp := path + ".new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("create vault: %w", err)
	}
	if err := build(tmp, dir, id, opts); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create vault: %w", err)
	}
	if testCreateBeforePublish != nil {
		testCreateBeforePublish()
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create vault: %w", err)
	}
	syncDir(dir)
	return nil
}

// testCreateBeforePublish, if set by a test, runs after Create has built
// the vault and before it renames it into place.
var testCreateBeforePublish func()

// build writes a new vault's file at path: its buckets, keys, value-list
// rules and first ledger entry, in one transaction.
func build(path, dir string, id *identity.Identity, opts Options) error {
	db, err := openBolt(path, opts.LockTimeout)
	if err != nil {
		return err
	}
	v := &Vault{dir: dir, db: db, id: id, now: opts.Now}
	if err := v.initKeys(); err != nil {
		db.Close()
		return err
	}
	var vid [16]byte = record.NewID()
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketRecords, bucketChunks, bucketPending, bucketIndex} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		if err := m.Put(keyFormat, binary.BigEndian.AppendUint32(nil, FormatVersion)); err != nil {
			return err
		}
		owner := id.ID()
		if err := m.Put(keyOwner, owner[:]); err != nil {
			return err
		}
		if err := m.Put(keyVaultID, vid[:]); err != nil {
			return err
		}
		if err := createRefBuckets(tx); err != nil {
			return err
		}
		v.vaultID = vid
		if err := v.putRules(tx); err != nil {
			return err
		}
		if err := v.ledger.init(tx); err != nil {
			return err
		}
		return v.logCommit(tx, Event{Action: ledger.ActionInit, Subjects: [][]byte{vid[:]}})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Open opens the vault in dir for id, waiting at most opts.LockTimeout for
// another process to release it. It finishes or discards any add that a
// killed process left unfinished.
func Open(dir string, id *identity.Identity, opts Options) (*Vault, error) {
	opts.fill()
	path := filepath.Join(dir, DBFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoVault, dir)
	}
	lock, err := lockFile(filepath.Join(dir, LockFile), opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	// Best effort: output a process killed midway left in a named
	// temporary file (see PartialsFile) is decrypted content; a failure
	// here keeps the list for the next Open.
	removePartials(dir)
	// And a temporary identity file an init killed midway left (the
	// identity this vault is opened with exists).
	identity.RemoveTemps(dir)
	db, err := openStored(path, opts.LockTimeout)
	if err != nil {
		lock.Close()
		switch {
		case errors.Is(err, bbolt.ErrTimeout):
			return nil, ErrLocked
		case errors.Is(err, bbolt.ErrInvalid), errors.Is(err, bbolt.ErrChecksum), errors.Is(err, bbolt.ErrVersionMismatch):
			return nil, fmt.Errorf("open vault: %w: %w", ErrFileDamaged, err)
		}
		return nil, fmt.Errorf("open vault: %w", err)
	}
	v := &Vault{dir: dir, db: db, lock: lock, id: id, now: opts.Now}
	if err := v.loadGuarded(opts.Rederiving); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

func (v *Vault) initKeys() error {
	var err error
	v.meta, err = chacha20poly1305.NewX(v.id.SubKey("medvault/vault/metadata/v1"))
	if err != nil {
		return err
	}
	v.index = v.id.SubKey("medvault/vault/index/v1")
	if v.content, err = newVaultKey(v.id.SubKey("medvault/vault/content/v1")); err != nil {
		return err
	}
	v.ledger, err = newLedgerLog(v.id, v.now)
	return err
}

// loadGuarded is load on a file that may be damaged: bbolt trusts its
// pages, and a fault or a panic while it reads a damaged one (an element
// pointing past its page, a page of the wrong type) is ErrFileDamaged, not
// a crash of the whole process.
func (v *Vault) loadGuarded(rederiving func(done, total int)) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s could not be read (%v)", ErrFileDamaged, filepath.Join(v.dir, DBFile), r)
		}
	}()
	return v.load(rederiving)
}

func (v *Vault) load(rederiving func(done, total int)) error {
	if err := v.initKeys(); err != nil {
		return err
	}
	adopt := false
	err := v.view(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return fmt.Errorf("%w: meta bucket missing", ErrFileDamaged)
		}
		f := m.Get(keyFormat)
		if len(f) != 4 {
			return fmt.Errorf("%w: format version missing", ErrTampered)
		}
		if ver := binary.BigEndian.Uint32(f); ver > FormatVersion {
			return fmt.Errorf("%w (format v%d, this build reads v%d)", ErrNewerFormat, ver, FormatVersion)
		} else if ver == 1 {
			if m.Get(keyLabelRules) != nil {
				// Format 1 never wrote them, and nothing brings a vault
				// back to 1: the number was put back outside medvault,
				// so that Open would adopt kept objects again.
				return fmt.Errorf("%w: the vault says format v1, but holds label rules, which format v1 does not write (format number changed outside medvault)", ErrTampered)
			}
			adopt = true
		} else if ver != formatKept && ver != FormatVersion {
			return fmt.Errorf("%w: unknown format version %d", ErrTampered, ver)
		}
		owner := v.id.ID()
		if got := m.Get(keyOwner); string(got) != string(owner[:]) {
			// Someone else's vault, unless its ledger's checkpoints
			// are signed by this identity: then the value was changed.
			if _, err := v.ledger.log.Latest(tx); err == nil {
				return fmt.Errorf("%w: the vault's owner was changed: its ledger is signed by this identity", ErrTampered)
			}
			return ErrWrongOwner
		}
		vid := m.Get(keyVaultID)
		if len(vid) != 16 {
			return fmt.Errorf("%w: vault ID missing", ErrTampered)
		}
		copy(v.vaultID[:], vid)
		for _, b := range [][]byte{bucketRecords, bucketChunks, bucketPending, bucketIndex} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: bucket %q missing", ErrTampered, b)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := v.cleanPending(); err != nil {
		return err
	}
	if adopt {
		if err := v.adoptKept(); err != nil {
			return fmt.Errorf("bring the vault to format v%d: %w", formatKept, err)
		}
	}
	if err := v.rederive(rederiving); err != nil {
		return err
	}
	var owed bool
	v.view(func(tx *bbolt.Tx) error { owed = tx.Bucket(bucketMeta).Get(keyCompactOwed) != nil; return nil })
	if owed {
		v.shred() // best effort: the error is kept for the next open
	}
	return nil
}

// cleanPending finishes or discards what killed processes left: it
// removes imports' scratch files, then settles the pending bucket (see
// settlePending). We hold the exclusive lock, so nothing pending is in use.
func (v *Vault) cleanPending() error {
	if err := removeScratch(v.dir); err != nil {
		return fmt.Errorf("remove an unfinished import's scratch file: %w", err)
	}
	return v.settlePending(nil)
}

// Close releases the vault and its lock.
func (v *Vault) Close() error {
	err := v.db.Close()
	if v.lock != nil {
		v.lock.Close()
	}
	return err
}

// Owner returns the identity that owns the vault.
func (v *Vault) Owner() *identity.Identity { return v.id }

// VaultID returns the random ID that names this vault in grants.
func (v *Vault) VaultID() [16]byte { return v.vaultID }

// Dir returns the data directory.
func (v *Vault) Dir() string { return v.dir }
