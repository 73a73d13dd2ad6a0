package fhir

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"github.com/medvault/medvault/vault/record"
	"io"
	"strings"
	"unicode/utf8"
)

// Format is the layout of an input file, known after the first call to
// Reader.Next.
type Format int

// Input formats.
const (
	FormatUnknown  Format = iota
	FormatBundle          // one JSON object with "resourceType": "Bundle"
	FormatResource        // one JSON object holding a single non-Bundle resource
	FormatNDJSON          // one resource per line (FHIR bulk data)
)

func (f Format) String() string {
	switch f {
	case FormatBundle:
		return "bundle"
	case FormatResource:
		return "resource"
	case FormatNDJSON:
		return "ndjson"
	}
	return "unknown"
}

// bundleTypes are the R4 Bundle.type codes.
var bundleTypes = map[string]bool{
	"document": true, "message": true, "transaction": true, "transaction-response": true,
	"batch": true, "batch-response": true, "history": true, "searchset": true, "collection": true,
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

type readerState int

const (
	stStart   readerState = iota
	stTop                 // walking the members of the top-level object
	stEntries             // inside Bundle.entry
	stSingle              // one bare resource waiting to be returned
	stNDJSON
	stDone
)

// Reader reads the resources of one FHIR file, one at a time, in bounded
// memory. See the package documentation for the formats and the rules.
//
// A file is good only when Next has returned io.EOF: an error can come
// after resources were already returned (a truncated bundle, a bad entry
// late in the file), so callers that want all-or-nothing must not commit
// before that. A Reader is not safe for concurrent use.
type Reader struct {
	name string
	lim  Limits
	g    *guard
	br   *bufio.Reader
	ix   indexer

	state   readerState
	err     error
	format  Format
	count   int
	skipped int

	// JSON document
	dec         *json.Decoder
	base        int64 // absolute offset of the decoder's first byte
	lineBase    int   // lines before base, for a replayed bundle
	topKeys     map[string]bool
	entryKeys   map[string]bool
	entryIndex  int
	rtype       string
	sawRType    bool
	sawEntry    bool
	isBundle    bool
	replay      bool
	bundleType  json.RawMessage
	bundleMeta  json.RawMessage // the top-level object's meta
	pending     *Resource
	ndjson      *lineReader
	ndjsonIndex int
}

// NewReader returns a Reader for the file read from r. name identifies the
// file in errors (the caller's path); it is never read from.
func NewReader(r io.Reader, name string) *Reader {
	return NewReaderLimits(r, name, Limits{})
}

// NewReaderLimits is NewReader with explicit limits.
func NewReaderLimits(r io.Reader, name string, lim Limits) *Reader {
	lim = lim.withDefaults()
	g := newGuard(r)
	return &Reader{
		name:      name,
		lim:       lim,
		g:         g,
		topKeys:   map[string]bool{},
		entryKeys: map[string]bool{},
	}
}

// Format reports the file's format once Next has been called.
func (r *Reader) Format() Format { return r.format }

// BundleType reports Bundle.type for a bundle file, once known.
func (r *Reader) BundleType() string {
	if r.format != FormatBundle {
		return ""
	}
	s, _ := jval(r.bundleType).str()
	return s
}

// BundleLabels reports the labels that a bundle file's own meta.security
// codes give (a Bundle marked 42CFRPart2, say): they apply to every entry.
// It is complete once Next has returned io.EOF; nil for other files.
func (r *Reader) BundleLabels() []record.Label {
	if r.format != FormatBundle || r.bundleMeta == nil {
		return nil
	}
	return LabelsOf(nil, codings(pathOf(jval(r.bundleMeta), "security"), nil))
}

// Count reports how many resources Next has returned.
func (r *Reader) Count() int { return r.count }

// Skipped reports how many bundle entries were skipped because they carry
// no data: GET, HEAD or DELETE requests without a resource, and searchset
// entries whose search.mode is "outcome".
func (r *Reader) Skipped() int { return r.skipped }

// Next returns the next resource, or io.EOF once the whole file has been
// read and found valid. Any other error is a *ParseError, and is returned
// again by every later call.
func (r *Reader) Next() (*Resource, error) {
	if r.err != nil {
		return nil, r.err
	}
	res, err := r.next()
	if err != nil {
		if err != io.EOF {
			var pe *ParseError
			if !errors.As(err, &pe) {
				err = &ParseError{File: r.name, Index: -1, Offset: -1, Err: err}
			}
		}
		r.err = err
		r.release()
		return nil, err
	}
	r.count++
	if r.count > r.lim.MaxResources {
		r.err = r.perr(res.Index, res.Line, res.Offset, ErrTooMany)
		r.release()
		return nil, r.err
	}
	return res, nil
}

// ReadAll reads every resource of a file. It is meant for small files and
// tests; importers should use Next and bound their batches.
func ReadAll(rd io.Reader, name string, lim Limits) ([]*Resource, error) {
	r := NewReaderLimits(rd, name, lim)
	var out []*Resource
	for {
		res, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
}

func (r *Reader) release() {
	r.g.stopRecording()
	r.dec, r.pending, r.ndjson = nil, nil, nil
}

func (r *Reader) perr(index, line int, off int64, err error) *ParseError {
	return &ParseError{File: r.name, Index: index, Line: line, Offset: off, Err: err}
}

func (r *Reader) next() (*Resource, error) {
	for {
		switch r.state {
		case stStart:
			if err := r.start(); err != nil {
				return nil, err
			}
		case stTop:
			if err := r.walkTop(); err != nil {
				return nil, err
			}
		case stEntries:
			res, err := r.nextEntry()
			if res != nil || err != nil {
				return res, err
			}
		case stSingle:
			res := r.pending
			r.pending = nil
			r.state = stDone
			return res, nil
		case stNDJSON:
			return r.nextLine()
		default:
			return nil, io.EOF
		}
	}
}

// start detects the format from the first bytes.
func (r *Reader) start() error {
	t, err := loadTables()
	if err != nil {
		return wrapf(ErrInternal, "%v", err)
	}
	r.ix.t = t
	// Record everything from the first byte: a top-level object is not
	// known to be a streamable Bundle until its resourceType is seen.
	r.g.startRecording(r.lim.MaxResourceSize + 2*chunkSize)
	r.br = bufio.NewReaderSize(r.g, readBufSize(r.g.r))
	var base int64
	if p, _ := r.br.Peek(3); bytes.Equal(p, utf8BOM) {
		r.br.Discard(3)
		base = 3
	}
	for {
		p, err := r.br.Peek(1)
		if err != nil {
			if err == io.EOF {
				return r.perr(-1, 0, base, wrapf(ErrNotFHIR, "file is empty"))
			}
			return r.perr(-1, 0, base, r.readErr(err))
		}
		if !isSpace(p[0]) {
			break
		}
		r.br.Discard(1)
		base++
	}
	p, _ := r.br.Peek(1)
	switch p[0] {
	case '{':
	case '[':
		return r.perr(-1, r.g.lineAt(base), base, wrapf(ErrNotFHIR, "top-level JSON array; want an object or NDJSON"))
	default:
		return r.perr(-1, r.g.lineAt(base), base, ErrNotJSON)
	}
	r.startJSON(r.br, base, false)
	r.state = stTop
	return nil
}

func (r *Reader) startJSON(src io.Reader, base int64, replay bool) {
	r.dec = json.NewDecoder(src)
	r.base = base
	r.replay = replay
	clear(r.topKeys)
	r.sawRType, r.sawEntry, r.rtype, r.bundleType, r.bundleMeta = false, false, "", nil, nil
	r.isBundle = replay
	r.setLimit()
	// The first byte is known to be '{'.
	r.dec.Token()
}

// setLimit bounds the next token or value to MaxResourceSize bytes.
func (r *Reader) setLimit() {
	r.g.limit = r.base + r.dec.InputOffset() + int64(r.lim.MaxResourceSize) + 3*chunkSize
}

func (r *Reader) offset() int64 { return r.base + r.dec.InputOffset() }

func (r *Reader) lineAt(off int64) int {
	if l := r.g.lineAt(off - r.baseShift()); l > 0 {
		return l + r.lineBase
	}
	return 0
}

// baseShift is the absolute offset of the guard's first byte: zero for
// the file, the replayed object's start for a replayed bundle.
func (r *Reader) baseShift() int64 {
	if r.replay {
		return r.base
	}
	return 0
}

// walkTop reads members of the top-level object until it enters the
// entries of a Bundle or reaches the object's end.
func (r *Reader) walkTop() error {
	for r.dec.More() {
		r.setLimit()
		tok, err := r.dec.Token()
		if err != nil {
			return r.decErr(err, -1)
		}
		key, _ := tok.(string)
		if r.topKeys[key] {
			idx := 0
			if r.isBundle {
				idx = -1
			}
			off := r.offset()
			return r.perr(idx, r.lineAt(off), off, ErrDuplicateKey)
		}
		r.topKeys[key] = true
		r.setLimit()
		switch key {
		case "resourceType":
			var rt json.RawMessage
			if err := r.dec.Decode(&rt); err != nil {
				return r.decErr(err, -1)
			}
			s, ok := jval(rt).str()
			if !ok {
				return r.perr(-1, 0, r.offset(), wrapf(ErrNotFHIR, "resourceType is not a string"))
			}
			r.sawRType, r.rtype = true, s
			if s == "Bundle" && !r.sawEntry {
				r.isBundle = true
				r.format = FormatBundle
				r.g.stopRecording()
			}
		case "entry":
			r.sawEntry = true
			if r.isBundle {
				tok, err := r.dec.Token()
				if err != nil {
					return r.decErr(err, -1)
				}
				if d, ok := tok.(json.Delim); !ok || d != '[' {
					return r.perr(-1, 0, r.offset(), wrapf(ErrNotFHIR, "Bundle.entry is not an array"))
				}
				r.state = stEntries
				return nil
			}
			if err := r.skip(); err != nil {
				return err
			}
		case "type":
			var raw json.RawMessage
			if err := r.dec.Decode(&raw); err != nil {
				return r.decErr(err, -1)
			}
			r.bundleType = raw
		case "meta":
			var raw json.RawMessage
			if err := r.dec.Decode(&raw); err != nil {
				return r.decErr(err, -1)
			}
			r.bundleMeta = raw
		default:
			if err := r.skip(); err != nil {
				return err
			}
		}
	}
	if _, err := r.dec.Token(); err != nil { // '}'
		return r.decErr(err, -1)
	}
	end := r.offset()
	if r.isBundle {
		return r.finishBundle()
	}
	return r.finishObject(end)
}

func (r *Reader) skip() error {
	var raw json.RawMessage
	if err := r.dec.Decode(&raw); err != nil {
		return r.decErr(err, -1)
	}
	return nil
}

// finishBundle checks what follows a streamed bundle and its type.
func (r *Reader) finishBundle() error {
	r.format = FormatBundle
	more, err := r.trailing()
	if err != nil {
		return err
	}
	if more {
		return r.perr(-1, 0, r.offset(), wrapf(ErrNotFHIR, "data after the bundle (NDJSON lines must not hold Bundles that stream)"))
	}
	bt, ok := jval(r.bundleType).str()
	if !ok || !bundleTypes[bt] {
		return r.perr(-1, 0, -1, wrapf(ErrNotFHIR, "Bundle.type is missing or not an R4 bundle type"))
	}
	r.state = stDone
	r.dec = nil
	return nil
}

// finishObject decides what a fully recorded top-level object was: the
// first line of an NDJSON file, a bundle whose entries came before its
// resourceType, or a single resource.
func (r *Reader) finishObject(end int64) error {
	more, err := r.trailing()
	if err != nil {
		return err
	}
	rec := r.g.recorded()
	if more {
		// NDJSON: replay from the first byte, line by line.
		r.format = FormatNDJSON
		r.g.stopRecording()
		src := io.MultiReader(bytes.NewReader(rec), r.g)
		r.g.limit = -1
		r.ndjson = &lineReader{br: bufio.NewReaderSize(src, chunkSize), max: r.lim.MaxResourceSize}
		r.dec = nil
		r.state = stNDJSON
		return nil
	}
	start := r.base
	if !r.sawRType {
		return r.perr(-1, r.g.lineAt(start), start, wrapf(ErrNotFHIR, "no resourceType"))
	}
	if end > int64(len(rec)) || start > end {
		return r.perr(-1, 0, start, wrapf(ErrInternal, "recording lost"))
	}
	obj := rec[start:end]
	if r.rtype == "Bundle" {
		// The entries came before resourceType: replay the recorded object
		// as a bundle known to be one.
		r.format = FormatBundle
		r.lineBase = bytes.Count(rec[:start], []byte{'\n'})
		r.g.stopRecording()
		r.g = newGuard(bytes.NewReader(obj))
		r.startJSON(r.g, start, true)
		r.state = stTop
		return nil
	}
	r.format = FormatResource
	if len(obj) > r.lim.MaxResourceSize {
		return r.perr(0, 0, start, ErrTooLarge)
	}
	raw := bytes.Clone(obj)
	line := bytes.Count(rec[:start], []byte{'\n'}) + 1
	r.g.stopRecording()
	res, err := r.ix.index(raw, "")
	if err != nil {
		return r.perr(0, line, start, err)
	}
	res.Index, res.Line, res.Offset = 0, line, start
	r.pending = res
	r.state = stSingle
	r.dec = nil
	return nil
}

// trailing reports whether anything but whitespace follows the top-level
// object.
func (r *Reader) trailing() (bool, error) {
	r.g.limit = -1
	var rest io.Reader = r.dec.Buffered()
	if !r.replay {
		rest = io.MultiReader(rest, r.br)
	} else {
		rest = io.MultiReader(rest, r.g)
	}
	buf := make([]byte, 4096)
	for {
		n, err := rest.Read(buf)
		for _, c := range buf[:n] {
			if !isSpace(c) {
				return true, nil
			}
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, r.perr(-1, 0, -1, r.readErr(err))
		}
	}
}

// nextEntry reads one Bundle.entry. It returns (nil, nil) for a skipped
// entry and when the entries end.
func (r *Reader) nextEntry() (*Resource, error) {
	if !r.dec.More() {
		r.setLimit()
		if _, err := r.dec.Token(); err != nil { // ']'
			return nil, r.decErr(err, -1)
		}
		r.state = stTop
		return nil, nil
	}
	idx := r.entryIndex
	r.entryIndex++
	if r.entryIndex > r.lim.MaxResources {
		return nil, r.perr(idx, 0, r.offset(), ErrTooMany)
	}
	r.setLimit()
	tok, err := r.dec.Token()
	if err != nil {
		return nil, r.decErr(err, idx)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, r.perr(idx, 0, r.offset(), wrapf(ErrNotFHIR, "bundle entry is not an object"))
	}
	entryOff := r.offset() - 1
	line := r.lineAt(entryOff)
	fail := func(err error) (*Resource, error) { return nil, r.perr(idx, line, entryOff, err) }

	clear(r.entryKeys)
	var (
		raw       json.RawMessage
		rawOff    int64
		fullURL   string
		method    string
		mode      string
		hasResult bool
	)
	for r.dec.More() {
		r.setLimit()
		tok, err := r.dec.Token()
		if err != nil {
			return nil, r.decErr(err, idx)
		}
		key, _ := tok.(string)
		if r.entryKeys[key] {
			return fail(ErrDuplicateKey)
		}
		r.entryKeys[key] = true
		r.setLimit()
		var v json.RawMessage
		if err := r.dec.Decode(&v); err != nil {
			return nil, r.decErr(err, idx)
		}
		switch key {
		case "resource":
			raw, rawOff, hasResult = v, r.offset()-int64(len(v)), true
		case "fullUrl":
			s, ok := jval(v).str()
			if !ok || !validURL(s) {
				return fail(ErrBadFullURL)
			}
			fullURL = s
		case "request", "search":
			if r.ix.v.validate(v) != nil {
				return fail(ErrNotJSON)
			}
			if key == "request" {
				method = strings.ToUpper(jval(v).get("method").string())
			} else {
				mode = jval(v).get("mode").string()
			}
		}
	}
	r.setLimit()
	if _, err := r.dec.Token(); err != nil { // '}'
		return nil, r.decErr(err, idx)
	}
	if !hasResult {
		switch method {
		case "GET", "HEAD", "DELETE":
			r.skipped++
			return nil, nil
		}
		return fail(ErrNoResource)
	}
	if mode == "outcome" {
		r.skipped++
		return nil, nil
	}
	if len(raw) > r.lim.MaxResourceSize {
		return fail(ErrTooLarge)
	}
	res, err := r.ix.index(raw, fullURL)
	if err != nil {
		return fail(err)
	}
	res.Index, res.Line, res.Offset = idx, line, rawOff
	return res, nil
}

// validURL accepts a fullUrl of sane length without whitespace or control
// characters.
func validURL(s string) bool {
	if s == "" || len(s) > maxURL || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// splitRESTful returns the Type and id at the end of a RESTful URL or
// relative reference, dropping a "/_history/v" suffix.
func splitRESTful(u string) (typ, id string, ok bool) {
	if i := strings.Index(u, "/_history/"); i >= 0 {
		u = u[:i]
	}
	u = strings.TrimSuffix(u, "/")
	j := strings.LastIndexByte(u, '/')
	if j <= 0 {
		return "", "", false
	}
	id = u[j+1:]
	rest := u[:j]
	k := strings.LastIndexByte(rest, '/')
	typ = rest[k+1:]
	if typ == "" || id == "" {
		return "", "", false
	}
	return typ, id, true
}

func (r *Reader) nextLine() (*Resource, error) {
	for {
		line, lineNo, off, err := r.ndjson.next()
		if err == io.EOF {
			r.state = stDone
			return nil, io.EOF
		}
		idx := r.ndjsonIndex
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				return nil, r.perr(idx, lineNo, off, ErrTooLarge)
			}
			return nil, r.perr(idx, lineNo, off, r.readErr(err))
		}
		if lineNo == 1 && bytes.HasPrefix(line, utf8BOM) {
			line, off = line[3:], off+3
		}
		// Trim the terminator and surrounding blanks: Raw is the object.
		i, j := 0, len(line)
		for i < j && isSpace(line[i]) {
			i++
		}
		for j > i && isSpace(line[j-1]) {
			j--
		}
		if i == j {
			continue // blank line
		}
		r.ndjsonIndex++
		if j-i > r.lim.MaxResourceSize {
			return nil, r.perr(idx, lineNo, off+int64(i), ErrTooLarge)
		}
		if r.ndjsonIndex > r.lim.MaxResources {
			return nil, r.perr(idx, lineNo, off+int64(i), ErrTooMany)
		}
		raw := bytes.Clone(line[i:j])
		res, err := r.ix.index(raw, "")
		if err != nil {
			if errors.Is(err, ErrNotJSON) && !bytes.HasSuffix(line, []byte{'\n'}) {
				// An unparsable last line without its newline: the file
				// was most likely cut short.
				err = wrapf(ErrTruncated, "last line is incomplete")
			}
			return nil, r.perr(idx, lineNo, off+int64(i), err)
		}
		res.Index, res.Line, res.Offset = idx, lineNo, off+int64(i)
		return res, nil
	}
}

// decErr maps a json.Decoder error to a ParseError.
func (r *Reader) decErr(err error, idx int) error {
	off := int64(-1)
	if r.dec != nil {
		off = r.offset()
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, errLimit):
		if r.g.recording && !r.isBundle {
			return r.perr(idx, 0, off, wrapf(ErrTooLarge, "top-level object (a bundle must name its resourceType before its entries to stream)"))
		}
		return r.perr(idx, 0, off, ErrTooLarge)
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return r.perr(idx, 0, off, ErrTruncated)
	case errors.As(err, &se):
		off = r.base + se.Offset
		if strings.Contains(se.Error(), "exceeded max depth") {
			// encoding/json's own bound (10,000 levels), met before ours
			// while a bundle streams.
			return r.perr(idx, r.lineAt(off), off, ErrTooDeep)
		}
		return r.perr(idx, r.lineAt(off), off, ErrNotJSON)
	case errors.As(err, &te):
		return r.perr(idx, 0, off, ErrNotFHIR)
	case errors.As(err, new(*sourceError)):
		return r.perr(idx, 0, off, r.readErr(err))
	}
	return r.perr(idx, 0, off, ErrNotJSON)
}

func (r *Reader) readErr(err error) error {
	if errors.Is(err, errLimit) {
		return ErrTooLarge
	}
	var se *sourceError
	if errors.As(err, &se) {
		err = se.err
	}
	return wrapf(ErrRead, "%v", err)
}

// sourceError marks an error of the caller's reader, as opposed to one
// about the content.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// lineReader splits NDJSON input into lines of bounded length.
type lineReader struct {
	br   *bufio.Reader
	line int
	off  int64
	max  int
	buf  []byte
}

var errLineTooLong = errors.New("line too long")

// next returns the next line (with its terminator), its 1-based number and
// its offset. The slice is valid until the next call.
func (lr *lineReader) next() ([]byte, int, int64, error) {
	lr.buf = lr.buf[:0]
	start := lr.off
	for {
		frag, err := lr.br.ReadSlice('\n')
		lr.off += int64(len(frag))
		if len(lr.buf)+len(frag) > lr.max+2 {
			return nil, lr.line + 1, start, errLineTooLong
		}
		if err == bufio.ErrBufferFull {
			lr.buf = append(lr.buf, frag...)
			continue
		}
		if len(lr.buf) > 0 {
			lr.buf = append(lr.buf, frag...)
			frag = lr.buf
		}
		if err != nil && err != io.EOF {
			return nil, lr.line + 1, start, err
		}
		if err == io.EOF && len(frag) == 0 {
			return nil, 0, 0, io.EOF
		}
		lr.line++
		return frag, lr.line, start, nil
	}
}

// chunkSize is the most the guard hands out per Read, and the size of the
// bufio buffers.
const chunkSize = 64 << 10

var errLimit = errors.New("size limit reached")

// guard sits between the caller's reader and the JSON decoder. It
// enforces an absolute read limit (so no single value can make the
// decoder buffer more than MaxResourceSize), optionally records what it
// reads (to replay an object whose kind is known only at its end), and
// keeps the last two chunks to turn byte offsets into line numbers.
type guard struct {
	r     io.Reader
	pos   int64
	limit int64 // Read fails once pos reaches limit; -1 for none

	recording bool
	recMax    int
	rec       []byte

	prev, cur           []byte
	prevStart, curStart int64
	linesBeforePrev     int
	lastOff             int64 // the offset and line of the last lineAt answer
	lastLine            int
}

// readBufSize is the read buffer for src: chunkSize, or less for input
// held in memory whose length is known (a record decrypted to rebuild or
// check the reference index, most under 4 KiB, where a 64 KiB buffer per
// resource was most of the work).
func readBufSize(src io.Reader) int {
	if l, ok := src.(interface{ Len() int }); ok && l.Len() < chunkSize {
		return max(l.Len()+1, 16)
	}
	return chunkSize
}

func newGuard(r io.Reader) *guard { return &guard{r: r, limit: -1, lastOff: -1} }

func (g *guard) startRecording(max int) {
	g.recording, g.recMax, g.rec = true, max, g.rec[:0]
}

func (g *guard) stopRecording() { g.recording, g.rec = false, nil }

func (g *guard) recorded() []byte { return g.rec }

func (g *guard) Read(p []byte) (int, error) {
	if g.limit >= 0 && g.pos >= g.limit {
		return 0, errLimit
	}
	if len(p) > chunkSize {
		p = p[:chunkSize]
	}
	if g.limit >= 0 && int64(len(p)) > g.limit-g.pos {
		p = p[:g.limit-g.pos]
	}
	n, err := g.r.Read(p)
	if n > 0 {
		data := p[:n]
		if g.recording {
			if len(g.rec)+n > g.recMax {
				return 0, errLimit
			}
			g.rec = append(g.rec, data...)
		}
		g.linesBeforePrev += bytes.Count(g.prev, []byte{'\n'})
		g.prev, g.cur = g.cur, append(g.prev[:0], data...)
		g.prevStart, g.curStart = g.curStart, g.pos
		g.pos += int64(n)
	}
	if err != nil && err != io.EOF {
		return n, &sourceError{err}
	}
	return n, err
}

// lineAt returns the 1-based line of byte offset off, if off lies in the
// last two chunks read, else 0. Offsets asked for usually increase, so the
// previous answer is reused and only the bytes since are counted.
func (g *guard) lineAt(off int64) int {
	if off < 0 || off < g.prevStart || off > g.curStart+int64(len(g.cur)) {
		return 0
	}
	from, line := g.prevStart, g.linesBeforePrev+1
	if g.lastOff >= g.prevStart && g.lastOff <= off {
		from, line = g.lastOff, g.lastLine
	}
	line += g.countNL(from, off)
	g.lastOff, g.lastLine = off, line
	return line
}

// countNL counts the newlines between absolute offsets a and b, both in
// the window.
func (g *guard) countNL(a, b int64) int {
	n := 0
	if a < g.curStart {
		n += bytes.Count(g.prev[a-g.prevStart:min(b, g.curStart)-g.prevStart], []byte{'\n'})
		a = g.curStart
	}
	if b > a {
		n += bytes.Count(g.cur[a-g.curStart:b-g.curStart], []byte{'\n'})
	}
	return n
}
