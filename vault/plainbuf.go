package vault

// plainBuffer collects decrypted content. Unlike bytes.Buffer, it wipes
// each backing array it outgrows, and Wipe clears the last one, so no copy
// of the plaintext is left behind in freed memory, whatever the size.
type plainBuffer struct{ b []byte }

func (p *plainBuffer) Write(q []byte) (int, error) {
	if need := len(p.b) + len(q); need > cap(p.b) {
		p.grow(max(2*cap(p.b), need, 512))
	}
	p.b = append(p.b, q...)
	return len(q), nil
}

// Grow makes room for n more bytes without reallocating.
func (p *plainBuffer) Grow(n int) {
	if need := len(p.b) + n; need > cap(p.b) {
		p.grow(need)
	}
}

func (p *plainBuffer) grow(size int) {
	n := make([]byte, len(p.b), size)
	copy(n, p.b)
	clear(p.b[:cap(p.b)])
	p.b = n
}

// Bytes returns the content, valid until the next Write, Reset or Wipe.
func (p *plainBuffer) Bytes() []byte { return p.b }

// Reset empties the buffer, wiping what it held, and keeps its capacity.
func (p *plainBuffer) Reset() {
	clear(p.b)
	p.b = p.b[:0]
}

// Wipe clears the whole backing array.
func (p *plainBuffer) Wipe() {
	clear(p.b[:cap(p.b)])
	p.b = p.b[:0]
}
