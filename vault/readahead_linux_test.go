package vault

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// The readahead must bring a record's next chunks into the page cache
// before they are read: checked with mincore(2) on the mapped chunks after
// the vault file is dropped from the cache.
func TestReadaheadLoadsChunks(t *testing.T) {
	v := newTestVault(t)
	const size = (2*raWindow + 16) * chunkSize
	m, err := v.Add(newRandReader(size), NewRecord{Category: "imaging"})
	if err != nil {
		t.Fatal(err)
	}
	id := m.ID
	f, err := os.Open(filepath.Join(v.Dir(), DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	// Clean pages are dropped by DONTNEED; the kernel may keep a few
	// (mapped ones), so count what is cached before and after.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Skipf("fadvise: %v", err)
	}
	resident := func(tx *bbolt.Tx, from, to uint32) (in, all int) {
		c := tx.Bucket(bucketChunks).Cursor()
		i := uint32(0)
		for k, val := c.Seek(chunkKey(id, 0)); k != nil && i < to; k, val = c.Next() {
			if i >= from {
				p := uintptr(unsafe.Pointer(unsafe.SliceData(val)))
				page := uintptr(os.Getpagesize())
				off := p & (page - 1)
				b := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(val)), -int(off))), len(val)+int(off))
				vec := make([]byte, (len(b)+int(page)-1)/int(page))
				if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
					t.Fatal(e)
				}
				for _, x := range vec {
					all++
					if x&1 != 0 {
						in++
					}
				}
			}
			i++
		}
		return in, all
	}
	err = v.view(func(tx *bbolt.Tx) error {
		before, all := resident(tx, 0, raWindow)
		if before > all/4 {
			t.Skipf("the kernel kept %d of %d pages cached after DONTNEED", before, all)
		}
		ra := readahead{id: id, want: m.Chunks}
		ra.advance(tx, 0)
		if ra.next != min(m.Chunks, raWindow) {
			t.Errorf("advised up to chunk %d, want %d", ra.next, min(m.Chunks, raWindow))
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			in, all := resident(tx, 0, raWindow)
			if in == all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after readahead, %d of %d pages of the first %d chunks are cached (%d before)", in, all, raWindow, before)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Beyond the window nothing was asked for.
		if in, all := resident(tx, raWindow+8, m.Chunks); in > all/2 {
			t.Errorf("%d of %d pages beyond the window are cached", in, all)
		}
		// Half a window on, nothing new is advised; past it, the next
		// window is.
		ra.advance(tx, raWindow/2-1)
		if ra.next != raWindow {
			t.Errorf("at chunk %d: advised up to %d, want %d", raWindow/2-1, ra.next, raWindow)
		}
		ra.advance(tx, raWindow/2+1)
		if want := min(m.Chunks, raWindow/2+1+raWindow); ra.next != want {
			t.Errorf("at chunk %d: advised up to %d, want %d", raWindow/2+1, ra.next, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Before compaction the vault file's mapping loses bbolt's MADV_RANDOM
// (VmFlags "rr" in smaps), so reading it through faults reads ahead.
func TestAdviseWholeUndoesRandom(t *testing.T) {
	v := newTestVault(t)
	if _, err := v.Add(newRandReader(1<<20), NewRecord{Category: "imaging"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(v.Dir(), DBFile)
	if !mappedRandom(t, path) {
		t.Skip("bbolt no longer maps its file MADV_RANDOM")
	}
	if err := v.view(func(tx *bbolt.Tx) error { adviseWhole(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	if mappedRandom(t, path) {
		t.Error("the vault file is still mapped MADV_RANDOM after adviseWhole")
	}
}

// A compaction that fails (here, the disk is full) keeps the old file and
// its map: the map must be advised MADV_RANDOM again, or every later
// lookup in a long-running node would fault in a whole readahead window.
func TestFailedCompactionRestoresRandom(t *testing.T) {
	v := vaultOnSmallDisk(t, "16m")
	dir, disk := v.dir, filepath.Dir(v.dir)
	if _, err := v.Add(newRandReader(3<<20), NewRecord{Category: "imaging"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, DBFile)
	if !mappedRandom(t, path) {
		t.Skip("bbolt no longer maps its file MADV_RANDOM")
	}
	// Room for the new file's first pages, not for the copy.
	if fill := diskFree(t, disk) - 256<<10; fill > 0 {
		if err := os.WriteFile(filepath.Join(disk, "filler"), make([]byte, fill), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.compactWithin(time.Second); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("compaction on a full disk: %v, want ENOSPC", err)
	}
	if !mappedRandom(t, path) {
		t.Error("after a failed compaction the vault file is no longer mapped MADV_RANDOM")
	}
}

// mappedRandom reports whether this process maps path with MADV_RANDOM
// (VmFlags "rr" in smaps).
func mappedRandom(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = strings.HasSuffix(l, " "+path)
		} else if in && strings.HasPrefix(l, "VmFlags:") {
			return slices.Contains(strings.Fields(l), "rr")
		}
	}
	t.Fatalf("no mapping of %s in smaps", path)
	return false
}
