package vault

import "syscall"

const adviseSupported = true

// raPiece bounds one madvise(MADV_WILLNEED) call: the kernel reads at most
// the device's readahead window (read_ahead_kb, 128 KiB by default) or its
// largest request per call, whatever range it is given.
const raPiece = 128 << 10

// adviseWillNeed tells the kernel the mapped range [from, to) will be read
// soon (from is page-aligned; an empty range does nothing).
func adviseWillNeed(from, to uintptr) {
	for from < to {
		n := min(to-from, raPiece)
		syscall.Syscall(syscall.SYS_MADVISE, from, n, syscall.MADV_WILLNEED)
		from += n
	}
}

// adviseScan tells the kernel the mapped range [from, to) is about to be
// read through, not looked up in: it undoes bbolt's MADV_RANDOM, so faults
// read ahead again.
func adviseScan(from, to uintptr) {
	if to > from {
		syscall.Syscall(syscall.SYS_MADVISE, from, to-from, syscall.MADV_NORMAL)
	}
}

// adviseRandom tells the kernel the mapped range [from, to) is looked up
// in, not read through (bbolt's own advice for its map).
func adviseRandom(from, to uintptr) {
	if to > from {
		syscall.Syscall(syscall.SYS_MADVISE, from, to-from, syscall.MADV_RANDOM)
	}
}
