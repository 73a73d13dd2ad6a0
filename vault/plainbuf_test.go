package vault

import (
	"bytes"
	"testing"
)

// Growing, resetting and wiping leave no byte of what was written in any
// array the buffer used.
func TestPlainBufferWipes(t *testing.T) {
	var p plainBuffer
	secret := bytes.Repeat([]byte("S"), 300)
	p.Write(secret)
	first := p.Bytes()[:cap(p.Bytes())]
	for range 10 {
		p.Write(secret) // outgrows first, then its successors
	}
	if !bytes.Equal(p.Bytes(), bytes.Repeat(secret, 11)) {
		t.Fatal("content changed")
	}
	if bytes.IndexByte(first, 'S') >= 0 {
		t.Error("an outgrown backing array still holds content")
	}
	last := p.Bytes()[:cap(p.Bytes())]
	p.Reset()
	if bytes.IndexByte(last, 'S') >= 0 || len(p.Bytes()) != 0 {
		t.Error("Reset left content behind")
	}
	p.Grow(10 << 10)
	p.Write(secret)
	grown := p.Bytes()[:cap(p.Bytes())]
	p.Wipe()
	if bytes.IndexByte(grown, 'S') >= 0 {
		t.Error("Wipe left content behind")
	}
}
