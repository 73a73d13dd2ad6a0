//go:build !linux

package vault

const adviseSupported = false

func adviseWillNeed(from, to uintptr) {}

func adviseScan(from, to uintptr) {}

func adviseRandom(from, to uintptr) {}
