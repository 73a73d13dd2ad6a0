package control

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MaxFrame bounds every frame's payload.
const MaxFrame = 1 << 20

// ErrNoNode means no node is listening on the socket.
var ErrNoNode = errors.New("no medvault node is running")

// ErrForeignNode means the process listening on the socket belongs to
// another user: nothing is sent to it.
var ErrForeignNode = errors.New("the node socket is served by another user")

// ErrNodeStuck means a node holds the socket but does not answer: stopped
// (SIGSTOP), wedged, or a build that speaks another version.
var ErrNodeStuck = errors.New("the medvault node is not answering")

// ErrNodeStopping means the node is shutting down: it takes no new
// command, and still holds the vault while its last ones finish.
var ErrNodeStopping = errors.New("the medvault node is stopping")

// Version is the Request version this package speaks. 3: standard input
// is sent only when the command asks for it (frameWant).
const Version = 3

// The node acknowledges a request at once and then sends a heartbeat every
// 2 s while the command runs; a client that hears nothing for 5 s before the
// acknowledgement, or 15 s after it, gives up with ErrNodeStuck instead of
// waiting forever. (Atomics only so that tests can shorten them.)
var ackTimeout, heartbeat, silenceTimeout atomic.Int64

func init() {
	setTimeouts(5*time.Second, 2*time.Second, 15*time.Second)
}

func setTimeouts(ack, beat, silence time.Duration) {
	ackTimeout.Store(int64(ack))
	heartbeat.Store(int64(beat))
	silenceTimeout.Store(int64(silence))
}

// Request describes the command to run.
type Request struct {
	V         int      `json:"v"`
	Args      []string `json:"args"`
	Dir       string   `json:"dir"` // the client's working directory
	StdinTTY  bool     `json:"stdin_tty"`
	StdoutTTY bool     `json:"stdout_tty"`
	NoColor   bool     `json:"no_color"`
	// MaxGrantLifetime is the client's MEDVAULT_MAX_GRANT_LIFETIME: a
	// script's own limit applies to what it asks the node to grant.
	MaxGrantLifetime string `json:"max_grant_lifetime,omitempty"`
	// StdinArg is a file argument the client opened itself and sends as
	// standard input: a path that means something else in the node's
	// process (/dev/stdin, /dev/fd/N) or that only the client can read
	// once (a pipe from '<(...)').
	StdinArg string `json:"stdin_arg,omitempty"`
	// TZ is the client's TZ environment variable, "" when unset: times
	// are shown in the caller's zone, not the node's.
	TZ string `json:"tz,omitempty"`

	// ctx is cancelled once the client's connection closes (or the
	// node cuts it): see Context.
	ctx context.Context
	// peerErr says why the client's process does not hold the node's
	// groups: see PeerGroups.
	peerErr error
}

// ErrOtherGroups means the node holds a group the client's process does
// not: see Request.PeerGroups.
var ErrOtherGroups = errors.New("the node holds groups the command's process does not")

// PeerGroups returns an error wrapping ErrOtherGroups when the node holds
// a group (effective or supplementary) the client's process does not. The node opens and creates the files a command names with
// its own credentials: for a client started with fewer groups (sg, newgrp,
// a service that dropped some), running the command in the node would read
// or write files the client itself could not.
func (r *Request) PeerGroups() error { return r.peerErr }

// Context returns a context that is cancelled when the client that sent
// the request goes away (killed, interrupted) or the node cuts its
// connection while stopping. A command that writes anywhere but to the
// client's streams (get -o, export -o) must watch it: writing to stdout
// fails by itself once the client is gone, writing to a file does not.
func (r *Request) Context() context.Context {
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}

const (
	frameHello    = 'h'
	frameAck      = 'a' // node: the request was accepted
	frameStopping = 'z' // node: stopping, the request was not taken (empty)
	frameGo       = 'g' // client: still here after the acknowledgement; run it
	frameAlive    = 'k' // node: still running (empty)
	frameWant     = 'w' // node: the command reads standard input (empty)
	frameStdin    = 'i'
	frameEOF      = 'e'
	frameStdinErr = 'f' // the client could not read its standard input
	frameStdout   = 'o'
	frameStderr   = 'r'
	frameExit     = 'x'
)

func writeFrame(w io.Writer, typ byte, p []byte) error {
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil || len(p) == 0 {
		// No empty write: the peer may have read the whole frame and
		// closed already, and writing nothing would then fail.
		return err
	}
	_, err := w.Write(p)
	return err
}

func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("control frame of %d bytes exceeds the limit", n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("truncated control frame: %w", err)
	}
	return h[0], buf, nil
}

// frameWriter sends every Write as frames of one type; safe for concurrent
// use with other frameWriters on the same connection.
type frameWriter struct {
	mu  *sync.Mutex
	w   io.Writer
	typ byte
}

func (f frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for len(p) > 0 {
		k := min(len(p), MaxFrame)
		if err := writeFrame(f.w, f.typ, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// Running reports whether a node listens at sock (it connects and hangs
// up; the node ignores a connection that says nothing).
func Running(sock string) bool {
	conn, err := dial(sock, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// Call runs req on the node listening at sock, streaming stdin to it and its
// output to stdout and stderr, and returns the command's exit code. It
// returns ErrNoNode when nothing listens there.
//
// stdin is read only once the command reads its own standard input (the
// node says so): a command that does not read it leaves it as it was, as it
// would running here, so 'while read x; do medvault list; done <file' sees
// every line of file.
func Call(sock string, req Request, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	conn, err := dial(sock, time.Second)
	if err != nil {
		return 0, ErrNoNode
	}
	defer conn.Close()
	if !sameUser(conn) {
		// Not our node: whoever listens there would get the command,
		// its files and its standard input.
		return 0, fmt.Errorf("%w: %s", ErrForeignNode, sock)
	}
	req.V = Version
	hello, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	var mu sync.Mutex
	if err := writeFrame(conn, frameHello, hello); err != nil {
		return 0, ErrNoNode
	}
	// The command runs only after the node acknowledged the request and
	// this side said go: a node that answers too late finds the client
	// gone and runs nothing.
	sayGo := func() error {
		mu.Lock()
		err := writeFrame(conn, frameGo, nil)
		mu.Unlock()
		if err != nil || stdin != nil {
			return err
		}
		// No input (a terminal): the node may finish and close before it
		// reads this; what it says next is what counts.
		mu.Lock()
		writeFrame(conn, frameEOF, nil)
		mu.Unlock()
		return nil
	}
	wanted := false
	sendInput := func() {
		if wanted || stdin == nil {
			return
		}
		wanted = true
		go func() {
			_, err := io.Copy(frameWriter{&mu, conn, frameStdin}, stdin)
			mu.Lock()
			if err != nil {
				writeFrame(conn, frameStdinErr, []byte(err.Error()))
			} else {
				writeFrame(conn, frameEOF, nil)
			}
			mu.Unlock()
		}()
	}
	buf := make([]byte, 64<<10)
	ack, silence := time.Duration(ackTimeout.Load()), time.Duration(silenceTimeout.Load())
	conn.SetReadDeadline(time.Now().Add(ack))
	acked := false
	for {
		if acked {
			// From now, not from the last frame: writing what came to
			// a slow stdout is not the node's silence.
			conn.SetReadDeadline(time.Now().Add(silence))
		}
		typ, p, err := readFrame(conn, buf)
		var ne net.Error
		switch {
		case err != nil && errors.As(err, &ne) && ne.Timeout() && !acked:
			return 1, fmt.Errorf("%w: no answer within %v of the request", ErrNodeStuck, ack)
		case err != nil && errors.As(err, &ne) && ne.Timeout():
			return 1, fmt.Errorf("%w: silent for %v while running the command", ErrNodeStuck, silence)
		case err != nil && !acked:
			// A node that closes without acknowledging did not take
			// the request: another version, or it is shutting down.
			return 1, fmt.Errorf("%w: it closed the connection without taking the request (a node of another medvault version, or one shutting down)", ErrNodeStuck)
		case err != nil:
			return 1, fmt.Errorf("the node stopped before the command finished (connection lost: %w)", err)
		}
		switch typ {
		case frameAck:
			if acked {
				return 1, errors.New("unexpected control frame 'a' from the node")
			}
			acked = true
			if err := sayGo(); err != nil {
				return 1, fmt.Errorf("connection to the node lost: %w", err)
			}
		case frameStopping:
			if acked {
				return 1, errors.New("unexpected control frame 'z' from the node")
			}
			return 1, ErrNodeStopping
		case frameWant:
			sendInput()
		case frameAlive:
		case frameStdout:
			if _, err := stdout.Write(p); err != nil {
				return 1, err
			}
		case frameStderr:
			stderr.Write(p)
		case frameExit:
			if len(p) != 4 {
				return 1, errors.New("malformed exit frame from the node")
			}
			return int(binary.BigEndian.Uint32(p)), nil
		default:
			return 1, fmt.Errorf("unexpected control frame %q from the node", typ)
		}
	}
}

// Handler runs one forwarded command and returns its exit code.
type Handler func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int

// Listen creates the control socket at sock, replacing a stale one left by
// a node that died, with mode 0600.
func Listen(sock string) (net.Listener, error) {
	if c, err := dial(sock, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("a medvault node is already running (%s)", sock)
	}
	os.Remove(sock)
	old := syscall.Umask(0o177)
	var ln net.Listener
	err := viaShortPath(sock, func(p string) (err error) {
		ln, err = net.Listen("unix", p)
		if err == nil && p != sock {
			// Close would unlink p, whose descriptor is gone by then
			// (or names another directory): the caller removes sock.
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
		}
		return err
	})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve accepts connections on ln until it is closed, running each request
// with h. Only processes of the same user are served.
func Serve(ln net.Listener, h Handler) error { return NewServer(h).Serve(ln) }

// Server runs forwarded commands and can be shut down: a node that stops
// must not wait forever on a command whose client stopped reading (a
// paused 'get | less' holds a read transaction, and the vault cannot close
// under it).
type Server struct {
	h       Handler
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool
	running sync.WaitGroup // connections open
	active  atomic.Int64   // commands running
}

// NewServer returns a Server running each request with h.
func NewServer(h Handler) *Server {
	return &Server{h: h, conns: map[net.Conn]struct{}{}}
}

// Serve accepts connections on ln until it is closed. Only processes of the
// same user are served.
func (s *Server) Serve(ln net.Listener) error {
	// Connections that have not yet sent their request each hold a buffer
	// of up to MaxFrame: at most maxHellos of them at once, or a thousand
	// idle connections held a gigabyte.
	// A slot is taken before Accept: a burst of the user's own commands
	// waits in the listen backlog rather than being turned away.
	hellos := make(chan struct{}, maxHellos)
	for {
		hellos <- struct{}{}
		conn, err := ln.Accept()
		if err != nil {
			<-hellos
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if !s.track(conn) {
			// Shutting down: say so, rather than let the client take a
			// closed socket for a node of another version.
			go func() {
				defer conn.Close()
				refuseStopping(conn, func() { <-hellos })
			}()
			continue
		}
		go func() {
			defer s.untrack(conn)
			serveConn(conn, s.run, func() { <-hellos })
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.running.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.running.Done()
}

// run runs one command, counted by Running.
func (s *Server) run(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
	s.active.Add(1)
	defer s.active.Add(-1)
	return s.h(req, stdin, stdout, stderr)
}

// Running returns how many commands are running (not counting clients
// still sending their request).
func (s *Server) Running() int { return int(s.active.Load()) }

// Shutdown stops taking connections (the caller closes the listener) and
// waits for running commands to finish until stop is closed; then it
// closes their connections, so that a command blocked writing to a client
// that stopped reading fails, and waits up to cutWait for them to return.
// It returns how many connections it cut. A command cut this way fails
// as it would if its client had gone: an add or import stores nothing.
func (s *Server) Shutdown(stop <-chan struct{}) (cut int) {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return 0
	case <-stop:
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
		cut++
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-time.After(cutWait):
	}
	return cut
}

// cutWait bounds how long Shutdown waits for cut commands to return.
const cutWait = 5 * time.Second

// maxHellos is how many connections may be reading their request at once.
const maxHellos = 16

func sameUser(conn net.Conn) bool {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	return err == nil && cred != nil && int(cred.Uid) == os.Getuid()
}

// sameGroups returns nil when the node holds no group the process at the
// other end of conn lacks: the node's effective group and each of its
// supplementary groups must be the client's effective group (SO_PEERCRED's
// gid) or among the client's supplementary groups (the "Groups:" line of
// /proc/PID/status for its pid, read now; a client that is gone already
// runs nothing). A client with more groups than the node is served: the
// node can then do less than it, not more. A client in a PID namespace the
// node cannot see (pid 0) is served only when the node holds no group but
// the client's effective group. Anything
// else it cannot tell is a difference.
func sameGroups(conn net.Conn) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("%w: not a local connection", ErrOtherGroups)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrOtherGroups, err)
	}
	var cred *syscall.Ucred
	cerr := raw.Control(func(fd uintptr) {
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if cerr != nil || err != nil || cred == nil {
		return fmt.Errorf("%w: its credentials cannot be read", ErrOtherGroups)
	}
	if cred.Pid == 0 {
		// The client runs in a PID namespace the node cannot see (a node
		// in a container, its client on the host): only its effective
		// group is known. The node may hold that group and no other.
		own, err := os.Getgroups()
		if err != nil {
			return fmt.Errorf("%w: the node's groups cannot be read", ErrOtherGroups)
		}
		for _, g := range append(own, os.Getegid()) {
			if g != int(cred.Gid) {
				return fmt.Errorf("%w: the node holds group %d, and the command runs where the node can see only its group, %d (another PID namespace)", ErrOtherGroups, g, cred.Gid)
			}
		}
		return nil
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cred.Pid))
	if err != nil {
		return fmt.Errorf("%w: its groups cannot be read (%v)", ErrOtherGroups, err)
	}
	peer := []int{int(cred.Gid)}
	found := false
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			found = true
			for _, f := range strings.Fields(rest) {
				g, err := strconv.Atoi(f)
				if err != nil {
					return fmt.Errorf("%w: its groups cannot be read", ErrOtherGroups)
				}
				peer = append(peer, g)
			}
		}
	}
	own, err := os.Getgroups()
	if !found || err != nil {
		return fmt.Errorf("%w: its groups cannot be read", ErrOtherGroups)
	}
	own = append(own, os.Getegid())
	var lacking []int
	for _, g := range sortedSet(own) {
		if !slices.Contains(peer, g) {
			lacking = append(lacking, g)
		}
	}
	if len(lacking) > 0 {
		return fmt.Errorf("%w: the node holds group %v, the command's process does not", ErrOtherGroups, lacking)
	}
	return nil
}

func sortedSet(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// readHello reads a client's request frame, within wait, and returns its
// payload; false when the client is another user or sends no request.
// helloRead is called once the frame is read (or given up on): it frees the
// slot Serve took for a connection still sending its request.
func readHello(conn net.Conn, wait time.Duration, helloRead func()) ([]byte, bool) {
	if !sameUser(conn) {
		helloRead()
		return nil, false
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	typ, p, err := readFrame(conn, nil)
	helloRead()
	return p, err == nil && typ == frameHello
}

// refuseStopping reads a client's request and answers that the node is
// stopping.
func refuseStopping(conn net.Conn, helloRead func()) {
	if _, ok := readHello(conn, 2*time.Second, helloRead); ok {
		conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		writeFrame(conn, frameStopping, nil)
	}
}

func serveConn(conn net.Conn, h Handler, helloRead func()) {
	defer conn.Close()
	p, ok := readHello(conn, 10*time.Second, helloRead)
	if !ok {
		return
	}
	var req Request
	if err := json.Unmarshal(p, &req); err != nil || req.V != Version || len(req.Args) > 4096 {
		return
	}
	req.peerErr = sameGroups(conn)
	var mu sync.Mutex
	if err := writeFrame(conn, frameAck, nil); err != nil {
		return
	}
	// Run nothing unless the client is still there to say go: one that
	// gave up waiting for the acknowledgement has reported a failure.
	if typ, _, err := readFrame(conn, nil); err != nil || typ != frameGo {
		return
	}
	conn.SetReadDeadline(time.Time{})
	ctx, gone := context.WithCancel(context.Background())
	defer gone()
	req.ctx = ctx
	running := make(chan struct{})
	defer close(running)
	go func() {
		t := time.NewTicker(time.Duration(heartbeat.Load()))
		defer t.Stop()
		for {
			select {
			case <-running:
				return
			case <-t.C:
				mu.Lock()
				err := writeFrame(conn, frameAlive, nil)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}
	}()
	stdinR, stdinW := io.Pipe()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			typ, p, err := readFrame(conn, buf)
			if err != nil {
				// The client is gone (or the node cut it): the
				// command ends as if it had never been asked for.
				gone()
				stdinW.CloseWithError(io.ErrUnexpectedEOF)
				return
			}
			switch typ {
			case frameStdin:
				// A write that fails (the command is done with its
				// input) is dropped; reading goes on so that a client
				// that goes away is still noticed.
				stdinW.Write(p)
			case frameEOF:
				stdinW.Close()
				// Keep reading so a client that goes away is noticed.
			case frameStdinErr:
				stdinW.CloseWithError(fmt.Errorf("reading standard input: %s", p))
			default:
				gone()
				stdinW.CloseWithError(errors.New("unexpected control frame"))
				return
			}
		}
	}()
	in := &askingReader{r: stdinR, ask: func() {
		mu.Lock()
		writeFrame(conn, frameWant, nil)
		mu.Unlock()
	}}
	code := h(&req, in, frameWriter{&mu, conn, frameStdout}, frameWriter{&mu, conn, frameStderr})
	stdinR.Close()
	mu.Lock()
	writeFrame(conn, frameExit, binary.BigEndian.AppendUint32(nil, uint32(code)))
	mu.Unlock()
}

// askingReader asks the client for its standard input (ask) at the first
// Read: until the command reads, the client leaves its input unread.
type askingReader struct {
	r     io.Reader
	ask   func()
	asked sync.Once
}

func (a *askingReader) Read(p []byte) (int, error) {
	a.asked.Do(a.ask)
	return a.r.Read(p)
}

// dial connects to the socket at sock.
func dial(sock string, timeout time.Duration) (conn net.Conn, err error) {
	err = viaShortPath(sock, func(p string) (err error) {
		conn, err = net.DialTimeout("unix", p, timeout)
		return err
	})
	return conn, err
}

// maxSockPath is the longest socket path bind and connect take (Linux:
// sun_path holds 108 bytes with its NUL).
const maxSockPath = 107

// viaShortPath calls fn with sock, or, when sock is too long for a socket
// address (a data directory deep in the tree), with the same file reached
// through the open directory's descriptor: /proc/self/fd/N/node.sock.
func viaShortPath(sock string, fn func(string) error) error {
	if len(sock) <= maxSockPath {
		return fn(sock)
	}
	d, err := os.Open(filepath.Dir(sock))
	if err != nil {
		return err
	}
	defer d.Close()
	short := fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), filepath.Base(sock))
	if len(short) > maxSockPath {
		return fmt.Errorf("socket path too long: %s", sock)
	}
	return fn(short)
}
