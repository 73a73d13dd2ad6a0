package vault

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"io"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// sealSink takes an age file as it is written: space returns where the next
// bytes go (never empty unless the sink failed), filled takes the first k
// of them, and Write copies what could not be written in place. The
// chunkWriter is one.
type sealSink interface {
	io.Writer
	space() []byte
	filled(k int) error
}

// sealBlock is how much plaintext encryptInto reads at a time: four age
// chunks.
const sealBlock = 4 * ageChunk

// encryptInto reads src to its end and writes it to w as an age v1 file
// (C2SP age) encrypted to `to`, returning the plaintext's size. It is
// age.Encrypt without a writer in between: a random 16-byte file key
// wrapped to the recipient in the header (ageHeader), a random 16-byte
// nonce, then the payload in chunks of 64 KiB sealed with
// ChaCha20-Poly1305 under HKDF-SHA-256(ikm = file key, salt = nonce, info
// = "payload"), each under its counter and the last one marked, straight
// into the sink's buffer.
//
// age's writer copies every byte into its own chunk buffer and hands each
// sealed chunk to Write, which copied it again into the stored chunk. Once
// the committer's blocks were allocated ahead (reserve), encryption and
// hashing became the slower side of an add, and the two copies cost it 8%:
// 1446 ms against 1580 for 1 GiB (medians of 8 alternating runs). Only a
// sealed chunk that straddles two stored chunks (one in four) is sealed
// aside and copied. The tests decrypt its output with age.Decrypt.
func encryptInto(w sealSink, src io.Reader, to age.Recipient) (int64, error) {
	fileKey := make([]byte, 16)
	rand.Read(fileKey)
	defer clear(fileKey)
	hdr, err := ageHeader(fileKey, to)
	if err != nil {
		return 0, err
	}
	nonce := make([]byte, ageNonceSize)
	rand.Read(nonce)
	key, err := hkdf.Key(sha256.New, fileKey, nonce, "payload", chacha20poly1305.KeySize)
	if err != nil {
		return 0, err
	}
	aead, err := chacha20poly1305.New(key)
	clear(key)
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(hdr); err != nil {
		return 0, err
	}
	if _, err := w.Write(nonce); err != nil {
		return 0, err
	}
	// A chunk is the last one only if nothing follows it, so a block is
	// read with one byte more, which starts the next block.
	buf := make([]byte, sealBlock+1)
	defer clear(buf)
	aside := make([]byte, 0, ageEncChunk)
	var counter uint64
	var total int64
	ahead := 0
	for {
		n, more, err := readBlock(src, buf[ahead:])
		if err != nil {
			return total, err
		}
		n += ahead
		data := buf[:n]
		if more {
			data = buf[:sealBlock]
		}
		total += int64(len(data))
		for {
			m := min(len(data), ageChunk)
			last := !more && m == len(data)
			nonce := chunkNonce(counter, last)
			counter++
			if sp := w.space(); len(sp) >= m+chacha20poly1305.Overhead {
				aead.Seal(sp[:0], nonce[:], data[:m], nil)
				err = w.filled(m + chacha20poly1305.Overhead)
			} else {
				_, err = w.Write(aead.Seal(aside[:0], nonce[:], data[:m], nil))
			}
			if err != nil {
				return total, err
			}
			if data = data[m:]; len(data) == 0 {
				break
			}
		}
		if !more {
			return total, nil
		}
		buf[0], ahead = buf[sealBlock], 1
	}
}

// readBlock fills b from src unless src ends first; more reports that it
// did not. Only io.EOF itself ends the input, as for io.Copy: a source that
// breaks off with io.ErrUnexpectedEOF, or an error that wraps io.EOF (a
// client's stream closed with an error, say), fails the add rather than
// storing what arrived as the whole record.
func readBlock(src io.Reader, b []byte) (n int, more bool, err error) {
	for n < len(b) {
		k, err := src.Read(b[n:])
		n += k
		if err == io.EOF {
			return n, false, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, true, nil
}

// chunkNonce is the ChaCha20-Poly1305 nonce of age payload chunk i: the
// counter big-endian in 11 bytes, then 1 for the last chunk, else 0.
func chunkNonce(i uint64, last bool) (n [chacha20poly1305.NonceSize]byte) {
	binary.BigEndian.PutUint64(n[3:11], i)
	if last {
		n[11] = 1
	}
	return n
}
