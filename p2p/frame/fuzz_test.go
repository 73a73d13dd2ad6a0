package frame

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	f.Add([]byte{}, 16)
	f.Add([]byte{1, 0, 0, 0, 0}, 0)
	f.Add([]byte{1, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}, 16)
	f.Add([]byte{2, 0, 0, 0, 1, 'a', 3, 0, 0, 0, 0}, 16)
	f.Add([]byte{1, 0, 0, 0, 5, 'h', 'e'}, 16)
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff}, MaxPayload)
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff}, MaxPayload)
	f.Add([]byte{1, 0x00, 0x10, 0x10, 0x01}, 1<<30)
	f.Add([]byte{1, 0, 0, 0, 1, 'x'}, -1)
	f.Add([]byte{1, 0, 0}, 16)
}

// FuzzReadFrame reads frames from arbitrary bytes until an error, checking that
// the reader never panics, never returns more than the limit, agrees with
// ParseFrame, and that every accepted frame re-encodes to the bytes it came
// from.
func FuzzReadFrame(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		r := bytes.NewReader(in)
		c := NewConn(struct {
			io.Reader
			io.Writer
		}{r, io.Discard}, &testBudget{limit: MaxPayload})
		rest := in
		for {
			typ, p, err := c.ReadFrame(limit)
			ptyp, pp, prest, perr := ParseFrame(rest, limit)
			if resultOf(err) != resultOf(perr) {
				t.Fatalf("ReadFrame %v, ParseFrame %v", err, perr)
			}
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrBadType) && !errors.Is(err, ErrTruncated) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			if typ == TypeInvalid || len(p) > clampLimit(limit) || len(p) > MaxPayload {
				t.Fatalf("accepted type %d len %d under limit %d", typ, len(p), limit)
			}
			if typ != ptyp || !bytes.Equal(p, pp) {
				t.Fatal("ReadFrame and ParseFrame disagree")
			}
			enc, err := AppendFrame(nil, typ, p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, rest[:len(rest)-len(prest)]) {
				t.Fatalf("re-encoding %x differs from input %x", enc, rest[:len(rest)-len(prest)])
			}
			if r.Len() != len(prest) {
				t.Fatalf("reader consumed %d, parser %d", len(in)-r.Len(), len(in)-len(prest))
			}
			rest = prest
		}
	})
}

// FuzzRoundTrip checks that any frame a writer accepts is read back intact.
func FuzzRoundTrip(f *testing.F) {
	f.Add(byte(1), []byte("hello"))
	f.Add(byte(0), []byte("refused"))
	f.Add(byte(0xff), []byte{})
	f.Fuzz(func(t *testing.T, typ byte, payload []byte) {
		var buf bytes.Buffer
		c := NewConn(struct {
			io.Reader
			io.Writer
		}{&buf, &buf}, nil)
		if err := c.WriteFrame(typ, payload); err != nil {
			if typ != TypeInvalid {
				t.Fatalf("write refused: %v", err)
			}
			return
		}
		gt, gp, err := c.ReadFrame(len(payload))
		if err != nil || gt != typ || !bytes.Equal(gp, payload) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
