package p2p

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/medvault/medvault/p2p/frame"
)

const testProto protocol.ID = "/medvault/test/1.0.0"

// echo serves frames back until the peer closes its side.
func echo(_ context.Context, s *Stream) {
	for {
		typ, p, err := s.ReadFrame(frame.MaxPayload)
		if err != nil {
			return
		}
		if err := s.WriteFrame(typ, p); err != nil {
			return
		}
	}
}

func TestEcho(t *testing.T) {
	server := newTestNode(t)
	client := newTestNode(t, dialOnly)
	identities := make(chan ed25519.PublicKey, 4)
	server.Handle(testProto, func(ctx context.Context, s *Stream) {
		identities <- s.RemoteKey()
		if s.RemotePeer() != client.ID() {
			t.Errorf("server sees %s, want %s", s.RemotePeer(), client.ID())
		}
		echo(ctx, s)
	})
	clientPub := mustPub(t, client.ID())
	serverPub := mustPub(t, server.ID())

	for _, transport := range []string{"tcp", "quic-v1"} {
		t.Run(transport, func(t *testing.T) {
			s, err := client.Dial(context.Background(), addrsFor(t, server, transport), testProto)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.RemotePeer() != server.ID() || !s.RemoteKey().Equal(serverPub) {
				t.Fatalf("client sees %s, want %s", s.RemotePeer(), server.ID())
			}
			if s.Protocol() != testProto {
				t.Fatalf("protocol %s", s.Protocol())
			}
			for i, n := range []int{0, 1, 4096, 4097, 200 << 10, frame.MaxPayload} {
				want := bytes.Repeat([]byte{byte(i + 1)}, n)
				if err := s.WriteFrame(byte(i+1), want); err != nil {
					t.Fatalf("write %d: %v", n, err)
				}
				typ, got, err := s.ReadFrame(frame.MaxPayload)
				if err != nil {
					t.Fatalf("read %d: %v", n, err)
				}
				if typ != byte(i+1) || !bytes.Equal(got, want) {
					t.Fatalf("frame %d: echoed type %d, %d bytes", i, typ, len(got))
				}
			}
			if err := s.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.ReadFrame(16); err != io.EOF {
				t.Fatalf("after CloseWrite: %v, want io.EOF", err)
			}
			if got := <-identities; !got.Equal(clientPub) {
				t.Fatalf("server saw key %x, want the dialer's %x", got, clientPub)
			}
		})
	}
}

func mustPub(t testing.TB, id peer.ID) ed25519.PublicKey {
	t.Helper()
	pub, err := PublicKeyFromID(id)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestNodeIdentityFromKey(t *testing.T) {
	key := newKey(t)
	n := newTestNode(t, func(c *Config) { c.Key = key })
	want, _ := IDFromPublicKey(key.Public().(ed25519.PublicKey))
	if n.ID() != want {
		t.Fatalf("node id %s, want %s", n.ID(), want)
	}
	for _, a := range n.Addrs() {
		if !strings.HasPrefix(a, "/ip4/127.0.0.1/") || !strings.HasSuffix(a, "/p2p/"+want.String()) {
			t.Fatalf("unexpected address %s", a)
		}
	}
	// The node copied the key: clobbering the caller's copy changes nothing.
	clear(key)
	other := newTestNode(t, dialOnly)
	other.Handle(testProto, echo)
	s, err := other.Dial(context.Background(), addrsFor(t, n, "tcp"), ProtocolShare)
	if !errors.Is(err, ErrProtocolNotSupported) {
		t.Fatalf("dial after clobbering the key: %v (stream %v)", err, s)
	}
}

// A frame over the reader's limit is refused at its header; the stream
// stays open for the reader's answer, then ends.
func TestOversizedFrameRefused(t *testing.T) {
	server := newTestNode(t)
	client := newTestNode(t, dialOnly)
	results := newErrCatcher()
	server.Handle(testProto, func(_ context.Context, s *Stream) {
		typ, p, err := s.ReadFrame(1024)
		results.put(err)
		if err == nil {
			_ = s.WriteFrame(typ, p)
		} else if errors.Is(err, frame.ErrTooLarge) {
			_ = s.WriteFrame(9, []byte("too large"))
		}
	})
	addrs := addrsFor(t, server, "tcp")

	s, err := client.Dial(context.Background(), addrs, testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WriteFrame(1, make([]byte, 2048)); err != nil {
		t.Fatal(err)
	}
	srvErr := results.get(t)
	if !errors.Is(srvErr, frame.ErrTooLarge) {
		t.Fatalf("server: %v, want frame.ErrTooLarge", srvErr)
	}
	if !strings.Contains(srvErr.Error(), "2048 exceeds limit 1024") {
		t.Fatalf("server error is not explicit: %v", srvErr)
	}
	if typ, p, err := s.ReadFrame(1024); err != nil || typ != 9 || string(p) != "too large" {
		t.Fatalf("client: %d %q %v, want the server's answer", typ, p, err)
	}
	if _, _, err := s.ReadFrame(1024); err != io.EOF {
		t.Fatalf("client after the answer: %v, want io.EOF", err)
	}

	// The node keeps serving.
	s2, err := client.Dial(context.Background(), addrs, testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.WriteFrame(2, []byte("small")); err != nil {
		t.Fatal(err)
	}
	if typ, p, err := s2.ReadFrame(1024); err != nil || typ != 2 || string(p) != "small" {
		t.Fatalf("second stream: %v", err)
	}
	if err := results.get(t); err != nil {
		t.Fatal(err)
	}
}

func TestMalformedFrames(t *testing.T) {
	server := newTestNode(t)
	client := newTestNode(t, dialOnly)
	results := newErrCatcher()
	server.Handle(testProto, func(_ context.Context, s *Stream) {
		_, _, err := s.ReadFrame(frame.MaxControlPayload)
		results.put(err)
	})
	addrs := addrsFor(t, server, "tcp")
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"zero type", []byte{0, 0, 0, 0, 1, 'x'}, frame.ErrBadType},
		{"length ffffffff", []byte{1, 0xff, 0xff, 0xff, 0xff}, frame.ErrTooLarge},
		{"truncated header", []byte{1, 0, 0}, frame.ErrTruncated},
		{"truncated payload", []byte{1, 0, 0, 0, 10, 'a', 'b'}, frame.ErrTruncated},
		{"clean end", nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := client.Dial(context.Background(), addrs, testProto)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// With optimistic negotiation the handler runs once the dialer
			// sends something; CloseWrite flushes the negotiation, so even the
			// "clean end" case (no bytes at all) reaches the handler.
			if _, err := s.Write(tt.raw); err != nil {
				t.Fatal(err)
			}
			// The server may already have reset the stream (it does so
			// as soon as a header has type 0x00), so CloseWrite can fail:
			// what matters is what the server read.
			s.CloseWrite()
			if got := results.get(t); !errors.Is(got, tt.want) {
				t.Fatalf("server: %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStalledPeerCut(t *testing.T) {
	// The handlers shorten their idle timeout only once the exchange has
	// reached the point where the client stalls, so a loaded machine cannot
	// trip it earlier.
	server := newTestNode(t)
	client := newTestNode(t, dialOnly)
	addrs := addrsFor(t, server, "tcp")

	t.Run("stops reading", func(t *testing.T) {
		results := newErrCatcher()
		server.Handle(testProto, func(_ context.Context, s *Stream) {
			chunk := make([]byte, 1<<20)
			if _, _, err := s.ReadFrame(16); err != nil { // "go"
				results.put(err)
				return
			}
			if err := s.WriteFrame(1, chunk); err != nil {
				results.put(err)
				return
			}
			if _, _, err := s.ReadFrame(16); err != nil { // "got it"
				results.put(err)
				return
			}
			s.SetIdleTimeout(300 * time.Millisecond)
			for {
				if err := s.WriteFrame(1, chunk); err != nil {
					results.put(err)
					return
				}
			}
		})
		s, err := client.Dial(context.Background(), addrs, testProto)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.WriteFrame(1, []byte("go")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ReadFrame(frame.MaxPayload); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteFrame(1, []byte("got it")); err != nil {
			t.Fatal(err)
		}
		// Stop reading: the server's writes fill the window and stall.
		if err := results.get(t); !errors.Is(err, ErrTimeout) {
			t.Fatalf("server: %v, want ErrTimeout", err)
		}
	})

	t.Run("stops sending mid-frame", func(t *testing.T) {
		results := newErrCatcher()
		server.Handle(testProto, func(_ context.Context, s *Stream) {
			s.SetIdleTimeout(300 * time.Millisecond)
			_, _, err := s.ReadFrame(frame.MaxPayload)
			results.put(err)
		})
		s, err := client.Dial(context.Background(), addrs, testProto)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// A header announcing 100 bytes, then silence.
		if _, err := s.Write([]byte{1, 0, 0, 0, 100, 'a'}); err != nil {
			t.Fatal(err)
		}
		if err := results.get(t); !errors.Is(err, ErrTimeout) {
			t.Fatalf("server: %v, want ErrTimeout", err)
		}
		// The client learns that the server gave up.
		if _, _, err := s.ReadFrame(16); !errors.Is(err, ErrReset) {
			t.Fatalf("client: %v, want ErrReset", err)
		}
	})

	t.Run("node default applies", func(t *testing.T) {
		short := newTestNode(t, func(c *Config) { c.Timeouts.Idle = 300 * time.Millisecond })
		results := newErrCatcher()
		short.Handle(testProto, func(_ context.Context, s *Stream) {
			_, _, err := s.ReadFrame(frame.MaxPayload)
			results.put(err)
		})
		s, err := client.Dial(context.Background(), addrsFor(t, short, "tcp"), testProto)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Write([]byte{1, 0, 0}); err != nil {
			t.Fatal(err)
		}
		if err := results.get(t); !errors.Is(err, ErrTimeout) {
			t.Fatalf("server: %v, want ErrTimeout", err)
		}
	})
}

func TestStreamLifetime(t *testing.T) {
	server := newTestNode(t, func(c *Config) {
		c.Timeouts.Idle = 5 * time.Second
		c.Timeouts.Stream = 300 * time.Millisecond
	})
	client := newTestNode(t, dialOnly)
	results := newErrCatcher()
	server.Handle(testProto, func(ctx context.Context, s *Stream) {
		for {
			if _, _, err := s.ReadFrame(16); err != nil {
				results.put(err)
				<-ctx.Done() // the handler's context ends with the stream's life
				results.put(ctx.Err())
				return
			}
		}
	})
	s, err := client.Dial(context.Background(), addrsFor(t, server, "tcp"), testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go func() { // a busy peer: it never idles, but its stream's life ends
		for s.WriteFrame(1, []byte("tick")) == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if err := results.get(t); !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrReset) {
		t.Fatalf("server read: %v, want ErrTimeout or ErrReset", err)
	}
	if err := results.get(t); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("handler ctx: %v, want DeadlineExceeded", err)
	}
}

func TestClientDeadlines(t *testing.T) {
	server := newTestNode(t)
	client := newTestNode(t, dialOnly, func(c *Config) { c.Timeouts.Idle = time.Hour })
	release := make(chan struct{})
	server.Handle(testProto, func(_ context.Context, s *Stream) {
		<-release // never answers in time
	})
	defer close(release)
	s, err := client.Dial(context.Background(), addrsFor(t, server, "tcp"), testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WriteFrame(1, []byte("request")); err != nil {
		t.Fatal(err)
	}
	s.SetIdleTimeout(150 * time.Millisecond)
	if _, _, err := s.ReadFrame(16); !errors.Is(err, ErrTimeout) {
		t.Fatalf("idle: %v, want ErrTimeout", err)
	}

	s2, err := client.Dial(context.Background(), addrsFor(t, server, "tcp"), testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.WriteFrame(1, []byte("request")); err != nil {
		t.Fatal(err)
	}
	s2.SetDeadline(time.Now().Add(150 * time.Millisecond))
	if _, _, err := s2.ReadFrame(16); !errors.Is(err, ErrTimeout) {
		t.Fatalf("deadline: %v, want ErrTimeout", err)
	}
}

func TestConcurrentDialers(t *testing.T) {
	const dialers = 50
	const chunks, chunkSize = 4, 64 << 10
	server := newTestNode(t)
	var served atomic.Int32
	server.Handle(ProtocolShare, func(_ context.Context, s *Stream) {
		if _, _, err := s.ReadFrame(frame.MaxControlPayload); err != nil {
			t.Errorf("server read: %v", err)
			return
		}
		chunk := bytes.Repeat([]byte{0x5a}, chunkSize)
		for i := 0; i < chunks; i++ {
			if err := s.WriteFrame(2, chunk); err != nil {
				t.Errorf("server write: %v", err)
				return
			}
		}
		served.Add(1)
	})
	addrs := addrsFor(t, server, "tcp")
	clients := make([]*Node, dialers)
	for i := range clients {
		clients[i] = newTestNode(t, dialOnly)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, dialers)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- fetch(c, addrs, chunks*chunkSize)
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := served.Load(); got != dialers {
		t.Fatalf("served %d of %d", got, dialers)
	}
}

// fetch sends one request and reads frames until EOF, checking the total.
func fetch(c *Node, addrs []string, want int) error {
	s, err := c.Dial(context.Background(), addrs, ProtocolShare)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.WriteFrame(1, []byte("request")); err != nil {
		return err
	}
	total := 0
	for {
		_, p, err := s.ReadFrame(frame.MaxPayload)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		total += len(p)
	}
	if total != want {
		return fmt.Errorf("fetched %d bytes, want %d", total, want)
	}
	return nil
}

func TestDialErrors(t *testing.T) {
	server := newTestNode(t)
	server.Handle(testProto, echo)
	client := newTestNode(t, dialOnly)
	other := newTestNode(t)
	tcp := addrsFor(t, server, "tcp")[0]
	tcpTransport, _, _ := strings.Cut(tcp, "/p2p/")

	// A port that nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()

	secp, _, _ := crypto.GenerateSecp256k1Key(nil)
	secpID, _ := peer.IDFromPrivateKey(secp)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name  string
		ctx   context.Context
		addrs []string
		proto protocol.ID
		want  []error
	}{
		{"closed port", nil, []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", closedPort, server.ID())}, testProto, []error{ErrUnreachable}},
		{"wrong peer at address", nil, []string{tcpTransport + "/p2p/" + other.ID().String()}, testProto, []error{ErrPeerMismatch, ErrUnreachable}},
		{"protocol not served", nil, []string{tcp}, ProtocolPush, []error{ErrProtocolNotSupported}},
		{"no /p2p/", nil, []string{tcpTransport}, testProto, []error{ErrBadAddress}},
		{"garbage", nil, []string{"/ip4/127.0.0.1/tcp/notaport"}, testProto, []error{ErrBadAddress}},
		{"empty", nil, nil, testProto, []error{ErrBadAddress}},
		{"two peers", nil, []string{tcp, addrsFor(t, other, "tcp")[0]}, testProto, []error{ErrBadAddress}},
		{"self", nil, client.Addrs(), testProto, []error{ErrBadAddress}},
		{"non-ed25519 peer", nil, []string{tcpTransport + "/p2p/" + secpID.String()}, testProto, []error{ErrBadPeerID}},
		{"cancelled", cancelled, []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", closedPort, server.ID())}, testProto, []error{context.Canceled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "self" {
				tt.addrs = []string{"/ip4/127.0.0.1/tcp/1/p2p/" + client.ID().String()}
			}
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			s, err := client.Dial(ctx, tt.addrs, tt.proto)
			if err == nil {
				s.Close()
				t.Fatal("dial succeeded")
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Fatalf("error %v does not wrap %v", err, w)
				}
			}
			if tt.name != "wrong peer at address" && tt.name != "closed port" && errors.Is(err, ErrUnreachable) {
				t.Fatalf("error %v should not be ErrUnreachable", err)
			}
		})
	}

	// Backoff from the failed dial does not stick: once something listens
	// the same peer is reachable at once. DialPeer with a bare address works.
	s, err := client.DialPeer(context.Background(), server.ID(), []string{tcpTransport}, testProto)
	if err != nil {
		t.Fatalf("DialPeer: %v", err)
	}
	s.Close()
	if _, err := client.DialPeer(context.Background(), server.ID(), []string{tcpTransport + "/p2p/" + other.ID().String()}, testProto); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("DialPeer with another peer's address: %v", err)
	}

	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Dial(context.Background(), []string{tcp}, testProto); !errors.Is(err, ErrClosed) {
		t.Fatalf("dial after Close: %v, want ErrClosed", err)
	}
}

func TestHandlerPanic(t *testing.T) {
	logs := &logBuffer{}
	server := newTestNode(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	client := newTestNode(t, dialOnly)
	server.Handle(testProto, func(_ context.Context, s *Stream) {
		_, p, _ := s.ReadFrame(64)
		if string(p) == "panic" {
			panic("record title: Psychiatric evaluation") // must not reach the log
		}
		_ = s.WriteFrame(1, p)
	})
	addrs := addrsFor(t, server, "tcp")
	s, err := client.Dial(context.Background(), addrs, testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WriteFrame(1, []byte("panic")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReadFrame(64); !errors.Is(err, ErrReset) {
		t.Fatalf("client after handler panic: %v, want ErrReset", err)
	}
	s2, err := client.Dial(context.Background(), addrs, testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.WriteFrame(1, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := s2.ReadFrame(64); err != nil || string(p) != "ok" {
		t.Fatalf("node stopped serving after a panic: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "handler panic") {
		t.Fatalf("panic not logged: %q", out)
	}
	if strings.Contains(out, "Psychiatric") {
		t.Fatalf("panic value leaked into the log: %q", out)
	}
}

func TestCloseStopsHandlers(t *testing.T) {
	cfg := Config{Key: newKey(t), Listen: []string{"/ip4/127.0.0.1/tcp/0"}}
	server, err := NewNode(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := newTestNode(t, dialOnly)
	entered := make(chan struct{})
	var returned atomic.Bool
	server.Handle(testProto, func(ctx context.Context, s *Stream) {
		close(entered)
		_, _, _ = s.ReadFrame(16) // blocks: the client sends a partial frame
		<-ctx.Done()
		returned.Store(true)
	})
	s, err := client.Dial(context.Background(), server.Addrs(), testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte{1, 0}); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if !returned.Load() {
		t.Fatal("Close returned before the handler did")
	}
	if err := server.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewNodeRefusals(t *testing.T) {
	good := newKey(t)
	mismatched := append(ed25519.PrivateKey(nil), good...)
	mismatched[40] ^= 1
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		cfg  Config
		want error
	}{
		{"no key", nil, Config{}, ErrBadKey},
		{"seed only", nil, Config{Key: good[:32]}, ErrBadKey},
		{"public half mismatch", nil, Config{Key: mismatched}, ErrBadKey},
		{"websocket", nil, Config{Key: good, Listen: []string{"/ip4/127.0.0.1/tcp/0/ws"}}, ErrBadAddress},
		{"dns", nil, Config{Key: good, Listen: []string{"/dns4/localhost/tcp/0"}}, ErrBadAddress},
		{"quic draft", nil, Config{Key: good, Listen: []string{"/ip4/127.0.0.1/udp/0/quic"}}, ErrBadAddress},
		{"garbage", nil, Config{Key: good, Listen: []string{"127.0.0.1:0"}}, ErrBadAddress},
		{"with p2p", nil, Config{Key: good, Listen: []string{"/ip4/127.0.0.1/tcp/0/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"}}, ErrBadAddress},
		{"cancelled", cancelled, Config{Key: good}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			n, err := NewNode(ctx, tt.cfg)
			if err == nil {
				n.Close()
				t.Fatal("NewNode succeeded")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), fmt.Sprintf("%x", good.Seed()[:8])) {
				t.Fatal("error contains key material")
			}
		})
	}
	n := newTestNode(t, dialOnly)
	if len(n.Addrs()) != 0 {
		t.Fatalf("dial-only node listens on %v", n.Addrs())
	}
}

// TestForeignKeyTypeRefused checks the connection gater: a libp2p peer with
// a non-Ed25519 identity cannot connect to a medvault node.
func TestForeignKeyTypeRefused(t *testing.T) {
	server := newTestNode(t)
	secp, _, err := crypto.GenerateSecp256k1Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(secp), libp2p.NoListenAddrs, libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	info, err := peer.AddrInfoFromString(addrsFor(t, server, "tcp")[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// With TLS 1.3 the dialer may finish its side of the handshake before the
	// server's gater refuses; either way no stream can be opened.
	_ = h.Connect(ctx, *info)
	server.Handle(testProto, echo)
	if s, err := h.NewStream(ctx, server.ID(), testProto); err == nil {
		_, werr := s.Write([]byte{1, 0, 0, 0, 0})
		_, rerr := s.Read(make([]byte, 8))
		s.Reset()
		if werr == nil && rerr == nil {
			t.Fatal("secp256k1 peer got a working stream")
		}
	}
	if c := server.h.Network().ConnsToPeer(h.ID()); len(c) != 0 {
		t.Fatalf("server kept %d connections to a secp256k1 peer", len(c))
	}
}

// TestProtocolRemoved covers optimistic negotiation: the dialer believes the
// peer serves the protocol (identify said so), the peer no longer does, and
// the refusal arrives at Dial or with the first read. Either way the error is
// ErrProtocolNotSupported.
func TestProtocolRemoved(t *testing.T) {
	server := newTestNode(t)
	client := newTestNode(t, dialOnly)
	server.Handle(testProto, echo)
	addrs := addrsFor(t, server, "tcp")
	s, err := client.Dial(context.Background(), addrs, testProto)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	server.RemoveHandler(testProto)
	s, err = client.Dial(context.Background(), addrs, testProto)
	if err == nil {
		defer s.Close()
		if err = s.WriteFrame(1, []byte("hi")); err == nil {
			_, _, err = s.ReadFrame(16)
		}
	}
	if !errors.Is(err, ErrProtocolNotSupported) {
		t.Fatalf("got %v, want ErrProtocolNotSupported", err)
	}
}

// Ports names the ports the node took, and a node started again on them
// takes the same ones (serve keeps its ports across restarts this way).
func TestPortsAgain(t *testing.T) {
	key := newKey(t)
	n := newTestNode(t, func(c *Config) { c.Key = key })
	tcpPort, quicPort := n.Ports()
	if tcpPort == 0 || quicPort == 0 {
		t.Fatalf("ports %d, %d", tcpPort, quicPort)
	}
	var inAddrs int
	for _, a := range n.Addrs() {
		if strings.Contains(a, fmt.Sprintf("/tcp/%d/", tcpPort)) || strings.Contains(a, fmt.Sprintf("/udp/%d/quic-v1/", quicPort)) {
			inAddrs++
		}
	}
	if inAddrs != 2 {
		t.Fatalf("ports %d, %d not both in %v", tcpPort, quicPort, n.Addrs())
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	again := newTestNode(t, func(c *Config) {
		c.Key = key
		c.Listen = WithPorts([]string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}, tcpPort, quicPort)
	})
	if tp, qp := again.Ports(); tp != tcpPort || qp != quicPort {
		t.Fatalf("started again on %d, %d: took %d, %d", tcpPort, quicPort, tp, qp)
	}
}

func TestWithPorts(t *testing.T) {
	in := []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1", "/ip6/::/tcp/0", "/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4002/quic-v1", "bogus"}
	want := []string{"/ip4/0.0.0.0/tcp/41183", "/ip4/0.0.0.0/udp/50321/quic-v1", "/ip6/::/tcp/41183", "/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4002/quic-v1", "bogus"}
	if got := WithPorts(in, 41183, 50321); !slices.Equal(got, want) {
		t.Fatalf("got %q", got)
	}
	if got := WithPorts(in, 0, 0); !slices.Equal(got, in) {
		t.Fatalf("no ports to try: got %q", got)
	}
}

// The same listen address given twice is one listener: go-libp2p's QUIC
// transport panicked on the second ('serve --listen A --listen A', or a
// port-0 address that WithPorts turned into one given explicitly).
func TestDuplicateListenAddrs(t *testing.T) {
	n := newTestNode(t, func(c *Config) {
		c.Listen = []string{"/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0"}
	})
	if got := len(n.Addrs()); got != 2 {
		t.Fatalf("listening on %d addresses, want 2: %q", got, n.Addrs())
	}
}

// A node cannot listen on a TCP port another node holds: with libp2p's
// SO_REUSEPORT both bound it, and the kernel split the first node's
// incoming connections between the two (a review found serve starting a
// second node on a running one's port, from its node.ports file).
func TestListenPortTaken(t *testing.T) {
	first := newTestNode(t)
	a, err := ma.NewMultiaddr(addrsFor(t, first, "tcp")[0])
	if err != nil {
		t.Fatal(err)
	}
	port, err := a.ValueForProtocol(ma.P_TCP)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(context.Background(), Config{Key: newKey(t), Listen: []string{"/ip4/127.0.0.1/tcp/" + port}})
	if err == nil {
		n.Close()
		t.Fatalf("a second node listens on TCP port %s, which the first holds", port)
	}
}

// TestFailedStartLeaksNothing checks that what a node builds before it
// fails to listen is closed: its goroutines end. (libp2p.New, which
// newHost replaced, left two of the swarm's behind.) The port is held by a
// plain listener: a node holding it would start goroutines of its own
// while the test counts.
func TestFailedStartLeaksNothing(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			var addr string
			if proto == "tcp" {
				l, err := net.Listen("tcp4", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				addr = fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)
			} else {
				c, err := net.ListenPacket("udp4", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				addr = fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", c.LocalAddr().(*net.UDPAddr).Port)
			}
			key := newKey(t)
			before := goroutines()
			n, err := NewNode(context.Background(), Config{Key: key, Listen: []string{addr}})
			if err == nil {
				n.Close()
				t.Fatalf("a node listens on %s, which is taken", addr)
			}
			var left []string
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				left = left[:0]
				for id, stack := range goroutines() {
					if _, ok := before[id]; !ok && !strings.Contains(stack, "TestFailedStartLeaksNothing") {
						left = append(left, stack)
					}
				}
				if len(left) == 0 || time.Now().After(deadline) {
					break
				}
			}
			if len(left) > 0 {
				t.Fatalf("%d goroutines left by a failed start:\n%s", len(left), strings.Join(left, "\n\n"))
			}
		})
	}
}

// TestForcedPrivateNetworkRefused: with LIBP2P_FORCE_PNET=1, which asks
// libp2p programs to join only a private network, a node refuses to start
// (medvault has no private network key) instead of talking QUIC to the
// open network, which the upgrader's own check does not cover.
func TestForcedPrivateNetworkRefused(t *testing.T) {
	pnet.ForcePrivateNetwork = true
	defer func() { pnet.ForcePrivateNetwork = false }()
	n, err := NewNode(context.Background(), Config{Key: newKey(t), Listen: []string{"/ip4/127.0.0.1/udp/0/quic-v1"}})
	if err == nil {
		n.Close()
		t.Fatal("a node started with a private network forced and no key")
	}
	if !errors.Is(err, pnet.ErrNotInPrivateNetwork) {
		t.Fatalf("err = %v, want pnet.ErrNotInPrivateNetwork", err)
	}
}

// TestCloseTwice: a second Close of the host is harmless.
func TestCloseTwice(t *testing.T) {
	n := newTestNode(t)
	if err := n.h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.h.Close(); err != nil {
		t.Fatal(err)
	}
}

// goroutines returns the stacks of the running goroutines by ID.
func goroutines() map[string]string {
	buf := make([]byte, 1<<22)
	out := map[string]string{}
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		out[id] = g
	}
	return out
}
