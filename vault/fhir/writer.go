package fhir

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"unicode/utf8"
)

// isUUID reports whether s is a UUID in its 8-4-4-4-12 hex form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// BundleWriter writes resources as one FHIR R4 Bundle of type
// "collection", streaming: each resource goes out as soon as it is
// written, with its original bytes untouched:
//
//	{"resourceType":"Bundle","type":"collection","entry":[
//	{"fullUrl":"urn:uuid:...","resource":<raw bytes>},
//	...
//	]}
//
// Close writes the closing brackets; until then the output is not valid
// JSON.
type BundleWriter struct {
	w      *bufio.Writer
	n      int
	closed bool
	err    error
	v      validator
}

// NewBundleWriter returns a BundleWriter writing to w.
func NewBundleWriter(w io.Writer) *BundleWriter {
	return &BundleWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// Write adds r to the bundle. Its fullUrl is r.FullURL when set, else
// "urn:uuid:<id>" when r.ID is a UUID, else absent.
func (bw *BundleWriter) Write(r *Resource) error {
	return bw.WriteRaw(exportURL(r), r.Raw)
}

// WriteRaw adds one resource given by its exact bytes and fullUrl ("" for
// none). raw must be one JSON object; it is written unchanged.
func (bw *BundleWriter) WriteRaw(fullURL string, raw []byte) error {
	if bw.err != nil {
		return bw.err
	}
	if bw.closed {
		return ErrWriterClosed
	}
	if err := bw.v.validate(raw); err != nil || !jval(raw).isObject() {
		return ErrInvalidRaw
	}
	if fullURL != "" && !validURL(fullURL) {
		return ErrBadFullURL
	}
	var head []byte
	if bw.n == 0 {
		head = append(head, `{"resourceType":"Bundle","type":"collection","entry":[`+"\n"...)
	} else {
		head = append(head, ",\n"...)
	}
	head = append(head, '{')
	if fullURL != "" {
		head = append(head, `"fullUrl":`...)
		head = appendJSONString(head, fullURL)
		head = append(head, ',')
	}
	head = append(head, `"resource":`...)
	bw.write(head)
	bw.write(raw)
	bw.write([]byte{'}'})
	bw.n++
	return bw.err
}

func (bw *BundleWriter) write(b []byte) {
	if bw.err == nil {
		_, bw.err = bw.w.Write(b)
	}
}

// Close finishes the bundle and flushes it. It does not close the
// underlying writer. An empty bundle is valid ("entry" is omitted).
func (bw *BundleWriter) Close() error {
	if bw.closed {
		return bw.err
	}
	bw.closed = true
	if bw.n == 0 {
		bw.write([]byte(`{"resourceType":"Bundle","type":"collection"}` + "\n"))
	} else {
		bw.write([]byte("\n]}\n"))
	}
	if bw.err == nil {
		bw.err = bw.w.Flush()
	}
	return bw.err
}

// NDJSONWriter writes one resource per line (FHIR bulk data format).
// A resource whose bytes contain a line break is compacted with
// json.Compact first (whitespace between tokens removed; string contents
// cannot hold raw line breaks, so no value changes). That is the only
// change ever made to a resource's bytes, and only here: a resource
// exported as NDJSON may therefore not be byte-identical to the one
// imported, while a bundle export always is.
type NDJSONWriter struct {
	w      *bufio.Writer
	closed bool
	err    error
	v      validator
	buf    bytes.Buffer
}

// NewNDJSONWriter returns an NDJSONWriter writing to w.
func NewNDJSONWriter(w io.Writer) *NDJSONWriter {
	return &NDJSONWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// Write writes r as one line.
func (nw *NDJSONWriter) Write(r *Resource) error { return nw.WriteRaw(r.Raw) }

// WriteRaw writes one resource given by its bytes as one line.
func (nw *NDJSONWriter) WriteRaw(raw []byte) error {
	if nw.err != nil {
		return nw.err
	}
	if nw.closed {
		return ErrWriterClosed
	}
	if err := nw.v.validate(raw); err != nil || !jval(raw).isObject() {
		return ErrInvalidRaw
	}
	line := raw
	if bytes.ContainsAny(raw, "\r\n") {
		nw.buf.Reset()
		if err := json.Compact(&nw.buf, raw); err != nil {
			return ErrInvalidRaw
		}
		line = nw.buf.Bytes()
	}
	if _, err := nw.w.Write(line); err != nil {
		nw.err = err
		return err
	}
	if err := nw.w.WriteByte('\n'); err != nil {
		nw.err = err
	}
	return nw.err
}

// Close flushes buffered lines. It does not close the underlying writer.
func (nw *NDJSONWriter) Close() error {
	if nw.closed {
		return nw.err
	}
	nw.closed = true
	if nw.err == nil {
		nw.err = nw.w.Flush()
	}
	return nw.err
}

func exportURL(r *Resource) string {
	switch {
	case r.FullURL != "":
		return r.FullURL
	case isUUID(r.ID):
		return "urn:uuid:" + r.ID
	}
	return ""
}

// appendJSONString appends s as a JSON string without HTML escaping.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			b = append(b, `\u`...)
			h := strconv.FormatInt(int64(r), 16)
			for i := len(h); i < 4; i++ {
				b = append(b, '0')
			}
			b = append(b, h...)
		case r == utf8.RuneError:
			b = append(b, `\ufffd`...)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
