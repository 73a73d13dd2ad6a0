package p2p

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/medvault/medvault/p2p/frame"
)

func TestResourceManagerConnLimits(t *testing.T) {
	open := func(t *testing.T, rm network.ResourceManager, addr string) (network.ConnManagementScope, error) {
		t.Helper()
		return rm.OpenConnection(network.DirInbound, true, ma.StringCast(addr))
	}
	t.Run("defaults", func(t *testing.T) {
		l := Limits{}.withDefaults()
		rm, err := newResourceManager(l)
		if err != nil {
			t.Fatal(err)
		}
		defer rm.Close()
		var scopes []network.ConnManagementScope
		defer func() {
			for _, s := range scopes {
				s.Done()
			}
		}()
		mustOpen := func(addr string, n int) {
			t.Helper()
			for i := 0; i < n; i++ {
				s, err := open(t, rm, addr)
				if err != nil {
					t.Fatalf("%s: connection %d refused: %v", addr, i+1, err)
				}
				scopes = append(scopes, s)
			}
		}
		// 50 providers behind one NAT, all at once, and then some.
		mustOpen("/ip4/203.0.113.7/tcp/4001", l.MaxConnsPerIP)
		if _, err := open(t, rm, "/ip4/203.0.113.7/tcp/4001"); err == nil {
			t.Fatalf("connection %d from one address admitted", l.MaxConnsPerIP+1)
		}
		mustOpen("/ip4/198.51.100.9/tcp/4001", 1)
		// IPv6 addresses in one /56 share a limit.
		mustOpen("/ip6/2001:db8:0:1::1/tcp/4001", l.MaxConnsPerIP/2)
		mustOpen("/ip6/2001:db8:0:2::1/tcp/4001", l.MaxConnsPerIP/2)
		if _, err := open(t, rm, "/ip6/2001:db8:0:3::1/tcp/4001"); err == nil {
			t.Fatal("IPv6 /56 limit not applied")
		}
		// Loopback is exempt from the per-address limits, not from the
		// system-wide inbound limit.
		rest := l.MaxInboundConns - len(scopes)
		mustOpen("/ip4/127.0.0.1/tcp/4001", rest)
		if _, err := open(t, rm, "/ip4/127.0.0.1/tcp/4001"); err == nil {
			t.Fatalf("inbound connection %d admitted", l.MaxInboundConns+1)
		}
	})
	t.Run("rate", func(t *testing.T) {
		rm, err := newResourceManager(Limits{MaxConnsPerIP: 1000, ConnBurstPerIP: 10, ConnRatePerIP: 0.01}.withDefaults())
		if err != nil {
			t.Fatal(err)
		}
		defer rm.Close()
		for i := 0; i < 10; i++ {
			s, err := open(t, rm, "/ip4/203.0.113.8/tcp/4001")
			if err != nil {
				t.Fatalf("connection %d refused: %v", i+1, err)
			}
			s.Done() // closed at once: only the rate limit can refuse
		}
		if _, err := open(t, rm, "/ip4/203.0.113.8/tcp/4001"); err == nil {
			t.Fatal("rate limit not applied")
		}
		for i := 0; i < 100; i++ { // loopback is not rate limited
			s, err := open(t, rm, "/ip4/127.0.0.1/tcp/4001")
			if err != nil {
				t.Fatalf("loopback connection %d refused: %v", i+1, err)
			}
			s.Done()
		}
	})
}

func TestStreamsPerPeerLimit(t *testing.T) {
	server := newTestNode(t, func(c *Config) { c.Limits.MaxStreamsPerPeer = 2 })
	client := newTestNode(t, dialOnly)
	release := make(chan struct{})
	server.Handle(testProto, func(ctx context.Context, s *Stream) {
		if _, _, err := s.ReadFrame(16); err != nil {
			return
		}
		_ = s.WriteFrame(1, []byte("in"))
		<-release
	})
	defer close(release)
	addrs := addrsFor(t, server, "tcp")
	var refused int
	for i := 0; i < 3; i++ {
		s, err := client.Dial(context.Background(), addrs, testProto)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.SetIdleTimeout(20 * time.Second)
		if err := s.WriteFrame(1, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ReadFrame(16); err != nil {
			if !errors.Is(err, ErrReset) {
				t.Fatalf("stream %d: %v, want ErrReset", i+1, err)
			}
			refused++
		}
	}
	if refused != 1 {
		t.Fatalf("%d of 3 streams refused, want 1", refused)
	}
}

// TestImports enforces the package boundaries: p2p/frame imports only the
// standard library (package share may import it without pulling in libp2p),
// and p2p imports nothing of vault or share.
func TestImports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	list := func(format, pkg string) []string {
		out, err := exec.Command(goCmd, "list", "-deps", "-f", format, pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	for _, dep := range list("{{if not .Standard}}{{.ImportPath}}{{end}}", "./frame") {
		if dep != "github.com/medvault/medvault/p2p/frame" {
			t.Errorf("p2p/frame depends on %s; it must stay standard library only", dep)
		}
	}
	for _, dep := range list("{{.ImportPath}}", ".") {
		if strings.HasPrefix(dep, "github.com/medvault/medvault/vault") || strings.HasPrefix(dep, "github.com/medvault/medvault/share") {
			t.Errorf("p2p depends on %s", dep)
		}
	}
}

// TestFrameBufferAccounted checks that a stream's frame buffer is reserved in
// the libp2p resource manager while the stream is open and released after,
// and that a node whose budget cannot hold a 1 MiB buffer refuses the frame
// instead of allocating it.
func TestFrameBufferAccounted(t *testing.T) {
	server := newTestNode(t)
	server.Handle(testProto, func(_ context.Context, s *Stream) {
		if _, _, err := s.ReadFrame(16); err != nil {
			return
		}
		_ = s.WriteFrame(1, make([]byte, 1<<20))
		_, _, _ = s.ReadFrame(16) // until the client closes
	})
	addrs := addrsFor(t, server, "tcp")

	client := newTestNode(t, dialOnly)
	protoMemory := func() int64 {
		st := client.h.Network().ResourceManager().(rcmgr.ResourceManagerState).Stat()
		return st.Protocols[testProto].Memory
	}
	s, err := client.Dial(context.Background(), addrs, testProto)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFrame(1, []byte("go")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReadFrame(frame.MaxPayload); err != nil {
		t.Fatal(err)
	}
	if got := protoMemory(); got < 1<<20 {
		t.Fatalf("protocol scope holds %d bytes while a 1 MiB frame buffer is live", got)
	}
	s.Close()
	if got := protoMemory(); got != 0 {
		t.Fatalf("protocol scope holds %d bytes after Close", got)
	}

	poor := newTestNode(t, dialOnly, func(c *Config) { c.Limits.MaxMemory = 4 << 20 })
	s, err = poor.Dial(context.Background(), addrs, testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WriteFrame(1, []byte("go")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReadFrame(frame.MaxPayload); !errors.Is(err, frame.ErrNoMemory) {
		t.Fatalf("read with a 4 MiB node budget: %v, want frame.ErrNoMemory", err)
	}
}
