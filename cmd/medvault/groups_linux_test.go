package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medvault/medvault/cmd/medvault/internal/control"
)

// The node opens and creates a command's files with its own groups: a
// client of the same user started with other groups (sg, newgrp, a
// service that dropped some) is refused, with a hint, rather than served
// with groups it does not hold. A client with the node's groups is served.
func TestNodeRefusesClientWithOtherGroups(t *testing.T) {
	asClient()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a client with other groups")
	}
	v := openPatientVault(t)
	node := &app{getenv: func(string) string { return "" }}
	sock := filepath.Join(t.TempDir(), "node.sock")
	ln, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go control.NewServer(func(req *control.Request, stdin io.Reader, stdout, stderr io.Writer) int {
		return node.runInNode(v, req, stdin, stdout, stderr)
	}).Serve(ln)

	own, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	same := make([]uint32, len(own))
	for i, g := range own {
		same[i] = uint32(g)
	}
	egid := uint32(os.Getegid())
	client := func(gid uint32, groups []uint32) (int, string) { return runClient(t, sock, gid, groups) }
	if code, out := client(egid, same); code != 0 {
		t.Fatalf("a client with the node's groups: exit %d: %s", code, out)
	}
	// More groups than the node: the node can do less than the client.
	if code, out := client(egid, append(slices.Clone(same), 4242)); code != 0 {
		t.Fatalf("a client with one group more than the node: exit %d: %s", code, out)
	}
	// Another effective group and none of the node's: refused.
	code, out := client(4242, []uint32{})
	if code != exitFailure || !strings.Contains(out, "the command's process does not") ||
		!strings.Contains(out, "from a shell with the node's groups") {
		t.Fatalf("a client with group 4242 only (the node's: %d, %v): exit %d: %s", egid, own, code, out)
	}
}

// A node in a PID namespace of its own (a container) sees its host-side
// clients as pid 0 and cannot read their groups: a client with the node's
// effective group is served (it was refused, "its groups cannot be read"),
// one with another is refused and told why.
func TestNodeInOtherPIDNamespace(t *testing.T) {
	if sock := os.Getenv("MEDVAULT_TEST_NODE_SOCK"); sock != "" {
		// The node, in its own PID namespace: serves until killed.
		v := openPatientVault(t)
		node := &app{getenv: func(string) string { return "" }}
		ln, err := control.Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		control.NewServer(func(req *control.Request, stdin io.Reader, stdout, stderr io.Writer) int {
			return node.runInNode(v, req, stdin, stdout, stderr)
		}).Serve(ln)
		return
	}
	asClient()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a node in a PID namespace of its own")
	}
	egid := uint32(os.Getegid())
	// startNode starts a node in a PID namespace of its own, with egid and
	// the supplementary groups given.
	startNode := func(groups []uint32) string {
		sock := filepath.Join(t.TempDir(), "node.sock")
		node := exec.Command(os.Args[0], "-test.run=^TestNodeInOtherPIDNamespace$")
		node.Env = append(os.Environ(), "MEDVAULT_TEST_NODE_SOCK="+sock)
		node.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID,
			Credential: &syscall.Credential{Uid: uint32(os.Getuid()), Gid: egid, Groups: groups}}
		if err := node.Start(); err != nil {
			t.Skipf("cannot start a process in a new PID namespace here: %v", err)
		}
		t.Cleanup(func() { node.Process.Kill(); node.Wait() })
		for i := 0; !control.Running(sock); i++ {
			if i > 100 {
				t.Fatal("the node never listened")
			}
			time.Sleep(50 * time.Millisecond)
		}
		return sock
	}
	client := func(sock string, gid uint32) (int, string) { return runClient(t, sock, gid, []uint32{}) }
	sock := startNode([]uint32{})
	if code, out := client(sock, egid); code != 0 {
		t.Fatalf("a client with the node's only group: exit %d: %s", code, out)
	}
	if code, out := client(sock, 4242); code != exitFailure || !strings.Contains(out, "another PID namespace") {
		t.Fatalf("a client with another group: exit %d: %s", code, out)
	}
	// A node with a supplementary group the client's groups cannot be
	// checked for: refused.
	sock = startNode([]uint32{4242})
	if code, out := client(sock, egid); code != exitFailure || !strings.Contains(out, "holds group 4242") {
		t.Fatalf("a client of a node with group 4242 it may lack: exit %d: %s", code, out)
	}
}

// asClient, in a child process runClient started, runs 'list' through the
// node at MEDVAULT_TEST_CLIENT_SOCK and exits with its exit code; in any
// other process it returns at once.
func asClient() {
	sock := os.Getenv("MEDVAULT_TEST_CLIENT_SOCK")
	if sock == "" {
		return
	}
	code, err := control.Call(sock, control.Request{Args: []string{"list"}, Dir: "/"}, nil, os.Stdout, os.Stderr)
	if err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(99)
	}
	os.Exit(code)
}

// runClient runs the running test again in a child process with the user's
// uid and the group and supplementary groups given, as a client of the
// node at sock (asClient), and returns its exit code and output.
func runClient(t *testing.T, sock string, gid uint32, groups []uint32) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$")
	cmd.Env = append(os.Environ(), "MEDVAULT_TEST_CLIENT_SOCK="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(os.Getuid()), Gid: gid, Groups: groups}}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}
