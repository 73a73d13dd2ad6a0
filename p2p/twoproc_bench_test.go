package p2p

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// twoProcSize is the bytes sent per run of BenchmarkTwoProcessStream:
// MEDVAULT_BENCH_SIZE, default 256 MiB.
func twoProcSize() int64 {
	if n, err := strconv.ParseInt(os.Getenv("MEDVAULT_BENCH_SIZE"), 10, 64); err == nil && n > 0 {
		return n
	}
	return 256 << 20
}

// BenchmarkTwoProcessStream is the reference for 'medvault fetch': a bare
// libp2p stream (TCP, Noise, yamux) between two processes on 127.0.0.1,
// the sender a child process, the receiver discarding. Run with
// MEDVAULT_BENCH_SIZE=1073741824 for 1 GiB; docs/bench/fetch.sh prints it
// beside medvault fetch.
func BenchmarkTwoProcessStream(b *testing.B) {
	size := twoProcSize()
	dir := b.TempDir()
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.Command(os.Args[0], "-test.run=^TestTwoProcessSender$", "-test.v")
	cmd.Env = append(os.Environ(), "MEDVAULT_P2P_SENDER="+addrFile, "MEDVAULT_BENCH_SIZE="+strconv.FormatInt(size, 10))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; {
		if data, err := os.ReadFile(addrFile); err == nil && strings.HasSuffix(string(data), "\n") {
			addr = strings.TrimSpace(string(data))
		} else if time.Now().After(deadline) {
			b.Fatal("sender did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	client := newTestNode(b, dialOnly, func(c *Config) { c.Timeouts = Timeouts{Idle: time.Minute, Stream: time.Hour} })
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		s, err := client.Dial(context.Background(), []string{addr}, benchRawProto)
		if err != nil {
			b.Fatal(err)
		}
		s.Write([]byte{1}) // the dialer speaks first
		n, err := io.Copy(io.Discard, s)
		s.Close()
		if err != nil || n != size {
			b.Fatalf("received %d of %d bytes: %v", n, size, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rssAnonKiB())/1024, "receiver-RssAnon-MiB")
}

// TestTwoProcessSender is the sending process of BenchmarkTwoProcessStream.
func TestTwoProcessSender(t *testing.T) {
	addrFile := os.Getenv("MEDVAULT_P2P_SENDER")
	if addrFile == "" {
		t.Skip("helper process for BenchmarkTwoProcessStream")
	}
	size := twoProcSize()
	n := newTestNode(t, func(c *Config) { c.Timeouts = Timeouts{Idle: time.Minute, Stream: time.Hour} })
	n.Handle(benchRawProto, func(ctx context.Context, s *Stream) {
		one := make([]byte, 1)
		io.ReadFull(s, one)
		io.CopyN(s, zeros{}, size)
		s.CloseWrite()
		s.Close()
	})
	os.WriteFile(addrFile, []byte(addrsFor(t, n, "tcp")[0]+"\n"), 0o600)
	time.Sleep(10 * time.Minute) // killed by the benchmark
}
