package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// writeUnnamed writes a new file at path through fill without ever giving
// it a name before it is complete: an O_TMPFILE file in path's directory,
// linked into place at the end. A process killed midway (get -o of a large
// record, say) leaves no partial plaintext behind, named or hidden. done is
// false when the file system cannot make unnamed files; the caller then
// uses a named temporary file.
func writeUnnamed(path string, fill func(io.Writer) error) (done bool, err error) {
	fd, err := unix.Open(filepath.Dir(path), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("create %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if err := fill(f); err != nil {
		return true, err
	}
	// Linking fails if path appeared meanwhile: nothing is overwritten.
	proc := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW); err != nil {
		return true, &os.LinkError{Op: "link", Old: "(new file)", New: path, Err: err}
	}
	return true, nil
}
