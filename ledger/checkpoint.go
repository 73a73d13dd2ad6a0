package ledger

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint limits and policy.
const (
	// MaxCheckpointSize bounds a signed checkpoint note, signatures
	// included (room for later witness cosignatures).
	MaxCheckpointSize = 16 << 10
	// MaxOriginLen bounds the origin line.
	MaxOriginLen = 255
	// KeepLatest is how many of the most recent checkpoints are always
	// kept; see thinCheckpoints for the rest of the policy.
	KeepLatest = 16
)

// keepLatest is KeepLatest; tests lower it to exercise thinning on small
// logs. Verification does not depend on it (it checks the commitment in
// the latest checkpoint, not the policy).
var keepLatest = KeepLatest

// Checkpoint is a signed tree head in the C2SP tlog-checkpoint format:
//
//	<origin>
//	<size>
//	<base64 root hash>
//	medvault/ledger/kept/v1 <base64 commitment to the retained checkpoints>
//
// followed by a blank line and the note signature line(s). See FORMAT.md.
type Checkpoint struct {
	Origin string // the log's name; also the name of the signing key
	Size   int64  // number of entries in the tree (≥ 1)
	Root   Hash   // RFC 6962 root hash of the first Size leaves
	Note   []byte // the signed note, byte for byte as signed and stored

	kept      Hash // commitment to the sizes of the earlier retained checkpoints
	extraSigs int  // signature lines besides the one by the ledger key
}

// Verifier checks the checkpoints of one ledger: its origin and its
// owner's Ed25519 public key. It is safe for concurrent use; it remembers
// (a bounded number of) notes it has already verified, so re-checking the
// same stored checkpoints costs no signature verification.
type Verifier struct {
	origin string
	pub    ed25519.PublicKey
	nv     note.Verifier
	vkey   string

	mu    sync.Mutex
	cache map[Hash]*Checkpoint // SHA-256 of the note bytes -> parsed checkpoint
}

const verifierCacheMax = 1024

// NewVerifier returns a Verifier for the ledger named origin whose
// checkpoints are signed by pub.
func NewVerifier(origin string, pub ed25519.PublicKey) (*Verifier, error) {
	if err := checkOrigin(origin); err != nil {
		return nil, err
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("ledger: public key of %d bytes, want %d: %w", len(pub), ed25519.PublicKeySize, ErrMalformed)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("ledger: verifier key: %w", err)
	}
	nv, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("ledger: verifier key: %w", err)
	}
	return &Verifier{
		origin: origin,
		pub:    append(ed25519.PublicKey(nil), pub...),
		nv:     nv,
		vkey:   vkey,
		cache:  make(map[Hash]*Checkpoint),
	}, nil
}

// Origin returns the origin the Verifier accepts.
func (v *Verifier) Origin() string { return v.origin }

// PublicKey returns a copy of the key the Verifier accepts.
func (v *Verifier) PublicKey() ed25519.PublicKey { return append(ed25519.PublicKey(nil), v.pub...) }

// VerifierKey returns the signed-note verifier key,
// "<origin>+<key hash>+<base64 key>", for use with other note tools.
func (v *Verifier) VerifierKey() string { return v.vkey }

// checkOrigin enforces the origin rules: 1..MaxOriginLen bytes of printable
// ASCII other than space and '+' (so the origin is also a valid note key
// name).
func checkOrigin(origin string) error {
	if origin == "" || len(origin) > MaxOriginLen {
		return fmt.Errorf("ledger: origin of %d bytes, want 1..%d: %w", len(origin), MaxOriginLen, ErrMalformed)
	}
	for i := 0; i < len(origin); i++ {
		if c := origin[i]; c < 0x21 || c > 0x7e || c == '+' {
			return fmt.Errorf("ledger: origin has a character outside printable ASCII or '+': %w", ErrMalformed)
		}
	}
	return nil
}

// ParseCheckpoint verifies the signature on the exact bytes msg with v,
// then parses the checkpoint text strictly. It fails with ErrBadSignature
// if msg carries no valid signature by v's key, with ErrMalformed if msg
// or its text is not in the format of FORMAT.md or names another origin.
// Other signatures (witness cosignatures) are allowed and ignored.
func ParseCheckpoint(msg []byte, v *Verifier) (*Checkpoint, error) {
	if v == nil {
		return nil, errors.New("ledger: parse checkpoint: nil verifier")
	}
	if len(msg) > MaxCheckpointSize {
		return nil, fmt.Errorf("ledger: checkpoint of %d bytes, more than %d: %w", len(msg), MaxCheckpointSize, ErrMalformed)
	}
	key := Hash(sha256.Sum256(msg))
	v.mu.Lock()
	c, ok := v.cache[key]
	v.mu.Unlock()
	if ok {
		return c.clone(), nil
	}
	c, err := v.parse(msg)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if len(v.cache) >= verifierCacheMax {
		clear(v.cache)
	}
	v.cache[key] = c.clone()
	v.mu.Unlock()
	return c, nil
}

func (c *Checkpoint) clone() *Checkpoint {
	d := *c
	d.Note = append([]byte(nil), c.Note...)
	return &d
}

func (v *Verifier) parse(msg []byte) (*Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v.nv))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return nil, fmt.Errorf("ledger: checkpoint is not signed by the key of %s: %w", v.origin, ErrBadSignature)
		}
		return nil, fmt.Errorf("ledger: checkpoint note: %w", ErrMalformed)
	}
	// note.Open verifies only the first of several signature lines by one
	// key, and the standard base64 decoder accepts non-zero padding bits:
	// insist on exactly one line by our key and canonical base64 in every
	// line, so that one checkpoint has one encoding.
	ours := 0
	for _, s := range append(n.Sigs, n.UnverifiedSigs...) {
		raw, err := base64.StdEncoding.DecodeString(s.Base64)
		if err != nil || base64.StdEncoding.EncodeToString(raw) != s.Base64 {
			return nil, fmt.Errorf("ledger: checkpoint signature is not canonical base64: %w", ErrMalformed)
		}
	}
	for _, line := range strings.Split(string(msg[len(n.Text)+1:]), "\n") {
		name, b64, _ := strings.Cut(strings.TrimPrefix(line, "— "), " ")
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && len(raw) >= 4 && name == v.origin && binary.BigEndian.Uint32(raw) == v.nv.KeyHash() {
			ours++
		}
	}
	if ours != 1 {
		return nil, fmt.Errorf("ledger: checkpoint has %d signature lines named %s, want 1: %w", ours, v.origin, ErrMalformed)
	}
	c, err := parseCheckpointText(n.Text)
	if err != nil {
		return nil, err
	}
	if c.Origin != v.origin {
		return nil, fmt.Errorf("ledger: checkpoint of another log: %w", ErrMalformed)
	}
	c.Note = append([]byte(nil), msg...)
	c.extraSigs = len(n.Sigs) + len(n.UnverifiedSigs) - 1
	return c, nil
}

// parseCheckpointText parses the note text: exactly four lines.
func parseCheckpointText(text string) (*Checkpoint, error) {
	bad := func(what string) error {
		return fmt.Errorf("ledger: checkpoint %s: %w", what, ErrMalformed)
	}
	lines := strings.SplitAfter(text, "\n")
	if len(lines) != 5 || lines[4] != "" {
		return nil, bad("does not have exactly four lines")
	}
	for i := range 4 {
		lines[i] = strings.TrimSuffix(lines[i], "\n")
	}
	origin, sizeStr, rootStr, keptLine := lines[0], lines[1], lines[2], lines[3]
	if err := checkOrigin(origin); err != nil {
		return nil, bad("origin is invalid")
	}
	size, err := strconv.ParseInt(sizeStr, 10, 64)
	if err != nil || size < 1 || strconv.FormatInt(size, 10) != sizeStr {
		return nil, bad("size is not a canonical positive decimal")
	}
	root, ok := parseHash64(rootStr)
	if !ok {
		return nil, bad("root hash is not canonical base64 of 32 bytes")
	}
	keptStr, ok := strings.CutPrefix(keptLine, keptDomain+" ")
	if !ok {
		return nil, bad("kept line is missing")
	}
	kept, ok := parseHash64(keptStr)
	if !ok {
		return nil, bad("kept hash is not canonical base64 of 32 bytes")
	}
	return &Checkpoint{Origin: origin, Size: size, Root: root, kept: kept}, nil
}

func parseHash64(s string) (Hash, bool) {
	var h Hash
	if len(s) != base64.StdEncoding.EncodedLen(HashSize) {
		return h, false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != HashSize || base64.StdEncoding.EncodeToString(b) != s {
		return h, false
	}
	copy(h[:], b)
	return h, true
}

// checkpointText formats the note text of a checkpoint.
func checkpointText(origin string, size int64, root, kept Hash) string {
	var b strings.Builder
	b.WriteString(origin)
	b.WriteByte('\n')
	b.WriteString(strconv.FormatInt(size, 10))
	b.WriteByte('\n')
	b.WriteString(base64.StdEncoding.EncodeToString(root[:]))
	b.WriteByte('\n')
	b.WriteString(keptDomain)
	b.WriteByte(' ')
	b.WriteString(base64.StdEncoding.EncodeToString(kept[:]))
	b.WriteByte('\n')
	return b.String()
}

// keptHash commits to the sizes of the retained checkpoints older than the
// one that carries it: SHA-256("medvault/ledger/kept/v1" || uint64 size...)
// with sizes ascending and big-endian.
func keptHash(sizes []int64) Hash {
	h := sha256.New()
	h.Write([]byte(keptDomain))
	var b [8]byte
	for _, s := range sizes {
		binary.BigEndian.PutUint64(b[:], uint64(s))
		h.Write(b[:])
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// thinCheckpoints applies the retention policy to ascending checkpoint
// sizes and returns the sizes to keep (ascending). Kept are: the
// KeepLatest largest sizes, and for every bit length the smallest size of
// that bit length, i.e. the first checkpoint at or past each power of two.
// Applied after each new checkpoint, it keeps at most KeepLatest + 63
// checkpoints, and a checkpoint kept as "first past 2^k" stays forever.
func thinCheckpoints(sizes []int64) []int64 {
	keep := make([]int64, 0, len(sizes))
	lastLen := -1
	for i, s := range sizes {
		l := bits.Len64(uint64(s))
		if i >= len(sizes)-keepLatest || l != lastLen {
			keep = append(keep, s)
		}
		lastLen = l
	}
	return keep
}

// noteSigner adapts a crypto.Signer holding an Ed25519 key to note.Signer.
type noteSigner struct {
	name string
	hash uint32
	key  crypto.Signer
}

func (s *noteSigner) Name() string    { return s.name }
func (s *noteSigner) KeyHash() uint32 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) {
	sig, err := s.key.Sign(nil, msg, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("ledger: signing checkpoint: %w", err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, errors.New("ledger: signing checkpoint: signer did not return an Ed25519 signature")
	}
	return sig, nil
}

// signCheckpoint signs a checkpoint and returns it parsed.
func signCheckpoint(s *noteSigner, size int64, root, kept Hash) (*Checkpoint, error) {
	msg, err := note.Sign(&note.Note{Text: checkpointText(s.name, size, root, kept)}, s)
	if err != nil {
		return nil, fmt.Errorf("ledger: signing checkpoint: %w", err)
	}
	return &Checkpoint{Origin: s.name, Size: size, Root: root, Note: msg, kept: kept}, nil
}
