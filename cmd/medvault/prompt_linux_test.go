package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal: what a person
// types goes into master, and readHidden reads terminal.
func openPTY(t *testing.T) (master, terminal *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("cannot unlock a pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("cannot name a pseudo-terminal: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("cannot open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	// Whatever the terminal prints is drained, so writes never block.
	go io.Copy(io.Discard, m)
	return m, s
}

func echoOn(t *testing.T, f *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0 && tio.Lflag&unix.ICANON != 0
}

// typeInto runs readHidden on terminal while keys are typed into master.
func typeInto(t *testing.T, keys string) ([]byte, error) {
	t.Helper()
	master, terminal := openPTY(t)
	if !echoOn(t, terminal) {
		t.Fatal("a new terminal echoes")
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := readHidden(terminal, "Passphrase: ")
		done <- result{b, err}
	}()
	// Typed after the terminal is raw, as a person would, not before:
	// keys typed earlier would meet the line discipline (a fixed 50 ms
	// wait was not always enough on a loaded machine).
	for deadline := time.Now().Add(10 * time.Second); echoOn(t, terminal); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("readHidden did not make the terminal raw")
		}
	}
	if _, err := master.Write([]byte(keys)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if !echoOn(t, terminal) {
			t.Errorf("after %q the terminal no longer echoes", keys)
		}
		return r.b, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("readHidden still reading after %q", keys)
		return nil, nil
	}
}

func TestReadHidden(t *testing.T) {
	for _, c := range []struct {
		keys, want string
		err        error
	}{
		{keys: "correct horse\r", want: "correct horse"},
		{keys: "typo\x7f\x7fpo\r", want: "typo"},
		{keys: "wrong\x15right\r", want: "right"},
		{keys: "café\x7f\r", want: "caf"}, // a backspace removes a whole character
		{keys: "ab\x04c\r", want: "abc"},  // Ctrl-D inside a line is ignored
		{keys: "\x04", err: errCancelled},
		{keys: "half\x03", err: errCancelled},
		{keys: "\r", want: ""},
		{keys: "correct horse\x17\x17battery\r", want: "battery"}, // Ctrl-W removes words
		{keys: "one two  \x17three\r", want: "one three"},         // and the spaces after them
		{keys: "a\x1ab\x1c\x16c\r", want: "abc"},                  // other control keys are not kept
		{keys: "pa\x1b[Css\x1b[1;5D\x1bOA\r", want: "pass"},       // nor arrow keys
		{keys: "\nsecret\r\n", want: "secret"},                    // a \n on an empty line is the end of a \r\n
	} {
		got, err := typeInto(t, c.keys)
		if !errors.Is(err, c.err) || string(got) != c.want {
			t.Errorf("typed %q: got %q, %v; want %q, %v", c.keys, got, err, c.want, c.err)
		}
	}
}

func TestReadHiddenRefusesLongLine(t *testing.T) {
	_, err := typeInto(t, strings.Repeat("x", maxPassphrase+1)+"\r")
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("got %v", err)
	}
}

// After a cancel or a refusal, what was typed next is discarded: the rest
// of a passphrase must not reach the shell that reads the terminal next.
func TestReadHiddenDiscardsRest(t *testing.T) {
	// (Only what arrived before the refusal can be discarded: the test
	// types everything at once, small enough for the terminal's buffer.)
	for _, keys := range []string{"half\x03rest-of-secret\r", "pw\x04\x03rest\x1b[A\r"} {
		master, terminal := openPTY(t)
		done := make(chan error, 1)
		go func() {
			_, err := readHidden(terminal, "Passphrase: ")
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		if _, err := master.Write([]byte(keys)); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err == nil {
			t.Fatalf("%.20q...: accepted", keys)
		}
		// What a shell would read next: nothing but what is typed now.
		master.Write([]byte("ls\r"))
		got := make([]byte, 64)
		terminal.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _ := terminal.Read(got)
		if string(got[:n]) != "ls\n" {
			t.Errorf("%.20q...: the next reader got %q", keys, got[:n])
		}
	}
}

// A signal that ends the process during the prompt (kill, a closed window)
// leaves the terminal as it found it: echo and line editing on. The prompt
// runs in a child process (this test binary again), which the signal ends.
func TestReadHiddenSignalRestores(t *testing.T) {
	if os.Getenv("MEDVAULT_TEST_PROMPT_CHILD") == "1" {
		readHidden(os.NewFile(3, "terminal"), "Passphrase: ")
		os.Exit(0) // not reached: the parent ends this process first
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		if signal.Ignored(sig) {
			// Inherited by the child (under nohup, say), which then
			// leaves it alone (TestPromptLeavesIgnoredSignals).
			t.Logf("%v: ignored by this process; not tested", sig)
			continue
		}
		cmd, terminal := startPromptChild(t)
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != sig {
			t.Errorf("%v: the child ended with %v, not by the signal", sig, err)
		}
		if !echoOn(t, terminal) {
			t.Errorf("%v: the terminal was left raw", sig)
		}
	}
}

// startPromptChild starts this test binary as a child sitting in
// readHidden on a new pty, and returns once it has made the terminal raw.
func startPromptChild(t *testing.T) (*exec.Cmd, *os.File) {
	t.Helper()
	_, terminal := openPTY(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestReadHiddenSignalRestores$")
	cmd.Env = append(os.Environ(), "MEDVAULT_TEST_PROMPT_CHILD=1")
	cmd.ExtraFiles = []*os.File{terminal}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for echoOn(t, terminal) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the child never made the terminal raw")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd, terminal
}

// A signal the process was started ignoring (SIGHUP under nohup) stays
// ignored during the prompt: caught, it gave the terminal back, and the
// prompt went on reading with echo on, since the signal, re-raised, was
// ignored again. (A CI run started under nohup hung on the test above.)
func TestPromptLeavesIgnoredSignals(t *testing.T) {
	signal.Ignore(syscall.SIGHUP) // inherited by the child
	defer signal.Reset(syscall.SIGHUP)
	cmd, terminal := startPromptChild(t)
	defer cmd.Process.Kill()
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if echoOn(t, terminal) {
		t.Error("an ignored SIGHUP gave the terminal back while the prompt went on reading")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("the child did not end on SIGTERM")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("the child ended with %v, not by SIGTERM", err)
	}
	if !echoOn(t, terminal) {
		t.Error("the terminal was left raw")
	}
}
