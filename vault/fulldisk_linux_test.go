package vault

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/medvault/medvault/vault/record"
)

// smallDisk mounts a tmpfs of the given size (e.g. "8m") on a new directory:
// a disk that fills up. It skips the test where mounting is not allowed.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (a disk that fills up)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	// Cleanups run last first: unmount before TempDir removes the directory.
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// smallExt4 mounts a new ext4 file system of mib MiB (a loop device over a
// file in the test's directory) and returns its directory. It skips the
// test where that cannot be done.
func smallExt4(t *testing.T, mib int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount an ext4 image")
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("needs mkfs.ext4 (Debian package e2fsprogs)")
	}
	img := filepath.Join(t.TempDir(), "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(mib)<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v %s", err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount an ext4 image here (loop devices?): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

// vaultOnSmallDisk creates and opens a vault in a directory on a new
// tmpfs of the given size (see smallDisk).
func vaultOnSmallDisk(t *testing.T, size string) *Vault {
	t.Helper()
	dir := filepath.Join(smallDisk(t, size), "vault")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return newVaultIn(t, dir)
}

// TestFullDisk adds a record with less and less free space left on the disk,
// so that each step runs out of space at a different point of an add (the
// pending mark, a batch of chunks, the final transaction, the clean-up).
// Every failure must be ENOSPC, and after it, with space freed, the vault
// must hold exactly what it held before (or the whole new record), verify
// clean, keep no chunks of the failed record, and take new records again.
func TestFullDisk(t *testing.T) {
	disk := smallDisk(t, "32m")
	dir := filepath.Join(disk, "vault")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	id := mustIdentity(t)
	opts := Options{LockTimeout: 100 * time.Millisecond}
	if err := Create(dir, id, opts); err != nil {
		t.Fatal(err)
	}
	// big takes two batches written by the committer, then the final
	// transaction's share.
	first, big := randomBytes(t, 1<<20), randomBytes(t, 2*batchSize+300<<10)
	v, err := Open(dir, id, opts)
	if err != nil {
		t.Fatal(err)
	}
	a, err := v.Add(bytes.NewReader(first), NewRecord{Title: "first", Category: record.Labs})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	// The vault as it stands, put back before every step.
	saved := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		saved[e.Name()] = b
	}

	filler := filepath.Join(disk, "filler")
	var failed, stored int
	for step := 0; ; step++ {
		restore(t, dir, saved)
		free := diskFree(t, disk)
		// From room for the record and more down to nothing left.
		room := int64(len(big)) + 2<<20 - int64(step)*(320<<10)
		if room < 0 {
			break
		}
		if fill := free - room; fill > 0 {
			if err := os.WriteFile(filler, make([]byte, fill), 0o600); err != nil {
				t.Fatalf("step %d: filler: %v", step, err)
			}
		}
		v, err := Open(dir, id, opts)
		if err != nil {
			// Opening writes nothing when nothing is pending.
			t.Fatalf("step %d: open with %d bytes free: %v", step, room, err)
		}
		m, err := v.Add(bytes.NewReader(big), NewRecord{Title: "big", Category: record.Imaging})
		switch {
		case err == nil:
			stored++
		case !errors.Is(err, syscall.ENOSPC):
			t.Fatalf("step %d: add with %d bytes free: got %v, want an error wrapping ENOSPC", step, room, err)
		default:
			failed++
		}
		v.Close()
		os.Remove(filler)

		// Space is back: the vault opens, holds what it should, and works.
		v, err = Open(dir, id, opts)
		if err != nil {
			t.Fatalf("step %d: reopen after freeing space: %v", step, err)
		}
		want := map[record.ID][]byte{a.ID: first}
		if m != nil {
			want[m.ID] = big
		}
		checkHolds(t, v, want)
		if _, err := v.Add(bytes.NewReader([]byte("after")), NewRecord{Category: record.Notes}); err != nil {
			t.Fatalf("step %d: add after freeing space: %v", step, err)
		}
		v.Close()
	}
	if failed == 0 || stored == 0 {
		t.Fatalf("%d adds failed and %d stored: the steps did not cross the point where the disk is full", failed, stored)
	}
	t.Logf("%d adds stored, %d ran out of space", stored, failed)
}

// checkHolds fails unless v holds exactly the records in want, with their
// content, no chunk or pending entry of any other record, and verifies clean.
func checkHolds(t *testing.T, v *Vault, want map[record.ID][]byte) {
	t.Helper()
	ms, err := v.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != len(want) {
		t.Fatalf("vault lists %d records, want %d", len(ms), len(want))
	}
	for id, content := range want {
		var got bytes.Buffer
		if _, err := v.Get(id, &got); err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if !bytes.Equal(got.Bytes(), content) {
			t.Fatalf("record %s: content differs", id)
		}
	}
	err = v.view(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bucketPending).Cursor().First(); k != nil {
			t.Errorf("pending entry %x left", k)
		}
		return tx.Bucket(bucketChunks).ForEach(func(k, _ []byte) error {
			if _, ok := want[record.ID(k[:16])]; !ok {
				t.Errorf("chunk %x of a record the vault does not hold", k)
				return errors.New("stop")
			}
			return nil
		})
	})
	if err != nil && !t.Failed() {
		t.Fatal(err)
	}
	rep, err := v.Verify(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("verify: %v", rep.Problems)
	}
}

func restore(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	// Sparse, as bbolt left the file: its unwritten tail takes no space.
	zero := make([]byte, 4096)
	for name, b := range files {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(b); off += len(zero) {
			p := b[off:min(off+len(zero), len(b))]
			if bytes.Equal(p, zero[:len(p)]) {
				continue
			}
			if _, err := f.WriteAt(p, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Truncate(int64(len(b))); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func diskFree(t *testing.T, dir string) int64 {
	t.Helper()
	n, ok := freeBytes(dir)
	if !ok {
		t.Fatalf("statfs %s failed", dir)
	}
	return n
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}
