package frame

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

type vector struct {
	name    string
	limit   int
	input   []byte
	result  string
	typ     byte
	payload []byte
	rest    []byte
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	if s == "-" {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// vectorLines returns the non-comment, non-blank lines of a vector listing.
func vectorLines(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Join(strings.Fields(line), " "))
	}
	return out, sc.Err()
}

func loadVectors(t *testing.T) ([]vector, []string) {
	t.Helper()
	f, err := os.Open("testdata/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines, err := vectorLines(f)
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	for _, line := range lines {
		fs := strings.Fields(line)
		if len(fs) != 7 {
			t.Fatalf("vector line %q: want 7 fields, got %d", line, len(fs))
		}
		limit, err := strconv.Atoi(fs[1])
		if err != nil {
			t.Fatalf("vector %s: limit: %v", fs[0], err)
		}
		v := vector{name: fs[0], limit: limit, input: unhex(t, fs[2]), result: fs[3],
			payload: unhex(t, fs[5]), rest: unhex(t, fs[6])}
		if fs[4] != "-" {
			b := unhex(t, fs[4])
			if len(b) != 1 {
				t.Fatalf("vector %s: type must be one byte", v.name)
			}
			v.typ = b[0]
		}
		vs = append(vs, v)
	}
	if len(vs) < 10 {
		t.Fatalf("only %d vectors loaded", len(vs))
	}
	return vs, lines
}

func resultOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case err == io.EOF:
		return "eof"
	case errors.Is(err, ErrTooLarge):
		return "too-large"
	case errors.Is(err, ErrBadType):
		return "bad-type"
	case errors.Is(err, ErrTruncated):
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			return "truncated-without-unexpected-eof"
		}
		return "truncated"
	default:
		return "other: " + err.Error()
	}
}

func TestVectors(t *testing.T) {
	vs, _ := loadVectors(t)
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			// ParseFrame on a byte slice.
			typ, payload, rest, err := ParseFrame(v.input, v.limit)
			if got := resultOf(err); got != v.result {
				t.Fatalf("ParseFrame: result %s, want %s", got, v.result)
			}
			// ReadFrame on a stream.
			r := bytes.NewReader(v.input)
			c := NewConn(struct {
				io.Reader
				io.Writer
			}{r, io.Discard}, nil)
			rtyp, rpayload, rerr := c.ReadFrame(v.limit)
			if got := resultOf(rerr); got != v.result {
				t.Fatalf("ReadFrame: result %s, want %s", got, v.result)
			}
			if v.result != "ok" {
				return
			}
			remaining, _ := io.ReadAll(r)
			for _, got := range []struct {
				typ           byte
				payload, rest []byte
			}{{typ, payload, rest}, {rtyp, rpayload, remaining}} {
				if got.typ != v.typ || !bytes.Equal(got.payload, v.payload) || !bytes.Equal(got.rest, v.rest) {
					t.Fatalf("got type %02x payload %x rest %x; want %02x %x %x",
						got.typ, got.payload, got.rest, v.typ, v.payload, v.rest)
				}
			}
			enc, err := AppendFrame(nil, v.typ, v.payload)
			if err != nil {
				t.Fatal(err)
			}
			if want := v.input[:len(v.input)-len(v.rest)]; !bytes.Equal(enc, want) {
				t.Fatalf("AppendFrame = %x, want %x", enc, want)
			}
		})
	}
}

// TestVectorsMatchProtocolDoc checks that PROTOCOL.md lists exactly the
// vectors in testdata, so the specification cannot drift from the tests.
func TestVectorsMatchProtocolDoc(t *testing.T) {
	_, want := loadVectors(t)
	doc, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "<!-- frame vectors: p2p/frame/testdata/vectors.txt -->"
	_, after, ok := strings.Cut(string(doc), marker)
	if !ok {
		t.Fatalf("PROTOCOL.md lacks the marker %q", marker)
	}
	_, after, ok = strings.Cut(after, "```text\n")
	if !ok {
		t.Fatal("PROTOCOL.md: no ```text block after the vector marker")
	}
	block, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatal("PROTOCOL.md: unterminated vector block")
	}
	got, err := vectorLines(strings.NewReader(block))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("PROTOCOL.md vectors differ from testdata/vectors.txt:\n--- doc\n%s\n--- testdata\n%s",
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWriteFrameRefusals(t *testing.T) {
	tests := []struct {
		name    string
		typ     byte
		payload []byte
		want    error
	}{
		{"zero type", 0, []byte("x"), ErrBadType},
		{"over max", 1, make([]byte, MaxPayload+1), ErrTooLarge},
		{"at max", 1, make([]byte, MaxPayload), nil},
		{"empty", 7, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := NewConn(struct {
				io.Reader
				io.Writer
			}{strings.NewReader(""), &buf}, nil)
			err := c.WriteFrame(tt.typ, tt.payload)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("WriteFrame error %v, want %v", err, tt.want)
			}
			if tt.want != nil {
				if buf.Len() != 0 {
					t.Fatalf("refused frame wrote %d bytes", buf.Len())
				}
				// Refusals are not sticky.
				if err := c.WriteFrame(1, []byte("ok")); err != nil {
					t.Fatalf("write after refusal: %v", err)
				}
				if _, err := AppendFrame(nil, tt.typ, tt.payload); !errors.Is(err, tt.want) {
					t.Fatalf("AppendFrame error %v, want %v", err, tt.want)
				}
				return
			}
			if buf.Len() != HeaderSize+len(tt.payload) {
				t.Fatalf("wrote %d bytes, want %d", buf.Len(), HeaderSize+len(tt.payload))
			}
		})
	}
}

// countingWriter counts Write calls.
type countingWriter struct {
	bytes.Buffer
	calls int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.calls++
	return w.Buffer.Write(p)
}

func TestWriteCalls(t *testing.T) {
	for _, tt := range []struct {
		size, calls int
	}{{0, 1}, {smallWrite, 1}, {smallWrite + 1, 2}, {MaxPayload, 2}} {
		var w countingWriter
		c := NewConn(struct {
			io.Reader
			io.Writer
		}{strings.NewReader(""), &w}, nil)
		p := bytes.Repeat([]byte{0xab}, tt.size)
		if err := c.WriteFrame(9, p); err != nil {
			t.Fatal(err)
		}
		if w.calls != tt.calls {
			t.Errorf("payload %d: %d Write calls, want %d", tt.size, w.calls, tt.calls)
		}
		typ, got, rest, err := ParseFrame(w.Bytes(), MaxPayload)
		if err != nil || typ != 9 || !bytes.Equal(got, p) || len(rest) != 0 {
			t.Errorf("payload %d: round trip failed: %v", tt.size, err)
		}
	}
}

// failAfter fails every Write after the first n bytes.
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		w := f.n
		f.n = 0
		return w, errors.New("broken pipe")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestStickyErrors(t *testing.T) {
	// Read side: a framing error sticks even if valid frames follow.
	in, _ := AppendFrame([]byte{0, 0, 0, 0, 0}, 1, []byte("after"))
	c := NewConn(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(in), io.Discard}, nil)
	_, _, err1 := c.ReadFrame(16)
	_, _, err2 := c.ReadFrame(16)
	if !errors.Is(err1, ErrBadType) || err2 != err1 {
		t.Fatalf("errors %v then %v, want the same ErrBadType twice", err1, err2)
	}
	// Write side: a failed partial write sticks.
	w := NewConn(struct {
		io.Reader
		io.Writer
	}{strings.NewReader(""), &failAfter{n: 3}}, nil)
	werr := w.WriteFrame(1, []byte("hello"))
	if werr == nil || w.WriteFrame(1, nil) != werr {
		t.Fatalf("write errors not sticky: %v", werr)
	}
}

func TestPipeRoundTrip(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ca, cb := NewConn(a, nil), NewConn(b, nil)
	sizes := []int{0, 1, 100, smallWrite, smallWrite + 1, 300 << 10, MaxPayload}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, n := range sizes {
			if err := ca.WriteFrame(byte(i+1), bytes.Repeat([]byte{byte(i)}, n)); err != nil {
				t.Errorf("write %d: %v", n, err)
				return
			}
		}
		a.Close()
	}()
	for i, n := range sizes {
		typ, p, err := cb.ReadFrame(MaxPayload)
		if err != nil {
			t.Fatalf("read %d: %v", n, err)
		}
		if typ != byte(i+1) || len(p) != n || (n > 0 && (p[0] != byte(i) || p[n-1] != byte(i))) {
			t.Fatalf("frame %d: type %d len %d", i, typ, len(p))
		}
	}
	if _, _, err := cb.ReadFrame(MaxPayload); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
	wg.Wait()
}

// testBudget is an in-memory Budget with a hard limit.
type testBudget struct {
	mu          sync.Mutex
	limit, used int
	peak        int
}

func (b *testBudget) ReserveMemory(n int, prio uint8) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if prio != BudgetPriority {
		return fmt.Errorf("unexpected priority %d", prio)
	}
	if b.used+n > b.limit {
		return errors.New("test budget exhausted")
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	return nil
}

func (b *testBudget) ReleaseMemory(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.used < 0 {
		panic("test budget released more than reserved")
	}
}

func TestBudget(t *testing.T) {
	var in []byte
	for _, n := range []int{10, 600, 5000, 5000, 40000} {
		in, _ = AppendFrame(in, 1, make([]byte, n))
	}
	b := &testBudget{limit: 64 << 10}
	c := NewConn(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(in), io.Discard}, b)
	for i := 0; i < 5; i++ {
		if _, _, err := c.ReadFrame(MaxPayload); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if b.used != cap(c.buf) {
			t.Fatalf("frame %d: reserved %d, buffer %d", i, b.used, cap(c.buf))
		}
	}
	if err := c.WriteFrame(1, []byte("secret metadata")); err != nil {
		t.Fatal(err)
	}
	c.Release()
	if b.used != 0 {
		t.Fatalf("after Release %d bytes still reserved", b.used)
	}
	if c.wbuf != [len(c.wbuf)]byte{} {
		t.Fatal("Release left the last frame written in the write buffer")
	}
	if _, _, err := c.ReadFrame(16); !errors.Is(err, ErrReleased) {
		t.Fatalf("read after Release: %v", err)
	}

	// A frame that the budget cannot cover is refused before its payload is read.
	in, _ = AppendFrame(nil, 1, make([]byte, 100<<10))
	small := &testBudget{limit: 64 << 10}
	c = NewConn(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(in), io.Discard}, small)
	if _, _, err := c.ReadFrame(MaxPayload); !errors.Is(err, ErrNoMemory) {
		t.Fatalf("over budget: %v, want ErrNoMemory", err)
	}
	if small.used != 0 {
		t.Fatalf("failed reservation left %d bytes reserved", small.used)
	}
}

func TestBufferBounded(t *testing.T) {
	// Many frames of 1 MiB reuse one buffer; the buffer never exceeds MaxPayload.
	var in []byte
	for i := 0; i < 4; i++ {
		in, _ = AppendFrame(in, 1, make([]byte, 1<<20))
	}
	in, _ = AppendFrame(in, 1, make([]byte, MaxPayload))
	c := NewConn(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(in), io.Discard}, nil)
	var first *byte
	for i := 0; i < 5; i++ {
		_, p, err := c.ReadFrame(MaxPayload)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = &p[0]
		} else if &p[0] != first {
			t.Fatalf("frame %d: buffer was reallocated", i)
		}
		if cap(c.buf) > MaxPayload {
			t.Fatalf("buffer %d exceeds MaxPayload", cap(c.buf))
		}
	}
}

func BenchmarkPipeFrames(b *testing.B) {
	a, c := net.Pipe()
	defer a.Close()
	defer c.Close()
	wa, rc := NewConn(a, nil), NewConn(c, nil)
	payload := make([]byte, 1<<20)
	go func() {
		for {
			if _, _, err := rc.ReadFrame(MaxPayload); err != nil {
				return
			}
		}
	}()
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := wa.WriteFrame(1, payload); err != nil {
			b.Fatal(err)
		}
	}
}
