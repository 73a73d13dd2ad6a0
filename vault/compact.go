package vault

import (
	"fmt"
	"os"
	"path/filepath"
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
func (v *Vault) compact() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	path := filepath.Join(v.dir, DBFile)
	tmp := path + ".compact"
	os.Remove(tmp)
	dst, err := openBolt(tmp, v.lockTimeout())
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
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
	return nil
}

func (v *Vault) lockTimeout() time.Duration { return time.Second }

// syncDir makes a rename in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
