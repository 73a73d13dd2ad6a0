package vault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock on path, polling until timeout; it never
// follows a symbolic link at path. The lock
// lives in its own file, never replaced, so that compaction can swap the
// database file underneath without another process locking a stale inode.
// A process killed while holding the lock releases it at once (kernel flock).
func lockFile(path string, timeout time.Duration) (*os.File, error) {
	// O_NOFOLLOW: a symbolic link planted there would have medvault
	// create, and lock, a file anywhere the link points (and two vaults
	// could share one lock).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		if li, lerr := os.Lstat(path); lerr == nil && li.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("open lock file: %s is a symbolic link, not the vault's own lock file; medvault does not follow it (remove the link: medvault creates the file)", path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, ErrLocked
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitFree waits up to timeout for no other process to hold the vault in
// dir, and returns ErrLocked if one still does. It takes nothing: a caller
// about to spend the passphrase unlock on a vault another process holds
// (a node finishing its last commands) hears so first, not after.
func WaitFree(dir string, timeout time.Duration) error {
	f, err := lockFile(filepath.Join(dir, LockFile), timeout)
	if errors.Is(err, ErrLocked) {
		return err
	}
	if err == nil {
		f.Close()
	}
	return nil // any other failure: Open reports it
}
