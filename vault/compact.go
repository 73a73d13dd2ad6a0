package vault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// compact rewrites the database into a fresh file holding only live data and
// renames it over the old one, so pages freed by a delete no longer exist in
// the vault file. It runs under the vault lock (held in a separate file that
// is never replaced, so no other process can be waiting on the old inode).
//
// Caveat: this removes the old bytes from the vault file, not from the
// physical disk: a journaling or copy-on-write file system, or an SSD's
// flash translation layer, may keep old blocks until they are reused. Full
// disk encryption covers that residue.
func (v *Vault) compact() error { return v.compactWithin(compactWait) }

func (v *Vault) compactWithin(wait time.Duration) error {
	// Waiting on Lock would also stop every new reader behind it: one
	// paused reader ('get | less' in the node) then froze the node. Try
	// for a while instead, and leave it owed (ErrCompactDeferred).
	if !v.lockWithin(wait) {
		return ErrCompactDeferred
	}
	defer v.mu.Unlock()
	path := filepath.Join(v.dir, DBFile)
	tmp := path + ".compact"
	os.Remove(tmp)
	dst, err := openBolt(tmp, v.lockTimeout())
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	_ = v.db.View(func(tx *bbolt.Tx) error { adviseWhole(tx); return nil })
	old := v.db
	defer func() {
		// Failed before the old file was closed (a full disk): it stays
		// in use, so its map is looked up in again, as bbolt advises.
		// (Once closed, View fails and nothing is advised.)
		if v.db == old {
			_ = old.View(func(tx *bbolt.Tx) error { adviseLookups(tx); return nil })
		}
	}()
	if err := bbolt.Compact(dst, v.db, 64<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	syncDir(v.dir)
	if err := v.db.Close(); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	db, err := openBolt(path, v.lockTimeout())
	if err != nil {
		return fmt.Errorf("compact: reopen: %w", err)
	}
	v.db = db
	// Nothing was deleted since the copy began (deletes wait for the
	// lock we hold): the debt is paid. Cleared here, under the lock, so a
	// delete committed just after cannot have its own mark cleared.
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyCompactOwed) }); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	return nil
}

func (v *Vault) lockTimeout() time.Duration { return time.Second }

// compactWait is how long compaction waits for readers to finish.
var compactWait = 3 * time.Second

// ErrCompactDeferred means compaction after a delete found the vault being
// read (a paused 'get | less' in the node, a provider's fetch) and was left
// for later: the delete stands, the old bytes stay in the file's free
// pages until CompactIfOwed runs (the node tries after every command) or
// the vault is next opened.
var ErrCompactDeferred = errors.New("the vault is being read; the old bytes are removed from the file once it is not")

// lockWithin takes the exclusive lock if it can within d, without making
// new readers wait meanwhile.
func (v *Vault) lockWithin(d time.Duration) bool { return tryLockWithin(&v.mu, d) }

// tryLockWithin takes mu for writing if it can within d. It polls TryLock
// rather than wait in Lock: a writer waiting in Lock stops every new
// reader, and a reader that is itself waiting on something slow (a paused
// pipe) would then hold them all up.
func tryLockWithin(mu *sync.RWMutex, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		if mu.TryLock() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// CompactIfOwed compacts the file if a delete left that owed, waiting at
// most wait for readers to finish; ErrCompactDeferred if they did not.
func (v *Vault) CompactIfOwed(wait time.Duration) error {
	if !v.deferred.Load() {
		// Only a deferred compaction is retried here: one that failed
		// for another reason (a full disk) would copy the whole file
		// after every command. Open retries those.
		return nil
	}
	var owed bool
	if err := v.view(func(tx *bbolt.Tx) error { owed = tx.Bucket(bucketMeta).Get(keyCompactOwed) != nil; return nil }); err != nil || !owed {
		return err
	}
	return v.shredWithin(wait)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
