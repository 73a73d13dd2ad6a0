package vault

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A symbolic link planted at vault.lock is not followed: medvault neither
// creates the file it points to, outside the data directory, nor takes
// its lock there; it says what is wrong.
func TestLockFileSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	id := mustIdentity(t)
	if err := Create(dir, id, Options{}); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(dir, LockFile)
	if err := os.Remove(lock); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(outside, lock); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, id, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		v.Close()
		t.Fatal("Open followed a symbolic link at vault.lock")
	}
	if !strings.Contains(err.Error(), "is a symbolic link") {
		t.Errorf("Open: %v; want it to say vault.lock is a symbolic link", err)
	}
	if err := WaitFree(dir, 100*time.Millisecond); err != nil {
		t.Errorf("WaitFree: %v (Open reports the link)", err)
	}
	if _, err := os.Lstat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link's target was created outside the data directory: %v", err)
	}
	// A new vault in a directory with such a link is refused too.
	dir2 := t.TempDir()
	outside2 := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(outside2, filepath.Join(dir2, LockFile)); err != nil {
		t.Fatal(err)
	}
	if err := Create(dir2, id, Options{}); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Errorf("Create with a link at vault.lock: %v", err)
	}
	if _, err := os.Lstat(outside2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Create made the link's target: %v", err)
	}
}
