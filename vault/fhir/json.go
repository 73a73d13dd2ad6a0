package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"unicode/utf8"
)

// maxDepth bounds the nesting of arrays and objects inside one resource.
// Deeply nested QuestionnaireResponse items reach a few dozen levels; 256
// leaves ample room while keeping the recursive validator's stack small.
const maxDepth = 256

// validator checks that a byte slice is exactly one JSON value under the
// strict rules medvault applies to FHIR input: RFC 8259 syntax, valid
// UTF-8 in strings, no duplicate member names in any object (compared
// after unescaping), and nesting no deeper than maxDepth.
//
// Duplicate names matter for security: a resource such as
// {"code":<sensitive>,"code":<benign>} reads differently to parsers that
// keep the first or the last value, so a label derived by one could be
// missed by another. Such input is refused.
type validator struct {
	b    []byte
	i    int
	keys []keySpan // member names of the objects being validated, as a stack
}

type keySpan struct {
	s, e int32 // name bytes without quotes: b[s:e]
	esc  bool  // the name contains a backslash escape
}

var (
	errSyntax = errors.New("invalid JSON")
	errDepth  = errors.New("JSON nested too deeply")
	errUTF8   = errors.New("invalid UTF-8 in JSON string")
	errDupKey = errors.New("duplicate member name in JSON object")
)

// validate reports whether b is exactly one JSON value with no leading or
// trailing bytes. It reuses v's scratch space between calls.
func (v *validator) validate(b []byte) error {
	if len(b) > 1<<31-1 {
		return errSyntax
	}
	v.b, v.i, v.keys = b, 0, v.keys[:0]
	if err := v.value(0); err != nil {
		return err
	}
	if v.i != len(b) {
		return errSyntax
	}
	return nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (v *validator) ws() {
	for v.i < len(v.b) && isSpace(v.b[v.i]) {
		v.i++
	}
}

func (v *validator) value(depth int) error {
	if v.i >= len(v.b) {
		return errSyntax
	}
	switch c := v.b[v.i]; {
	case c == '{':
		if depth >= maxDepth {
			return errDepth
		}
		return v.object(depth + 1)
	case c == '[':
		if depth >= maxDepth {
			return errDepth
		}
		return v.array(depth + 1)
	case c == '"':
		_, _, err := v.str()
		return err
	case c == 't':
		return v.lit("true")
	case c == 'f':
		return v.lit("false")
	case c == 'n':
		return v.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return v.number()
	}
	return errSyntax
}

func (v *validator) lit(s string) error {
	if !bytes.HasPrefix(v.b[v.i:], []byte(s)) {
		return errSyntax
	}
	v.i += len(s)
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (v *validator) number() error {
	b, i := v.b, v.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return errSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return errSyntax
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return errSyntax
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	v.i = i
	return nil
}

func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// str validates a string starting at v.i (which holds the opening quote)
// and returns the span of its contents.
func (v *validator) str() (keySpan, bool, error) {
	b := v.b
	i := v.i + 1
	start := i
	esc := false
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			v.i = i + 1
			return keySpan{s: int32(start), e: int32(i), esc: esc}, esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return keySpan{}, false, errSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+5 >= len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return keySpan{}, false, errSyntax
				}
				i += 6
			default:
				return keySpan{}, false, errSyntax
			}
		case c < 0x20:
			return keySpan{}, false, errSyntax
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return keySpan{}, false, errUTF8
			}
			i += size
		}
	}
	return keySpan{}, false, errSyntax
}

func (v *validator) array(depth int) error {
	v.i++ // '['
	v.ws()
	if v.i < len(v.b) && v.b[v.i] == ']' {
		v.i++
		return nil
	}
	for {
		v.ws()
		if err := v.value(depth); err != nil {
			return err
		}
		v.ws()
		if v.i >= len(v.b) {
			return errSyntax
		}
		switch v.b[v.i] {
		case ',':
			v.i++
		case ']':
			v.i++
			return nil
		default:
			return errSyntax
		}
	}
}

func (v *validator) object(depth int) error {
	v.i++ // '{'
	mark := len(v.keys)
	v.ws()
	if v.i < len(v.b) && v.b[v.i] == '}' {
		v.i++
		return nil
	}
	for {
		v.ws()
		if v.i >= len(v.b) || v.b[v.i] != '"' {
			return errSyntax
		}
		k, _, err := v.str()
		if err != nil {
			return err
		}
		v.keys = append(v.keys, k)
		v.ws()
		if v.i >= len(v.b) || v.b[v.i] != ':' {
			return errSyntax
		}
		v.i++
		v.ws()
		if err := v.value(depth); err != nil {
			return err
		}
		v.ws()
		if v.i >= len(v.b) {
			return errSyntax
		}
		switch v.b[v.i] {
		case ',':
			v.i++
			continue
		case '}':
			v.i++
		default:
			return errSyntax
		}
		break
	}
	err := v.checkDup(v.keys[mark:])
	v.keys = v.keys[:mark]
	return err
}

// checkDup reports errDupKey when two names in ks are equal after
// unescaping. Small objects are compared pairwise; large ones are sorted,
// so a crafted object with many members costs O(n log n), not O(n²).
func (v *validator) checkDup(ks []keySpan) error {
	anyEsc := false
	for _, k := range ks {
		anyEsc = anyEsc || k.esc
	}
	if anyEsc {
		names := make([]string, len(ks))
		for i, k := range ks {
			names[i] = unescapeKey(v.b, k)
		}
		slices.Sort(names)
		for i := 1; i < len(names); i++ {
			if names[i] == names[i-1] {
				return errDupKey
			}
		}
		return nil
	}
	if len(ks) <= 12 {
		for i := 1; i < len(ks); i++ {
			for j := 0; j < i; j++ {
				if bytes.Equal(v.b[ks[i].s:ks[i].e], v.b[ks[j].s:ks[j].e]) {
					return errDupKey
				}
			}
		}
		return nil
	}
	b := v.b
	slices.SortFunc(ks, func(x, y keySpan) int { return bytes.Compare(b[x.s:x.e], b[y.s:y.e]) })
	for i := 1; i < len(ks); i++ {
		if bytes.Equal(b[ks[i].s:ks[i].e], b[ks[i-1].s:ks[i-1].e]) {
			return errDupKey
		}
	}
	return nil
}

// unescapeKey decodes a validated JSON string's contents.
func unescapeKey(b []byte, k keySpan) string {
	var s string
	// The span is validated, so adding the quotes back yields a valid JSON string.
	q := make([]byte, 0, int(k.e-k.s)+2)
	q = append(q, '"')
	q = append(q, b[k.s:k.e]...)
	q = append(q, '"')
	if json.Unmarshal(q, &s) != nil {
		return string(b[k.s:k.e])
	}
	return s
}

// jval is the exact bytes of one JSON value inside a validated document.
// Its methods assume the bytes passed validation; on anything else they
// return zero values and never panic.
type jval []byte

func skipWS(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index just after the string starting at b[i].
func skipString(b []byte, i int) int {
	start := i + 1
	i = start
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		n := 0
		for k := i - 1; k >= start && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return i + 1
		}
		i++
	}
}

// skipValue returns the index just after the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return len(b)
	}
}

func (v jval) isObject() bool { return len(v) >= 2 && v[0] == '{' }
func (v jval) isArray() bool  { return len(v) >= 2 && v[0] == '[' }

// members calls fn for each member of an object, in order, until fn
// returns false. name is the raw name without quotes; esc reports a
// backslash in it.
func (v jval) members(fn func(name []byte, esc bool, val jval) bool) {
	if !v.isObject() {
		return
	}
	b := []byte(v)
	i := skipWS(b, 1)
	for i < len(b) && b[i] == '"' {
		ke := skipString(b, i)
		if ke > len(b) || ke-1 < i+1 {
			return
		}
		name := b[i+1 : ke-1]
		esc := bytes.IndexByte(name, '\\') >= 0
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return
		}
		i = skipWS(b, i+1)
		ve := skipValue(b, i)
		if !fn(name, esc, jval(b[i:ve])) {
			return
		}
		i = skipWS(b, ve)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
}

// elems calls fn for each element of an array until fn returns false.
func (v jval) elems(fn func(val jval) bool) {
	if !v.isArray() {
		return
	}
	b := []byte(v)
	i := skipWS(b, 1)
	for i < len(b) && b[i] != ']' {
		ve := skipValue(b, i)
		if ve <= i {
			return
		}
		if !fn(jval(b[i:ve])) {
			return
		}
		i = skipWS(b, ve)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
}

// each calls fn once for an object, or for each object element of an
// array: FHIR elements with cardinality 0..* appear as arrays, 0..1 as
// single objects, and the index treats both alike.
func (v jval) each(fn func(val jval)) {
	switch {
	case v.isObject():
		fn(v)
	case v.isArray():
		v.elems(func(e jval) bool {
			if e.isObject() {
				fn(e)
			}
			return true
		})
	}
}

func nameIs(name []byte, esc bool, want string) bool {
	if !esc {
		return string(name) == want
	}
	return unescapeKey(name, keySpan{s: 0, e: int32(len(name))}) == want
}

// get returns the value of the named member of an object.
func (v jval) get(name string) jval {
	var out jval
	v.members(func(n []byte, esc bool, val jval) bool {
		if nameIs(n, esc, name) {
			out = val
			return false
		}
		return true
	})
	return out
}

// path follows object members by name: v.path("period", "start").
func (v jval) path(names ...string) jval {
	for _, n := range names {
		v = v.get(n)
		if v == nil {
			return nil
		}
	}
	return v
}

// str returns the value of a JSON string.
func (v jval) str() (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// string returns the value of a JSON string, or "" for anything else.
func (v jval) string() string {
	s, _ := v.str()
	return s
}
