package vault

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// fallocate allocates blocks for n bytes of f from off on, extending the
// file.
func fallocate(f *os.File, off, n int64) error {
	if n <= 0 {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), 0, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return errNoPrealloc
	}
	if err != nil {
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
	return nil
}
