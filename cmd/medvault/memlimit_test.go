package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// An import lifts the memory target and the last one to end puts it back,
// so a node's later add or fetch runs under it again, whatever the order
// in which overlapping imports end.
func TestImportMemoryLimitComesBack(t *testing.T) {
	const target = 56 << 20
	old := debug.SetMemoryLimit(target)
	defer debug.SetMemoryLimit(old)
	first := liftMemoryLimit()
	second := liftMemoryLimit()
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("during imports: %d", got)
	}
	first()
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("with one import still running: %d", got)
	}
	second()
	if got := debug.SetMemoryLimit(-1); got != target {
		t.Fatalf("after the imports: %d, want %d", got, target)
	}
}
