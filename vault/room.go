package vault

import (
	"fmt"
	"syscall"
)

// RoomReserve is the free space CheckRoom keeps on the vault's disk beyond
// a record's bytes: room for the database's own growth (bbolt extends the
// file 16 MiB at a time) and the record's metadata and ledger entries.
const RoomReserve = 16 << 20

// CheckRoom returns an error wrapping syscall.ENOSPC if n more bytes of
// content would not fit on the vault's disk with RoomReserve to spare, so
// that a record too large for the disk (or a peer stating an absurd size)
// is refused before anything is written. Where free space cannot be told,
// it returns nil and a write that runs out fails as it would have.
func (v *Vault) CheckRoom(n int64) error {
	free, ok := freeBytes(v.dir)
	if !ok || n <= 0 {
		return nil
	}
	// Content is stored in bbolt pages: allow for their headers, one
	// 4 KiB page per 256 KiB chunk. (n is compared first: n plus that
	// could overflow.)
	if n <= free && free >= RoomReserve && n+n/chunkSize*4096 <= free-RoomReserve {
		return nil
	}
	return noRoomError{n, free}
}

// noRoomError reads as what does not fit and is syscall.ENOSPC to
// errors.Is.
type noRoomError struct{ need, free int64 }

func (e noRoomError) Error() string {
	return fmt.Sprintf("%s does not fit on the vault's disk (%s free, %s kept in reserve)",
		FormatSize(e.need), FormatSize(e.free), FormatSize(RoomReserve))
}

func (noRoomError) Unwrap() error { return syscall.ENOSPC }

// FormatSize writes a byte count for people: 1.5 GiB, 320.0 KiB, 12 B.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
