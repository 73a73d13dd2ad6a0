package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// captureReader hands out data and remembers every buffer it was given
// to fill: readPassphrase's own.
type captureReader struct {
	data []byte
	bufs [][]byte
}

func (c *captureReader) Read(p []byte) (int, error) {
	c.bufs = append(c.bufs, p)
	n := copy(p, c.data)
	c.data = c.data[n:]
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Once the caller wiped the passphrase readPassphrase returned, no buffer
// it read into still holds it: a long-running node kept the passphrase in
// memory (a bufio buffer, the line and a string copy) for as long as it
// ran. (age's scrypt API takes a string: that copy is outside this.)
func TestReadPassphraseLeavesNoCopy(t *testing.T) {
	for _, in := range []string{"hunter2-SECRET\nrest of the file", "hunter2-SECRET", "hunter2-SECRET\r\n"} {
		r := &captureReader{data: []byte(in)}
		pass, err := readPassphrase(r)
		if err != nil || string(pass) != "hunter2-SECRET" {
			t.Fatalf("%q: %q, %v", in, pass, err)
		}
		clear(pass)
		for _, b := range r.bufs {
			if bytes.Contains(b[:cap(b)], []byte("hunter2")) || bytes.Contains(b[:cap(b)], []byte("rest of")) {
				t.Errorf("%q: after the caller wiped the passphrase, a buffer readPassphrase read into still holds it", in)
			}
		}
	}
	// Wiped on failure too.
	r := &captureReader{data: []byte(strings.Repeat("x", maxPassphrase+1) + "\n")}
	if _, err := readPassphrase(r); err == nil {
		t.Fatal("an overlong passphrase was accepted")
	}
	for _, b := range r.bufs {
		if bytes.Contains(b[:cap(b)], []byte("xxxx")) {
			t.Error("a refused passphrase was left in readPassphrase's buffer")
		}
	}
}

// readPassphrase takes the first line, without its line ending; through
// oneByte it reads no further than the newline.
func TestReadPassphraseLine(t *testing.T) {
	for in, want := range map[string]string{
		"pass\n":       "pass",
		"pass":         "pass",
		"pass\r\n":     "pass",
		"pass\r\r\n":   "pass",
		"pass\nmore\n": "pass",
		"pa ss \n":     "pa ss ",
		strings.Repeat("p", maxPassphrase) + "\r\n": strings.Repeat("p", maxPassphrase),
	} {
		got, err := readPassphrase(strings.NewReader(in))
		if err != nil || string(got) != want {
			t.Errorf("%.20q: %.20q, %v; want %.20q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n", "\r\n", strings.Repeat("p", maxPassphrase+1), strings.Repeat("p", maxPassphrase+1) + "\n"} {
		if got, err := readPassphrase(strings.NewReader(in)); err == nil {
			t.Errorf("%.20q: accepted as %.20q", in, got)
		}
	}
	src := strings.NewReader("pass\nthe record\n")
	if got, err := readPassphrase(oneByte{src}); err != nil || string(got) != "pass" {
		t.Fatalf("%q, %v", got, err)
	}
	if rest, _ := io.ReadAll(src); string(rest) != "the record\n" {
		t.Fatalf("after the passphrase, %q is left", rest)
	}
	if _, err := readPassphrase(failingReader{}); err == nil || !strings.Contains(err.Error(), "read passphrase") {
		t.Fatalf("a read error: %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("broken") }
