//go:build !linux

package main

import "io"

// writeUnnamed is Linux-only (O_TMPFILE); elsewhere the caller uses a named
// temporary file.
func writeUnnamed(string, func(io.Writer) error) (bool, error) { return false, nil }
