package vault

import (
	"math"
	"syscall"
)

// freeBytes returns the bytes an unprivileged user may still write on the
// filesystem holding dir.
func freeBytes(dir string) (int64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Bsize <= 0 {
		return 0, false
	}
	if st.Bavail > uint64(math.MaxInt64)/uint64(st.Bsize) {
		return math.MaxInt64, true
	}
	return int64(st.Bavail) * st.Bsize, true
}
