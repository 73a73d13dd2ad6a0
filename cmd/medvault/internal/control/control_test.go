package control

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCallServe(t *testing.T) {
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "node.sock")
	if _, err := Call(sock, Request{Args: []string{"list"}}, nil, io.Discard, io.Discard); err != ErrNoNode {
		t.Fatalf("Call with no node: %v", err)
	}
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st, _ := os.Stat(sock)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %o", st.Mode().Perm())
	}
	go Serve(ln, func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		in, _ := io.ReadAll(stdin)
		fmt.Fprintf(stdout, "args=%s dir=%s in=%d", strings.Join(req.Args, ","), req.Dir, len(in))
		fmt.Fprint(stderr, "status")
		return 17
	})
	if _, err := Listen(sock); err == nil {
		t.Fatal("a second Listen on a live socket succeeded")
	}
	big := bytes.Repeat([]byte("x"), 3*MaxFrame+5)
	var out, errb bytes.Buffer
	code, err := Call(sock, Request{Args: []string{"add", "-"}, Dir: "/w"}, bytes.NewReader(big), &out, &errb)
	if err != nil || code != 17 {
		t.Fatalf("Call = %d, %v", code, err)
	}
	if want := fmt.Sprintf("args=add,- dir=/w in=%d", len(big)); out.String() != want || errb.String() != "status" {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{'o', 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{'x', 0, 0, 0, 4, 0, 0, 0, 1})
	f.Add([]byte{'i', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, p, err := readFrame(bytes.NewReader(b), nil)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		writeFrame(&buf, typ, p)
		if !bytes.Equal(buf.Bytes(), b[:5+len(p)]) {
			t.Fatalf("frame did not round-trip")
		}
	})
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, fmt.Errorf("disk error")
	}
	r.n--
	p[0] = 'x'
	return 1, nil
}

// A client that cannot read its standard input makes the node's command
// see an error, not a clean end of input (which would store a truncated
// record).
func TestStdinErrorReachesNode(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ctl")
	defer os.RemoveAll(dir)
	ln, err := Listen(filepath.Join(dir, "node.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go Serve(ln, func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		if _, err := io.ReadAll(stdin); err != nil {
			fmt.Fprint(stderr, err)
			return 1
		}
		return 0
	})
	var errb bytes.Buffer
	code, err := Call(filepath.Join(dir, "node.sock"), Request{Args: []string{"add", "-"}}, &failingReader{n: 3}, io.Discard, &errb)
	if err != nil || code != 1 || !strings.Contains(errb.String(), "disk error") {
		t.Fatalf("code %d, err %v, stderr %q", code, err, errb.String())
	}
}

// listenTemp listens on a socket in a new temporary directory, closed when
// the test ends.
func listenTemp(t *testing.T) (string, net.Listener) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "node.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return sock, ln
}

// shortTimeouts makes the client's patience fit a test.
func shortTimeouts(t *testing.T) {
	setTimeouts(200*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond)
	t.Cleanup(func() { setTimeouts(5*time.Second, 2*time.Second, 15*time.Second) })
}

// A node that holds the socket but does not answer (stopped with SIGSTOP,
// wedged, another version) makes Call fail with ErrNodeStuck, never hang:
// the kernel accepts connections to a unix socket from its backlog even
// when nobody calls accept.
func TestStuckNodeDoesNotHang(t *testing.T) {
	shortTimeouts(t)
	for name, node := range map[string]func(c net.Conn){
		"never accepts": nil,
		"reads, never answers": func(c net.Conn) {
			io.Copy(io.Discard, c)
		},
		"acknowledges, then silent": func(c net.Conn) {
			readFrame(c, nil)
			writeFrame(c, frameAck, nil)
			io.Copy(io.Discard, c)
		},
		"closes without answering": func(c net.Conn) {
			readFrame(c, nil)
			c.Close()
		},
	} {
		t.Run(name, func(t *testing.T) {
			sock, ln := listenTemp(t)
			if node != nil {
				go func() {
					c, err := ln.Accept()
					if err == nil {
						defer c.Close()
						node(c)
					}
				}()
			}
			done := make(chan error, 1)
			go func() {
				_, err := Call(sock, Request{Args: []string{"list"}}, nil, io.Discard, io.Discard)
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrNodeStuck) {
					t.Fatalf("Call: %v, want ErrNodeStuck", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Call still waiting on a node that does not answer")
			}
		})
	}
}

// A command that runs longer than the client's patience is kept alive by
// the node's heartbeats.
func TestLongCommandKeptAlive(t *testing.T) {
	shortTimeouts(t)
	sock, ln := listenTemp(t)
	go Serve(ln, func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		time.Sleep(5 * time.Duration(silenceTimeout.Load()))
		fmt.Fprint(stdout, "done")
		return 0
	})
	var out bytes.Buffer
	code, err := Call(sock, Request{Args: []string{"fetch"}}, nil, &out, io.Discard)
	if err != nil || code != 0 || out.String() != "done" {
		t.Fatalf("code %d, err %v, stdout %q", code, err, out.String())
	}
}

// A command whose client gave up on a stopped node is not run when the node
// comes back: the client was told it failed (say, rm) and must not find it
// done later.
func TestGivenUpCommandNotRunLater(t *testing.T) {
	shortTimeouts(t)
	sock, ln := listenTemp(t)
	// Nobody accepts yet: the node is stopped.
	if _, err := Call(sock, Request{Args: []string{"rm", "abcdef"}}, strings.NewReader("x"), io.Discard, io.Discard); !errors.Is(err, ErrNodeStuck) {
		t.Fatalf("Call: %v, want ErrNodeStuck", err)
	}
	ran := make(chan []string, 1)
	go Serve(ln, func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		ran <- req.Args
		return 0
	})
	select {
	case args := <-ran:
		t.Fatalf("the node ran %v after its client had given up", args)
	case <-time.After(500 * time.Millisecond):
	}
}

// A command that ends before reading its input (the node closes at once)
// is not reported as a lost connection.
func TestFastCommandNoInput(t *testing.T) {
	sock, ln := listenTemp(t)
	go Serve(ln, func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int { return 7 })
	for i := range 300 {
		code, err := Call(sock, Request{Args: []string{"audit"}}, nil, io.Discard, io.Discard)
		if err != nil || code != 7 {
			t.Fatalf("call %d: code %d, %v", i, code, err)
		}
	}
}

// slowWriter takes its time, as a pager or a slow pipe does.
type slowWriter struct{ d time.Duration }

func (w slowWriter) Write(p []byte) (int, error) {
	time.Sleep(w.d)
	return len(p), nil
}

// Time the client spends writing what came to a slow stdout is not the
// node's silence.
func TestSlowStdoutIsNotSilence(t *testing.T) {
	shortTimeouts(t)
	sock, ln := listenTemp(t)
	go Serve(ln, func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		fmt.Fprint(stdout, "first")
		fmt.Fprint(stdout, "second")
		return 0
	})
	code, err := Call(sock, Request{Args: []string{"get"}}, nil, slowWriter{2 * time.Duration(silenceTimeout.Load())}, io.Discard)
	if err != nil || code != 0 {
		t.Fatalf("code %d, %v", code, err)
	}
}

// Connections that have not sent their request are bounded: past
// maxHellos a new one waits in the listen backlog (it is not turned
// away), and a burst of the user's own commands all run.
func TestIdleConnectionsBounded(t *testing.T) {
	sock, ln := listenTemp(t)
	go Serve(ln, func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int { return 7 })
	var idle []net.Conn
	for range maxHellos {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	done := make(chan error, 1)
	go func() {
		code, err := Call(sock, Request{Args: []string{"x"}, Dir: "/"}, nil, io.Discard, io.Discard)
		if err == nil && code != 7 {
			err = fmt.Errorf("code %d", code)
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a command past the bound ran while %d idle connections held every slot: %v", maxHellos, err)
	case <-time.After(200 * time.Millisecond):
	}
	for _, c := range idle {
		c.Close()
	}
	if err := <-done; err != nil {
		t.Fatalf("the waiting command: %v", err)
	}
	// 64 commands at once, as a script running them in parallel.
	errs := make(chan error, 64)
	for range 64 {
		go func() {
			code, err := Call(sock, Request{Args: []string{"x"}, Dir: "/"}, nil, io.Discard, io.Discard)
			if err == nil && code != 7 {
				err = fmt.Errorf("code %d", code)
			}
			errs <- err
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// blockedWriter never returns until released: a client piped into a
// paused pager.
type blockedWriter struct{ release chan struct{} }

func (w blockedWriter) Write(p []byte) (int, error) {
	<-w.release
	return 0, errors.New("released")
}

// A stopping node waits for commands that finish, and cuts, when told to,
// a command stuck writing to a client that stopped reading, so that the
// node can close its vault and exit.
func TestShutdown(t *testing.T) {
	sock, ln := listenTemp(t)
	returned := make(chan error, 1)
	started := make(chan struct{}, 2)
	srv := NewServer(func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		started <- struct{}{}
		if req.Args[0] == "quick" {
			time.Sleep(50 * time.Millisecond)
			return 3
		}
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for {
			if _, err := stdout.Write(chunk); err != nil {
				returned <- err
				return 1
			}
		}
	})
	go srv.Serve(ln)

	// A command that finishes by itself is waited for.
	quick := make(chan int, 1)
	go func() {
		code, _ := Call(sock, Request{Args: []string{"quick"}, Dir: "/"}, nil, io.Discard, io.Discard)
		quick <- code
	}()
	<-started
	if cut := srv.Shutdown(make(chan struct{})); cut != 0 {
		t.Fatalf("Shutdown cut %d commands that would have finished", cut)
	}
	if code := <-quick; code != 3 {
		t.Fatalf("the finished command's client got exit %d, want 3", code)
	}

	// A stuck one is cut when stop closes.
	sock2, ln2 := listenTemp(t)
	srv = NewServer(srv.h)
	go srv.Serve(ln2)
	w := blockedWriter{make(chan struct{})}
	defer close(w.release)
	go Call(sock2, Request{Args: []string{"get"}, Dir: "/"}, nil, w, io.Discard)
	<-started
	idle, err := net.Dial("unix", sock2) // a client that has not sent its request
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	for open := 0; open < 2; {
		srv.mu.Lock()
		open = len(srv.conns)
		srv.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	if srv.Running() != 1 {
		t.Fatalf("Running() = %d with one command running and one client connecting", srv.Running())
	}
	ln2.Close()
	stop := make(chan struct{})
	close(stop)
	if cut := srv.Shutdown(stop); cut != 2 {
		t.Fatalf("Shutdown cut %d connections, want 2 (a command and a client connecting)", cut)
	}
	select {
	case err := <-returned:
		if err == nil {
			t.Fatal("the cut command's write succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cut command never returned")
	}
	if _, err := net.Dial("unix", sock2); err == nil {
		t.Fatal("a stopped server still accepts connections")
	}
}

// A command that does not read its standard input leaves the client's
// unread, as it would running in the client's process: in
// 'while read x; do medvault list; done <file' each command must not eat
// the rest of file. A command that reads it gets all of it.
func TestStdinReadOnlyWhenAsked(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ctl")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "node.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go Serve(ln, func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		if req.Args[0] == "add" {
			in, _ := io.ReadAll(stdin)
			fmt.Fprintf(stdout, "%s", in)
		}
		return 0
	})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.WriteString("line 1\nline 2\n")
	w.Close()
	var out bytes.Buffer
	if code, err := Call(sock, Request{Args: []string{"list"}}, r, &out, io.Discard); err != nil || code != 0 {
		t.Fatalf("list: %d %v", code, err)
	}
	if code, err := Call(sock, Request{Args: []string{"add", "-"}}, r, &out, io.Discard); err != nil || code != 0 {
		t.Fatalf("add: %d %v", code, err)
	}
	if out.String() != "line 1\nline 2\n" {
		t.Fatalf("add - read %q after list: list consumed the input", out.String())
	}
}

// A data directory whose socket path is longer than a socket address holds
// (108 bytes on Linux) still gets a working node socket.
func TestLongSocketPath(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ctl")
	defer os.RemoveAll(dir)
	long := filepath.Join(dir, strings.Repeat("d", 100), "medvault")
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(long, "node.sock")
	if len(sock) <= maxSockPath {
		t.Fatalf("test path too short: %d bytes", len(sock))
	}
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go Serve(ln, func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		fmt.Fprint(stdout, "pong")
		return 0
	})
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", st, err)
	}
	if !Running(sock) {
		t.Fatal("Running: false")
	}
	var out bytes.Buffer
	if code, err := Call(sock, Request{Args: []string{"list"}}, nil, &out, io.Discard); err != nil || code != 0 || out.String() != "pong" {
		t.Fatalf("Call = %d, %v, %q", code, err, out.String())
	}
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("closing the listener removed or lost the socket file: %v", err)
	}
}

// While a node stops, it keeps its socket open until its last commands
// finish, and a new command hears that it is stopping (the CLI exits 12
// with a hint) instead of finding no node and waiting on the vault the
// node still holds.
func TestStoppingRefusesNewCommands(t *testing.T) {
	sock, ln := listenTemp(t)
	release := make(chan struct{})
	started := make(chan struct{})
	srv := NewServer(func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		close(started)
		<-release
		return 0
	})
	go srv.Serve(ln)
	running := make(chan int, 1)
	go func() {
		code, _ := Call(sock, Request{Args: []string{"import"}, Dir: "/"}, nil, io.Discard, io.Discard)
		running <- code
	}()
	<-started
	stopped := make(chan struct{})
	go func() {
		srv.Shutdown(make(chan struct{}))
		close(stopped)
	}()
	for {
		srv.mu.Lock()
		closing := srv.closing
		srv.mu.Unlock()
		if closing {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := Call(sock, Request{Args: []string{"list"}, Dir: "/"}, nil, io.Discard, io.Discard); !errors.Is(err, ErrNodeStopping) {
		t.Fatalf("a command sent while the node stops: %v, want ErrNodeStopping", err)
	}
	close(release)
	<-stopped
	if code := <-running; code != 0 {
		t.Fatalf("the running command's client got %d", code)
	}
}

// A command's context is cancelled when its client goes away (killed mid
// command), even when the command writes nothing to the client and reads
// no input (get -o FILE): it must not go on and finish for nobody.
func TestClientGoneCancelsContext(t *testing.T) {
	sock, ln := listenTemp(t)
	started := make(chan struct{})
	cancelled := make(chan bool, 1)
	go Serve(ln, func(req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		close(started)
		select {
		case <-req.Context().Done():
			cancelled <- true
		case <-time.After(5 * time.Second):
			cancelled <- false
		}
		return 0
	})
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hello := fmt.Appendf(nil, `{"v":%d,"args":["get","x","-o","f"],"dir":"/"}`, Version)
	if err := writeFrame(conn, frameHello, hello); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := readFrame(conn, nil); err != nil || typ != frameAck {
		t.Fatalf("ack: %q, %v", typ, err)
	}
	writeFrame(conn, frameGo, nil)
	writeFrame(conn, frameEOF, nil)
	<-started
	conn.Close()
	if !<-cancelled {
		t.Fatal("the command's context was not cancelled when its client went away")
	}
}

// A request's context is never nil, even for one not read from a client.
func TestRequestContextDefault(t *testing.T) {
	if (&Request{}).Context().Err() != nil {
		t.Fatal("a fresh request's context is cancelled")
	}
}
