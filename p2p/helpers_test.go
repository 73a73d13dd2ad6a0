package p2p

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestNode starts a node on 127.0.0.1 (TCP and QUIC), closed at cleanup.
func newTestNode(t testing.TB, edit ...func(*Config)) *Node {
	t.Helper()
	cfg := Config{
		Key:      newKey(t),
		Listen:   []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Timeouts: Timeouts{Dial: 20 * time.Second, Idle: 20 * time.Second, Stream: time.Minute},
	}
	for _, e := range edit {
		e(&cfg)
	}
	n, err := NewNode(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

// dialOnly starts a node that does not listen.
func dialOnly(cfg *Config) { cfg.Listen = nil }

// addrsFor returns n's addresses on one transport ("tcp" or "quic-v1").
func addrsFor(t testing.TB, n *Node, transport string) []string {
	t.Helper()
	var out []string
	for _, a := range n.Addrs() {
		isQUIC := strings.Contains(a, "/quic-v1/")
		if (transport == "quic-v1") == isQUIC {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		t.Fatalf("node has no %s address in %v", transport, n.Addrs())
	}
	return out
}

// errCatcher collects the result of a handler for the test goroutine.
type errCatcher struct{ ch chan error }

func newErrCatcher() *errCatcher { return &errCatcher{ch: make(chan error, 64)} }

func (c *errCatcher) put(err error) { c.ch <- err }

func (c *errCatcher) get(t testing.TB) error {
	t.Helper()
	select {
	case err := <-c.ch:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("handler did not report within 30 s")
		return nil
	}
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rssAnonKiB reads RssAnon from /proc/self/status (Linux); 0 elsewhere.
func rssAnonKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}
