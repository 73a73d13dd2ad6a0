package vault

import "syscall"

const adviseSupported = true

// adviseWillNeed tells the kernel the mapped range [from, to) will be read
// soon (from is page-aligned; an empty range does nothing).
func adviseWillNeed(from, to uintptr) {
	if to > from {
		syscall.Syscall(syscall.SYS_MADVISE, from, to-from, syscall.MADV_WILLNEED)
	}
}
