//go:build !linux

package vault

import "os"

// fallocate is Linux's; elsewhere bbolt grows the file as it writes.
func fallocate(*os.File, int64, int64) error { return errNoPrealloc }
