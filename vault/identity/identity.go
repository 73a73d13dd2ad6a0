package identity

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
	"unicode"

	"filippo.io/age"
)

// Role says what a user does with medvault.
type Role string

// The roles a user can have.
const (
	Patient  Role = "patient"
	Provider Role = "provider"
)

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(strings.TrimSpace(s))); r {
	case Patient, Provider:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want patient or provider)", s)
}

// Errors callers branch on.
var (
	// ErrWrongPassphrase means the passphrase did not open the identity file.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrCorrupt means the identity file is damaged or truncated.
	ErrCorrupt = errors.New("identity file is corrupt or truncated")
	// ErrNewerFormat means the file was written by a newer medvault.
	ErrNewerFormat = errors.New("identity file was written by a newer medvault")
	// ErrExists means an identity file is already there.
	ErrExists = errors.New("identity already exists")
)

// DefaultWorkFactor is the scrypt work factor (log2 N) used for new identity
// files: about 0.65 s and 256 MiB per unlock on a current laptop.
const DefaultWorkFactor = 18

// MaxWorkFactor caps the work factor accepted when reading, so that a crafted
// identity file cannot stall the tool (2^22 would take ~10 s and 4 GiB).
const MaxWorkFactor = 20

const (
	formatVersion = 1
	maxFileSize   = 64 << 10
	maxNameLen    = 128
)

// Identity is a user's private keys: an Ed25519 signing key (whose public
// half is the user's ID) and an age X25519 identity that records are
// encrypted to, plus a secret that symmetric vault keys are derived from.
//
// The private parts are unexported and never printed; all use goes through
// methods of this type.
type Identity struct {
	name    string
	role    Role
	created time.Time
	sign    ed25519.PrivateKey
	age     *age.X25519Identity
	secret  [32]byte
}

// Generate creates a new identity.
func Generate(name string, role Role) (*Identity, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if role != Patient && role != Provider {
		return nil, fmt.Errorf("unknown role %q", role)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	ai, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate encryption key: %w", err)
	}
	id := &Identity{name: name, role: role, created: time.Now().UTC().Truncate(time.Second), sign: priv, age: ai}
	rand.Read(id.secret[:])
	return id, nil
}

func validName(name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("name is longer than %d bytes", maxNameLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return errors.New("name contains control characters")
		}
	}
	return nil
}

// ID returns the user's public ID.
func (id *Identity) ID() ID {
	var out ID
	copy(out[:], id.sign.Public().(ed25519.PublicKey))
	return out
}

// Name returns the display name chosen at init.
func (id *Identity) Name() string { return id.name }

// Role returns the user's role.
func (id *Identity) Role() Role { return id.role }

// Created returns when the identity was generated.
func (id *Identity) Created() time.Time { return id.created }

// Recipient returns the age recipient that records for this user are
// encrypted to.
func (id *Identity) Recipient() *age.X25519Recipient { return id.age.Recipient() }

// AgeIdentity returns the age identity that decrypts records for this user.
func (id *Identity) AgeIdentity() age.Identity { return id.age }

// Sign signs msg with the user's Ed25519 key.
func (id *Identity) Sign(msg []byte) []byte { return ed25519.Sign(id.sign, msg) }

// Signer returns the Ed25519 key as a crypto.Signer, for code that signs
// through that interface (ledger checkpoints, the network host).
func (id *Identity) Signer() crypto.Signer { return id.sign }

// NetworkKey returns the Ed25519 private key for the libp2p host, which
// needs the key itself for its Noise and TLS handshakes. Nothing else should
// call it: sign through Sign or Signer.
func (id *Identity) NetworkKey() ed25519.PrivateKey { return id.sign }

// SubKey derives a 32-byte symmetric key for one purpose from the identity's
// secret with HKDF-SHA-256. Distinct labels give independent keys; labels
// are versioned strings such as "medvault/vault/metadata/v1".
func (id *Identity) SubKey(label string) []byte {
	k, err := hkdf.Key(sha256.New, id.secret[:], nil, label, 32)
	if err != nil {
		panic("medvault: hkdf: " + err.Error()) // only fails for lengths > 255*32
	}
	return k
}

// fileV1 is the plaintext inside the age-encrypted identity file.
type fileV1 struct {
	V       int       `json:"v"`
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Created time.Time `json:"created"`
	Ed25519 []byte    `json:"ed25519_seed"`
	Age     string    `json:"age"`
	Secret  []byte    `json:"secret"`
}

// Save writes the identity, encrypted with passphrase (age scrypt at the
// given work factor), to a new file at path, mode 0600. It refuses to
// overwrite an existing file, and the file appears whole or not at all: it
// is written and synced under a temporary name in the same directory, then
// hard-linked to path (which fails if path exists) and the directory
// synced. A process killed halfway therefore leaves no empty or partial
// identity that would block the next 'init'; the temporary file it may
// leave is removed by a later Save. On error no file is left behind.
func (id *Identity) Save(path string, passphrase []byte, workFactor int) error {
	// An unwipeable string copy, as in Decrypt: age's API takes a string.
	r, err := age.NewScryptRecipient(string(passphrase))
	if err != nil {
		return fmt.Errorf("passphrase: %w", err)
	}
	r.SetWorkFactor(workFactor)
	plain, err := json.Marshal(fileV1{
		V: formatVersion, Name: id.name, Role: id.role, Created: id.created,
		Ed25519: id.sign.Seed(), Age: id.age.String(), Secret: id.secret[:],
	})
	if err != nil {
		return err
	}
	defer clear(plain)
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		return fmt.Errorf("encrypt identity: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return fmt.Errorf("encrypt identity: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("encrypt identity: %w", err)
	}
	return writeNew(path, buf.Bytes())
}

// tmpPrefix and tmpSuffix name the temporary files Save writes beside the
// identity file.
const tmpPrefix, tmpSuffix = ".identity-", ".tmp"

// staleAfter is the age from which a temporary identity file belongs to a
// Save that was killed: a Save holds one for the milliseconds between
// writing and linking it (the passphrase and scrypt come before).
const staleAfter = time.Minute

// writeNew creates path with data, mode 0600, atomically and without
// overwriting (see Save).
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	removeStale(dir)
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%w at %s", ErrExists, path)
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*"+tmpSuffix) // mode 0600
	if err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write identity: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write identity: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	if err := linkOrRename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// linkOrRename gives the file tmp the name path, failing with ErrExists if
// path exists: a hard link, which cannot replace a file; on a file system
// without hard links (FAT on a USB stick), a rename after a check, which
// would replace a file created between the two.
func linkOrRename(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w at %s", ErrExists, path)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%w at %s", ErrExists, path)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	return nil
}

// removeStale removes temporary identity files that killed Saves left in
// dir.
func removeStale(dir string) { removeTemps(dir, staleAfter) }

// RemoveTemps removes every temporary identity file in dir, the data
// directory of an identity file that exists: Save is how an identity file
// is made, so any such file is left by a Save that was killed (an init
// killed and run again within a minute leaves one removeStale spares), or
// belongs to one that will find the identity file there and fail. Each is
// a complete identity, sealed with the passphrase given to that init, that
// nothing uses.
func RemoveTemps(dir string) { removeTemps(dir, 0) }

func removeTemps(dir string, olderThan time.Duration) {
	ms, _ := filepath.Glob(filepath.Join(dir, tmpPrefix+"*"+tmpSuffix))
	for _, m := range ms {
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > olderThan {
			os.Remove(m)
		}
	}
}

// Load reads and decrypts the identity file at path. scrypt work factors
// above maxWorkFactor are refused (pass MaxWorkFactor). After decrypting it
// returns the memory scrypt used to the operating system, so the rest of the
// process does not carry that peak.
func Load(path string, passphrase []byte, maxWorkFactor int) (*Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%w: file is larger than %d bytes", ErrCorrupt, maxFileSize)
	}
	return Decrypt(data, passphrase, maxWorkFactor)
}

// Decrypt opens an identity file's bytes. See Load.
func Decrypt(data, passphrase []byte, maxWorkFactor int) (*Identity, error) {
	// age takes the passphrase as a string: an immutable copy that
	// cannot be wiped, held by si until the collector reuses its memory.
	// The caller's []byte is wiped; this copy is the one left, and
	// unavoidable with age's scrypt API.
	si, err := age.NewScryptIdentity(string(passphrase))
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	si.SetMaxWorkFactor(maxWorkFactor)
	defer releaseMemory()
	r, err := age.Decrypt(bytes.NewReader(data), si)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			if strings.Contains(err.Error(), "work factor") {
				return nil, fmt.Errorf("%w: scrypt work factor above the accepted maximum of %d", ErrCorrupt, maxWorkFactor)
			}
			return nil, ErrWrongPassphrase
		}
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, maxFileSize))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	defer clear(plain)
	var f fileV1
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		// A newer version may add fields: check the version first.
		var v struct{ V int }
		if json.Unmarshal(plain, &v) == nil && v.V > formatVersion {
			return nil, fmt.Errorf("%w (format v%d, this build reads v%d)", ErrNewerFormat, v.V, formatVersion)
		}
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	switch {
	case f.V > formatVersion:
		return nil, fmt.Errorf("%w (format v%d, this build reads v%d)", ErrNewerFormat, f.V, formatVersion)
	case f.V != formatVersion, len(f.Ed25519) != ed25519.SeedSize, len(f.Secret) != 32,
		f.Role != Patient && f.Role != Provider, validName(f.Name) != nil:
		return nil, fmt.Errorf("%w: invalid contents", ErrCorrupt)
	}
	ai, err := age.ParseX25519Identity(f.Age)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid encryption key", ErrCorrupt)
	}
	id := &Identity{name: f.Name, role: f.Role, created: f.Created, sign: ed25519.NewKeyFromSeed(f.Ed25519), age: ai}
	copy(id.secret[:], f.Secret)
	clear(f.Ed25519)
	clear(f.Secret)
	return id, nil
}

// releaseMemory hands scrypt's large buffer back to the OS.
func releaseMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}
