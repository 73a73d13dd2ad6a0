package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/medvault/medvault/cmd/medvault/internal/control"
	"github.com/medvault/medvault/p2p"
	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

// app carries what commands need from the process: streams, environment and
// global flags. Nothing else in medvault reads os.Args, the environment or
// the terminal.
type app struct {
	// removeConfirmed is set when the person at the terminal already
	// confirmed an rm (asked before it was sent to a node that was not
	// there after all).
	removeConfirmed bool
	// preopened holds the file clientFile opened for a node that was not
	// there after all, by its argument: the command, run here, reads it
	// rather than opening it again (see openArg).
	preopened map[string]*os.File
	// pushNotes throttles the node's notes of strangers' refused pushes,
	// pushLimited those of contacts' pushes refused as too many
	// (startNode); stopped with the node.
	pushNotes, pushLimited *throttle
	stdin                  io.Reader
	stdout, stderr         io.Writer
	getenv                 func(string) string

	passphraseFile string
	passphraseFD   int
	jsonOut        bool

	id    *identity.Identity // unlocked identity, once per process
	vault *vault.Vault       // set when running inside the node (serve)

	// Set when a forwarded command runs inside the node: the client's
	// working directory and terminal state.
	cwd    string
	remote *control.Request
	loc    *time.Location // where times are shown; nil: time.Local

	node      *p2p.Node // the running node (inside serve)
	nodeAddrs []string  // the running node's addresses; grants and cards carry what hints picks
	// bootstrap and dht are serve's --bootstrap and --dht: the node joins
	// medvault's DHT, to find peers whose addresses changed.
	bootstrap []string
	dht       bool
	bookMu    sync.Mutex
	bookAt    time.Time   // when book was loaded
	book      *share.Book // contact book, loaded on first use
}

// hints returns the address hints for a card or grant (what): those of the
// running node's addresses that share.PickHints keeps, with a note on
// stderr when it left some out.
func (a *app) hints(what string) []string {
	kept, dropped := share.PickHints(a.nodeAddrs)
	if dropped > 0 {
		a.say("medvault: note: the %s carries %d of your node's %d addresses, those another machine can most likely reach (it holds at most %d)",
			what, len(kept), len(a.nodeAddrs), share.MaxHints)
	}
	return kept
}

// abs resolves a path given on the command line against the caller's
// working directory (the client's, for a command forwarded to the node).
func (a *app) abs(p string) string {
	if a.cwd == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(a.cwd, p)
}

// insecureWorkFactorEnv lowers the scrypt cost of identity files created by
// 'init'. It exists for tests and the demo only: its name says so.
const insecureWorkFactorEnv = "MEDVAULT_INSECURE_TEST_SCRYPT_WORK_FACTOR"

// dataDir resolves the data directory: $MEDVAULT_HOME, else
// $XDG_DATA_HOME/medvault, else ~/.local/share/medvault.
func (a *app) dataDir() (string, error) {
	if d := a.getenv("MEDVAULT_HOME"); d != "" {
		return filepath.Abs(d)
	}
	if d := a.getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "medvault"), nil
	}
	home := a.getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", withHint(errors.New("cannot find the data directory"), "set MEDVAULT_HOME")
		}
	}
	return filepath.Join(home, ".local", "share", "medvault"), nil
}

// fromClient reports whether the file argument name is the one whose
// content the client sends as standard input (control.Request.StdinArg).
func (a *app) fromClient(name string) bool {
	return a.remote != nil && a.remote.StdinArg != "" && name == a.remote.StdinArg
}

func (a *app) isTTY(f io.Reader) bool {
	if a.remote != nil {
		return a.remote.StdinTTY
	}
	if f, ok := f.(*os.File); ok {
		return term.IsTerminal(int(f.Fd()))
	}
	return false
}

func (a *app) stderrTTY() bool {
	if f, ok := a.stderr.(*os.File); ok {
		return term.IsTerminal(int(f.Fd()))
	}
	return false
}

func (a *app) stdoutTTY() bool {
	if a.remote != nil {
		return a.remote.StdoutTTY
	}
	if f, ok := a.stdout.(*os.File); ok {
		return term.IsTerminal(int(f.Fd()))
	}
	return false
}

const maxPassphrase = 4096

// passphrase returns the passphrase from, in order: --passphrase-file,
// $MEDVAULT_PASSPHRASE_FILE, --passphrase-fd, a prompt on the terminal. With
// none of them available it fails at once with a hint, never waits.
func (a *app) passphrase(prompt string, confirm bool) ([]byte, error) {
	file := a.passphraseFile
	if file == "" {
		file = a.getenv("MEDVAULT_PASSPHRASE_FILE")
	}
	if file != "" && a.passphraseFD >= 0 {
		// The documented order puts the file first; say so rather than
		// ignore a flag given on purpose.
		fmt.Fprintf(a.stderr, "medvault: warning: --passphrase-fd %d is ignored: %s gives the passphrase\n", a.passphraseFD, a.passphraseSource())
	}
	switch {
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, usageError{fmt.Errorf("passphrase file: %w", err)}
		}
		defer f.Close()
		pass, err := readPassphrase(f)
		var pe *os.PathError
		if errors.As(err, &pe) {
			// A directory, say: the caller named the wrong file, as
			// when it does not exist.
			return nil, usageError{fmt.Errorf("passphrase file: %w", err)}
		}
		return pass, err
	case a.passphraseFD == 1 || a.passphraseFD == 2:
		// Reading them, and closing them after, sent the command's own
		// output into the next file opened (the vault's lock file).
		return nil, usagef("--passphrase-fd %d is standard output or error, not an input; use 0, or a descriptor of 3 or more", a.passphraseFD)
	case a.passphraseFD >= 0:
		// Standard input stays the command's: a second *os.File on fd 0
		// would close it when collected.
		var r io.Reader = a.stdin
		if a.passphraseFD != 0 {
			f := os.NewFile(uintptr(a.passphraseFD), "passphrase-fd")
			if f == nil {
				return nil, usagef("--passphrase-fd %d is not an open file descriptor", a.passphraseFD)
			}
			defer f.Close()
			r = f
		}
		// One byte at a time, up to the newline: with --passphrase-fd 0
		// the rest of standard input is the command's (add -).
		pass, err := readPassphrase(oneByte{r})
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, usagef("--passphrase-fd %d: %v", a.passphraseFD, pe.Err)
		}
		return pass, err
	case a.passphraseFD < -1:
		return nil, usagef("--passphrase-fd %d is not a file descriptor", a.passphraseFD)
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return nil, withHint(usagef("no passphrase source: not running on a terminal"),
			"give --passphrase-file FILE, set MEDVAULT_PASSPHRASE_FILE, or use --passphrase-fd N")
	}
	defer tty.Close()
	pass, err := readHidden(tty, prompt)
	if err != nil {
		return nil, err
	}
	if len(pass) == 0 {
		return nil, usagef("empty passphrase")
	}
	if confirm {
		again, err := readHidden(tty, "Repeat passphrase: ")
		if err != nil {
			clear(pass)
			return nil, err
		}
		same := bytes.Equal(again, pass)
		clear(again)
		if !same {
			clear(pass)
			return nil, usagef("passphrases do not match")
		}
	}
	return pass, nil
}

// passphraseSource names where the passphrase comes from, in the order
// passphrase reads them.
func (a *app) passphraseSource() string {
	switch {
	case a.passphraseFile != "":
		return "the file given by --passphrase-file"
	case a.getenv("MEDVAULT_PASSPHRASE_FILE") != "":
		return "the file MEDVAULT_PASSPHRASE_FILE names"
	case a.passphraseFD >= 0:
		return fmt.Sprintf("the first line read from --passphrase-fd %d", a.passphraseFD)
	}
	return "typed at the prompt"
}

// readPassphrase reads the first line of r, without its line ending.
// oneByte reads at most one byte per call, so a line reader on top of it
// stops at the newline instead of buffering what follows.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func readPassphrase(r io.Reader) (pass []byte, err error) {
	// One buffer, filled in place and wiped on every path: no bufio
	// buffer, line copy or string left holding the passphrase for the
	// collector to hand back unwiped (a node kept it in memory for as
	// long as it ran). What follows the newline, read with it from a
	// file, is wiped too.
	buf := make([]byte, maxPassphrase+2)
	defer clear(buf)
	n, idle := 0, 0
	for n < len(buf) {
		k, rerr := r.Read(buf[n:])
		n += k
		if bytes.IndexByte(buf[n-k:n], '\n') >= 0 || rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("read passphrase: %w", rerr)
		}
		if k > 0 {
			idle = 0
		} else if idle++; idle >= 100 {
			return nil, fmt.Errorf("read passphrase: %w", io.ErrNoProgress)
		}
	}
	line := buf[:n]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return nil, usagef("the passphrase source is empty")
	}
	if len(line) > maxPassphrase {
		return nil, usagef("passphrase longer than %d bytes", maxPassphrase)
	}
	// The caller's copy, which it wipes (clear) when done.
	return bytes.Clone(line), nil
}

// unlock decrypts the identity once per process, then lowers the memory
// target so the rest of the command does not carry scrypt's peak.
func (a *app) unlock() (*identity.Identity, string, error) {
	dir, err := a.dataDir()
	if err != nil {
		return nil, "", err
	}
	if err := checkDataDir(dir); err != nil {
		return nil, "", err
	}
	if a.id != nil {
		return a.id, dir, nil
	}
	path := filepath.Join(dir, vault.IdentityFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%w: no identity in %s", vault.ErrNoVault, dir)
	}
	pass, err := a.passphrase("Passphrase: ", false)
	if err != nil {
		return nil, "", err
	}
	defer clear(pass)
	id, err := identity.Load(path, pass, identity.MaxWorkFactor)
	if errors.Is(err, identity.ErrWrongPassphrase) {
		return nil, "", withHint(fmt.Errorf("unlock %s: %w", path, err),
			"nothing was changed; check the passphrase ("+a.passphraseSource()+")")
	}
	if err != nil {
		return nil, "", fmt.Errorf("unlock %s: %w", path, err)
	}
	// Below the 64 MiB budget for add, get and fetch, with room for
	// bbolt's pages of one 8 MiB transaction beside the two batches of
	// content being written and filled: at 48 MiB the runtime handed those
	// pages back to the kernel after each commit and faulted them in again
	// for the next (~100k page faults and ~0.5 s of CPU in a 1 GiB fetch).
	debug.SetMemoryLimit(56 << 20)
	a.id = id
	return id, dir, nil
}

// openVault returns the open vault and a function to call when done with
// it. Inside a running node the vault is the node's, already open, and done
// does not close it; otherwise it unlocks the identity and opens the vault.
func (a *app) openVault() (*vault.Vault, func(), error) {
	if a.vault != nil {
		return a.vault, func() {}, nil
	}
	if dir, err := a.dataDir(); err == nil && a.id == nil && vault.Exists(dir) {
		if err := vault.WaitFree(dir, time.Second); err != nil {
			return nil, nil, err
		}
	}
	id, dir, err := a.unlock()
	if err != nil {
		return nil, nil, err
	}
	// Deriving labels again under new value lists reads every record once:
	// seconds for a large vault, so a terminal gets a progress bar (the note
	// after says what changed).
	drawn := false
	v, err := vault.Open(dir, id, vault.Options{Rederiving: func(done, total int) {
		if a.stderrTTY() {
			drawn = true
			fmt.Fprintf(a.stderr, "\r\033[Kderiving sensitivity labels under updated code lists (once) %s %d/%d records",
				progressBar(int64(done), int64(total), 30), done, total)
		}
	}})
	if drawn {
		fmt.Fprint(a.stderr, "\r\033[K")
	}
	if err != nil {
		return nil, nil, err
	}
	a.noteRederived(v.Rederived())
	return v, func() { v.Close() }, nil
}

// noteRederived tells the patient what deriving labels again under this
// build's value lists changed, once, at the open that did it.
func (a *app) noteRederived(r *vault.Rederivation) {
	if r == nil {
		return
	}
	if r.NoIndex != nil || r.Failed != nil {
		// The run did not complete: the run that does reports what changed.
		a.noteRederiveStopped(r)
		return
	}
	if r.Records > 0 {
		var by []string
		for _, l := range record.Labels() {
			if n := r.Gained[l]; n > 0 {
				by = append(by, fmt.Sprintf("%s %d", l, n))
			}
		}
		more := ""
		if r.Propagated > 0 {
			more = fmt.Sprintf(", and labels reached %s that %s them", count(r.Propagated, "record"),
				map[bool]string{true: "references", false: "reference"}[r.Propagated == 1])
		}
		a.say("medvault: note: this version of medvault derives sensitivity labels from updated code lists: %s gained labels from their own content (%s)%s. A grant shares such records only if it names the label; 'medvault log --action label' lists the changes.",
			count(r.Records, "record"), strings.Join(by, ", "), more)
	}
	if r.Overrode > 0 {
		a.say("medvault: note: %s had such a label removed by hand: it is back, since it now comes from another version or a referenced record under the updated lists, and a sensitive record stays out unless you name it; 'medvault label ID -L' removes it again.",
			count(r.Overrode, "record"))
	}
	if len(r.HandChanged) > 0 {
		ids := make([]string, len(r.HandChanged))
		for i, id := range r.HandChanged {
			ids[i] = id.String()
		}
		a.say("medvault: note: you had changed labels by hand on %s of them before medvault kept which labels you removed; if one you removed came back, remove it again with 'medvault label ID -L': %s",
			count(len(r.HandChanged), "record"), strings.Join(ids, " "))
	}
	a.noteUnreadable(r)
}

func (a *app) noteUnreadable(r *vault.Rederivation) {
	if r.Unreadable > 0 {
		a.say("medvault: warning: %s could not be read to derive %s labels; run 'medvault verify'",
			count(r.Unreadable, "record"), map[bool]string{true: "its", false: "their"}[r.Unreadable == 1])
	}
}

// noteRederiveStopped warns that deriving labels again did not complete.
func (a *app) noteRederiveStopped(r *vault.Rederivation) {
	a.noteUnreadable(r)
	if r.NoIndex != nil {
		a.say("medvault: warning: sensitivity labels were not derived under the updated code lists, because the index of references between records could not be built (%v): records may lack labels a new import would give them. Run 'medvault verify'; medvault tries again at every open.", r.NoIndex)
	}
	if r.Failed != nil {
		a.say("medvault: warning: deriving sensitivity labels under the updated code lists stopped part way (%v): the records not reached yet may lack labels a new import would give them. Run 'medvault verify'; medvault goes on at the next open.", r.Failed)
	}
}

func (a *app) workFactor() int {
	if s := a.getenv(insecureWorkFactorEnv); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= identity.MaxWorkFactor {
			return n
		}
	}
	return identity.DefaultWorkFactor
}

// checkDataDir refuses a data directory that another local user could
// change: one owned by someone else, writable by group or others, or
// reached through a symbolic link someone else owns. There another user
// could replace node.sock, and receive every command, its files and its
// standard input, or swap the vault. A directory that does not exist yet
// passes (init creates it 0700).
func checkDataDir(dir string) error {
	uid := os.Getuid()
	owner := func(fi os.FileInfo) int {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return int(st.Uid)
		}
		return uid
	}
	li, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	fix := "chmod 700 " + dir + ", or set MEDVAULT_HOME to a directory only you can change"
	if li.Mode()&os.ModeSymlink != 0 {
		if o := owner(li); o != uid && o != 0 {
			return withHint(fmt.Errorf("the data directory %s is a symbolic link owned by another user (uid %d)", dir, o), fix)
		}
		if li, err = os.Stat(dir); err != nil {
			return err
		}
	}
	if o := owner(li); o != uid {
		return withHint(fmt.Errorf("the data directory %s belongs to another user (uid %d)", dir, o), fix)
	}
	if li.Mode().Perm()&0o022 != 0 {
		return withHint(fmt.Errorf("the data directory %s is writable by other users (mode %04o)", dir, li.Mode().Perm()), fix)
	}
	return nil
}
