package vault

import (
	"os"
	"strconv"
	"strings"
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
	return newVaultIn(tb, tb.TempDir())
}

// newVaultIn creates a vault of the test identity in dir and opens it,
// until the test ends.
func newVaultIn(tb testing.TB, dir string) *Vault {
	tb.Helper()
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

// peakRSSAnon samples this process's anonymous memory every 2 ms until stop
// is closed, and reports the peak in MiB.
func peakRSSAnon(stop <-chan struct{}) <-chan float64 {
	return samplePeak(stop, 2*time.Millisecond, rssAnon)
}

// samplePeak calls f every interval until stop is closed, and reports the
// largest value it returned.
func samplePeak(stop <-chan struct{}, every time.Duration, f func() float64) <-chan float64 {
	out := make(chan float64, 1)
	go func() {
		peak := 0.0
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if v := f(); v > peak {
				peak = v
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func rssAnon() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "RssAnon:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
