package vault

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/medvault/medvault/vault/identity"
)

var testIdentity *identity.Identity

func mustIdentity(tb testing.TB) *identity.Identity {
	if testIdentity == nil {
		id, err := identity.Generate("Test Patient", identity.Patient)
		if err != nil {
			tb.Fatal(err)
		}
		testIdentity = id
	}
	return testIdentity
}

func newTestVault(tb testing.TB) *Vault {
	tb.Helper()
	dir := tb.TempDir()
	id := mustIdentity(tb)
	if err := Create(dir, id, Options{}); err != nil {
		tb.Fatal(err)
	}
	v, err := Open(dir, id, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
}

func benchSize() int64 {
	if s := os.Getenv("MEDVAULT_BENCH_SIZE"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 256 << 20
}
