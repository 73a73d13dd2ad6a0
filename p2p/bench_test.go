package p2p

import (
	"context"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"

	"github.com/medvault/medvault/p2p/frame"
)

const (
	benchRawProto protocol.ID = "/medvault/bench-raw/1.0.0"
	benchChunk                = 1 << 20
)

// zeros is an endless reader that does not even clear the buffer: it costs
// nothing, so the raw benchmark measures the stream alone.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { return len(p), nil }

// benchPair starts a server and a dial-only client, both on 127.0.0.1.
func benchPair(b *testing.B) (server, client *Node) {
	b.Helper()
	edit := func(c *Config) { c.Timeouts = Timeouts{Idle: time.Minute, Stream: time.Hour} }
	return newTestNode(b, edit), newTestNode(b, dialOnly, edit)
}

// reportMemory adds the process's anonymous memory and Go heap in use (both
// ends of the transfer live in this process).
func reportMemory(b *testing.B) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	if kib := rssAnonKiB(); kib > 0 {
		b.ReportMetric(float64(kib)/1024, "rssanon-MiB")
	}
}

// BenchmarkTransfer moves b.N MiB over one stream between two in-process
// nodes: "framed" with this package's 1 MiB frames and deadlines, "raw" with
// io.Copy on a bare libp2p stream between the same two hosts.
func BenchmarkTransfer(b *testing.B) {
	for _, transport := range []string{"tcp", "quic-v1"} {
		b.Run("framed/"+transport, func(b *testing.B) {
			server, client := benchPair(b)
			server.Handle(testProto, func(_ context.Context, s *Stream) {
				for {
					_, _, err := s.ReadFrame(frame.MaxPayload)
					if err == io.EOF {
						_ = s.WriteFrame(1, []byte("done"))
						return
					}
					if err != nil {
						b.Errorf("server: %v", err)
						return
					}
				}
			})
			s, err := client.Dial(context.Background(), addrsFor(b, server, transport), testProto)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			chunk := make([]byte, benchChunk)
			b.SetBytes(benchChunk)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.WriteFrame(2, chunk); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.CloseWrite(); err != nil {
				b.Fatal(err)
			}
			if _, _, err := s.ReadFrame(16); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			reportMemory(b)
		})
		b.Run("raw/"+transport, func(b *testing.B) {
			server, client := benchPair(b)
			server.h.SetStreamHandler(benchRawProto, func(ns network.Stream) {
				defer ns.Close()
				if _, err := io.Copy(io.Discard, ns); err != nil {
					b.Errorf("server: %v", err)
					return
				}
				_, _ = ns.Write([]byte{1})
			})
			if _, err := client.Dial(context.Background(), addrsFor(b, server, transport), testProto); err == nil {
				b.Fatal("test protocol unexpectedly served")
			} // connects
			ns, err := client.h.NewStream(context.Background(), server.ID(), benchRawProto)
			if err != nil {
				b.Fatal(err)
			}
			defer ns.Close()
			buf := make([]byte, benchChunk)
			b.SetBytes(benchChunk)
			b.ReportAllocs()
			b.ResetTimer()
			if _, err := io.CopyBuffer(ns, io.LimitReader(zeros{}, int64(b.N)*benchChunk), buf); err != nil {
				b.Fatal(err)
			}
			if err := ns.CloseWrite(); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(ns, buf[:1]); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			reportMemory(b)
		})
	}
}

// BenchmarkFirstRoundTrip measures connect + open stream + one request and
// its answer: "new-conn" on a fresh connection from an existing host,
// "new-host" including starting the dialing node, "existing-conn" only the
// stream on a connection already open.
func BenchmarkFirstRoundTrip(b *testing.B) {
	server := newTestNode(b)
	server.Handle(testProto, echo)
	addrs := addrsFor(b, server, "tcp")
	roundTrip := func(b *testing.B, c *Node) {
		s, err := c.Dial(context.Background(), addrs, testProto)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.WriteFrame(1, []byte("request")); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.ReadFrame(64); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	b.Run("new-conn", func(b *testing.B) {
		client := newTestNode(b, dialOnly)
		for i := 0; i < b.N; i++ {
			roundTrip(b, client)
			b.StopTimer()
			_ = client.h.Network().ClosePeer(server.ID())
			b.StartTimer()
		}
	})
	b.Run("new-host", func(b *testing.B) {
		key := newKey(b)
		for i := 0; i < b.N; i++ {
			client, err := NewNode(context.Background(), Config{Key: key})
			if err != nil {
				b.Fatal(err)
			}
			roundTrip(b, client)
			b.StopTimer()
			_ = client.Close()
			b.StartTimer()
		}
	})
	b.Run("existing-conn", func(b *testing.B) {
		client := newTestNode(b, dialOnly)
		roundTrip(b, client)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			roundTrip(b, client)
		}
	})
}

// BenchmarkConcurrentFetch has 50 providers fetch 16 MiB each from one node at
// the same time, b.N times, and reports aggregate throughput, the peak
// anonymous memory and heap of the whole process (serving node and the 50
// fetching nodes together), and the peak memory the serving node's resource
// manager had handed out (multiplexer windows and frame buffers).
func BenchmarkConcurrentFetch(b *testing.B) {
	const fetchers, perFetch = 50, 16 << 20
	server, _ := benchPair(b)
	server.Handle(ProtocolShare, func(_ context.Context, s *Stream) {
		if _, _, err := s.ReadFrame(frame.MaxControlPayload); err != nil {
			return
		}
		chunk := make([]byte, benchChunk)
		for sent := 0; sent < perFetch; sent += benchChunk {
			if err := s.WriteFrame(2, chunk); err != nil {
				return
			}
		}
	})
	addrs := addrsFor(b, server, "tcp")
	clients := make([]*Node, fetchers)
	for i := range clients {
		clients[i] = newTestNode(b, dialOnly)
	}
	runtime.GC()
	state, _ := server.h.Network().ResourceManager().(rcmgr.ResourceManagerState)
	var peakRSS, peakHeap uint64
	var peakServer int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				peakRSS = max(peakRSS, uint64(rssAnonKiB()))
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
				if state != nil {
					peakServer = max(peakServer, state.Stat().System.Memory)
				}
			}
		}
	}()
	b.SetBytes(fetchers * perFetch)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fetch(c, addrs, perFetch); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	close(stop)
	<-sampled
	b.ReportMetric(float64(peakRSS)/1024, "peak-rssanon-MiB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peakServer)/(1<<20), "peak-server-rcmgr-MiB")
}
