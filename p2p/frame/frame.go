package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// HeaderSize is the size of a frame header: one type byte and a
// four-byte big-endian payload length.
const HeaderSize = 5

// MaxPayload is the largest payload any frame may carry: a 1 MiB data chunk
// plus 4 KiB for the chunk's own header. No reader accepts more, whatever limit
// its caller passes, and no writer sends more.
const MaxPayload = 1<<20 + 4<<10

// MaxControlPayload is the limit recommended for reads that expect a control
// message (a request, a grant token, a revocation notice) rather than a data
// chunk.
const MaxControlPayload = 64 << 10

// TypeInvalid is the reserved frame type 0x00. It never appears on the wire: a
// writer refuses it and a reader treats it as a protocol violation.
const TypeInvalid byte = 0x00

// smallWrite is the largest payload WriteFrame copies next to its header so
// that the frame goes out in a single Write call. Larger payloads are written
// with two calls (header, then payload) to avoid copying them.
const smallWrite = 4 << 10

// minBuffer is the smallest read buffer a Conn allocates.
const minBuffer = 512

// largeFrame is the payload size above which a frame is taken for a data
// chunk: the read buffer then grows straight to the read's limit.
const largeFrame = 64 << 10

// Errors returned by this package. Errors wrap them, so test with errors.Is.
var (
	// ErrTooLarge reports a frame whose payload exceeds the reader's limit
	// (or MaxPayload for a writer). The payload has not been read.
	ErrTooLarge = errors.New("frame too large")
	// ErrBadType reports a frame of the reserved type 0x00.
	ErrBadType = errors.New("invalid frame type")
	// ErrTruncated reports a stream that ended inside a frame. Errors wrapping
	// it also wrap io.ErrUnexpectedEOF.
	ErrTruncated = errors.New("truncated frame")
	// ErrNoMemory reports that the Budget refused the memory a frame needs.
	ErrNoMemory = errors.New("frame buffer memory limit reached")
	// ErrReleased reports a read on a Conn after Release.
	ErrReleased = errors.New("frame reader released")
)

// Budget accounts for the memory a Conn holds for its read buffer. The
// ReserveMemory/ReleaseMemory pair of a go-libp2p network.StreamScope
// satisfies it, so that frame buffers count against the libp2p resource
// manager's limits. prio is passed through unchanged (see BudgetPriority).
type Budget interface {
	ReserveMemory(size int, prio uint8) error
	ReleaseMemory(size int)
}

// BudgetPriority is the priority passed to Budget.ReserveMemory. It equals
// go-libp2p's network.ReservationPriorityHigh: the reservation succeeds while
// the scope stays at or under 80% of its memory limit, which leaves headroom
// for the transport's own buffers.
const BudgetPriority uint8 = 203

// Conn reads and writes frames on an io.ReadWriter.
//
// A Conn keeps one read buffer, which grows to the largest payload read so far
// (never beyond the limit passed to ReadFrame, nor MaxPayload) and is reused
// for every later frame: the payload returned by ReadFrame is valid only until
// the next ReadFrame or Release. Writes allocate nothing.
//
// One goroutine may read while another writes. ReadFrame calls are serialised
// with each other, and so are WriteFrame calls.
//
// Any error other than a refused WriteFrame argument leaves the stream out of
// step with the peer, so it is sticky: every later ReadFrame (or WriteFrame)
// returns the same error. io.EOF between frames is sticky too.
type Conn struct {
	rw     io.ReadWriter
	budget Budget

	rmu      sync.Mutex
	hdr      [HeaderSize]byte
	buf      []byte
	reserved int
	released bool
	rerr     error

	wmu  sync.Mutex
	werr error
	wbuf [HeaderSize + smallWrite]byte
}

// NewConn returns a Conn that frames rw. budget may be nil, in which case the
// read buffer is not accounted anywhere (it is still bounded by the limits).
func NewConn(rw io.ReadWriter, budget Budget) *Conn {
	return &Conn{rw: rw, budget: budget}
}

// clampLimit turns a caller's limit into the effective one: at most
// MaxPayload, and a negative limit admits only empty payloads (fail closed).
func clampLimit(limit int) int {
	if limit < 0 {
		return 0
	}
	if limit > MaxPayload {
		return MaxPayload
	}
	return limit
}

// checkHeader validates a frame header against limit and returns the type and
// payload length.
func checkHeader(hdr []byte, limit int) (byte, int, error) {
	typ := hdr[0]
	if typ == TypeInvalid {
		return 0, 0, fmt.Errorf("read frame: type 0x00: %w", ErrBadType)
	}
	n := binary.BigEndian.Uint32(hdr[1:HeaderSize])
	if uint64(n) > uint64(clampLimit(limit)) {
		return 0, 0, fmt.Errorf("read frame: type 0x%02x: payload length %d exceeds limit %d: %w",
			typ, n, clampLimit(limit), ErrTooLarge)
	}
	return typ, int(n), nil
}

// ReadFrame reads one frame whose payload is at most limit bytes (limit is
// capped at MaxPayload; a negative limit admits only empty payloads).
//
// It returns io.EOF, unwrapped, when the stream ends cleanly before a frame
// starts. A stream that ends inside a frame gives an error wrapping
// ErrTruncated and io.ErrUnexpectedEOF. A header announcing more than limit
// bytes gives ErrTooLarge before any payload is read or any memory reserved;
// type 0x00 gives ErrBadType. payload aliases the Conn's buffer: copy it to
// keep it past the next ReadFrame or Release. An empty payload is nil.
func (c *Conn) ReadFrame(limit int) (typ byte, payload []byte, err error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return 0, nil, c.rerr
	}
	typ, payload, err = c.readFrame(limit)
	if err != nil {
		c.rerr = err
		return 0, nil, err
	}
	return typ, payload, nil
}

func (c *Conn) readFrame(limit int) (byte, []byte, error) {
	if c.released {
		return 0, nil, fmt.Errorf("read frame: %w", ErrReleased)
	}
	if _, err := io.ReadFull(c.rw, c.hdr[:]); err != nil {
		switch {
		case err == io.EOF:
			return 0, nil, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			return 0, nil, fmt.Errorf("read frame header: %w: %w", ErrTruncated, io.ErrUnexpectedEOF)
		default:
			return 0, nil, fmt.Errorf("read frame header: %w", err)
		}
	}
	typ, n, err := checkHeader(c.hdr[:], limit)
	if err != nil {
		return 0, nil, err
	}
	if n == 0 {
		return typ, nil, nil
	}
	if err := c.grow(n, clampLimit(limit)); err != nil {
		return 0, nil, err
	}
	p := c.buf[:n]
	if _, err := io.ReadFull(c.rw, p); err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("read frame: type 0x%02x: payload: %w: %w", typ, ErrTruncated, io.ErrUnexpectedEOF)
		}
		return 0, nil, fmt.Errorf("read frame: type 0x%02x: payload: %w", typ, err)
	}
	return typ, p, nil
}

// grow makes sure the read buffer holds at least n bytes (n <= limit <=
// MaxPayload), reserving the extra memory from the budget first. Small frames
// grow the buffer by doubling, rounded up to 512 bytes and capped at limit; a
// frame over 64 KiB, which is a data chunk, sizes it to limit at once, so a
// stream of data chunks allocates once.
func (c *Conn) grow(n, limit int) error {
	if n <= cap(c.buf) {
		return nil
	}
	size := max(n, minBuffer, min(2*cap(c.buf), limit))
	if n > largeFrame {
		size = limit
	}
	size = (size + minBuffer - 1) / minBuffer * minBuffer
	size = max(min(size, limit), n)
	if delta := size - c.reserved; delta > 0 && c.budget != nil {
		if err := c.budget.ReserveMemory(delta, BudgetPriority); err != nil {
			return fmt.Errorf("read frame: reserve %d bytes: %w: %w", delta, ErrNoMemory, err)
		}
		c.reserved = size
	}
	clear(c.buf[:cap(c.buf)])
	c.buf = make([]byte, size)
	return nil
}

// Release zeroes and drops the read buffer, zeroes the write buffer, and
// returns the read buffer's memory to the budget. Payloads returned earlier become invalid; later reads fail with
// ErrReleased. Release does not close the underlying stream. It waits for a
// ReadFrame in progress, so close the stream first to unblock one.
func (c *Conn) Release() {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	clear(c.buf[:cap(c.buf)])
	c.buf = nil
	if c.budget != nil && c.reserved > 0 {
		c.budget.ReleaseMemory(c.reserved)
	}
	c.reserved = 0
	c.released = true
	// The write buffer holds the last small frame sent (often metadata).
	c.wmu.Lock()
	clear(c.wbuf[:])
	c.wmu.Unlock()
}

// WriteFrame writes one frame. It refuses type 0x00 (ErrBadType) and payloads
// longer than MaxPayload (ErrTooLarge) without writing anything; those refusals
// are not sticky. Payloads up to 4 KiB go out in a single Write call together
// with the header; larger ones in two calls, header then payload, without a
// copy.
func (c *Conn) WriteFrame(typ byte, payload []byte) error {
	if typ == TypeInvalid {
		return fmt.Errorf("write frame: type 0x00: %w", ErrBadType)
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("write frame: type 0x%02x: payload length %d exceeds %d: %w",
			typ, len(payload), MaxPayload, ErrTooLarge)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	putHeader(c.wbuf[:HeaderSize], typ, len(payload))
	var err error
	if len(payload) <= smallWrite {
		n := copy(c.wbuf[HeaderSize:], payload)
		_, err = c.rw.Write(c.wbuf[:HeaderSize+n])
	} else if _, err = c.rw.Write(c.wbuf[:HeaderSize]); err == nil {
		_, err = c.rw.Write(payload)
	}
	if err != nil {
		c.werr = fmt.Errorf("write frame: type 0x%02x: %w", typ, err)
		return c.werr
	}
	return nil
}

func putHeader(dst []byte, typ byte, n int) {
	dst[0] = typ
	binary.BigEndian.PutUint32(dst[1:HeaderSize], uint32(n))
}

// AppendFrame appends the encoding of one frame to dst. It refuses what
// WriteFrame refuses.
func AppendFrame(dst []byte, typ byte, payload []byte) ([]byte, error) {
	if typ == TypeInvalid {
		return dst, fmt.Errorf("append frame: type 0x00: %w", ErrBadType)
	}
	if len(payload) > MaxPayload {
		return dst, fmt.Errorf("append frame: payload length %d exceeds %d: %w", len(payload), MaxPayload, ErrTooLarge)
	}
	var hdr [HeaderSize]byte
	putHeader(hdr[:], typ, len(payload))
	dst = append(dst, hdr[:]...)
	return append(dst, payload...), nil
}

// ParseFrame decodes the frame at the start of b under the same rules as
// ReadFrame, and returns its payload (aliasing b) and the bytes after it. An
// empty b gives io.EOF; an incomplete frame gives ErrTruncated.
func ParseFrame(b []byte, limit int) (typ byte, payload, rest []byte, err error) {
	if len(b) == 0 {
		return 0, nil, nil, io.EOF
	}
	if len(b) < HeaderSize {
		return 0, nil, nil, fmt.Errorf("parse frame header: %w: %w", ErrTruncated, io.ErrUnexpectedEOF)
	}
	typ, n, err := checkHeader(b, limit)
	if err != nil {
		return 0, nil, nil, err
	}
	if len(b)-HeaderSize < n {
		return 0, nil, nil, fmt.Errorf("parse frame: type 0x%02x: payload: %w: %w", typ, ErrTruncated, io.ErrUnexpectedEOF)
	}
	if n == 0 {
		return typ, nil, b[HeaderSize:], nil
	}
	return typ, b[HeaderSize : HeaderSize+n], b[HeaderSize+n:], nil
}
