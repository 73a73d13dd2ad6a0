package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	if os.Getenv("MEDVAULT_TEST_PROMPT_CHILD") == "1" || os.Getenv("MEDVAULT_TEST_CLIENT_SOCK") != "" {
		// A child of TestReadHiddenSignalRestores, which a signal ends:
		// testscript.Main would first copy this 40 MiB binary into a
		// temporary directory that only a normal exit removes, and every
		// run of the tests left two behind.
		os.Exit(m.Run())
	}
	testscript.Main(m, map[string]func(){
		"medvault": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)) },
	})
}

// TestScripts runs the CLI tests in testdata/script: each file is a session
// of medvault commands with their expected stdout, stderr and exit codes.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("MEDVAULT_HOME", filepath.Join(env.WorkDir, "home"))
			env.Setenv(insecureWorkFactorEnv, "10")
			env.Setenv("NO_COLOR", "1")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"nogrep":   cmdNoGrep,
			"perm":     cmdPerm,
			"corrupt":  cmdCorrupt,
			"boltflip": cmdBoltFlip,
			"holdudp":  cmdHoldUDP,
		},
	})
}

// holdudp FILE binds 127.0.0.1 on the UDP port written in FILE, without
// SO_REUSEPORT, until the script ends: a node asked for that port for QUIC
// cannot have it.
func cmdHoldUDP(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: holdudp FILE")
	}
	port := atoi(ts, strings.TrimSpace(ts.ReadFile(args[0])))
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	ts.Check(err)
	ts.Defer(func() { c.Close() })
}

// nogrep FILE TEXT... fails if any TEXT occurs in FILE's raw bytes.
func cmdNoGrep(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: nogrep FILE TEXT...")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	for _, s := range args[1:] {
		found := containsBytes(data, []byte(s))
		if found && !neg {
			ts.Fatalf("%s contains %q", args[0], s)
		}
		if !found && neg {
			ts.Fatalf("%s does not contain %q", args[0], s)
		}
	}
}

func containsBytes(h, n []byte) bool {
	return len(n) > 0 && bytes.Contains(h, n)
}

// perm FILE MODE checks a file's permission bits (octal).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	st, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	got := st.Mode().Perm()
	var want os.FileMode
	for _, c := range args[1] {
		want = want*8 + os.FileMode(c-'0')
	}
	if (got == want) == neg {
		ts.Fatalf("%s has mode %o, want %o", args[0], got, want)
	}
}

// corrupt FILE OFFSET|truncate N: flips a byte at OFFSET, or truncates to N bytes.
func cmdCorrupt(ts *testscript.TestScript, neg bool, args []string) {
	path := ts.MkAbs(args[0])
	data, err := os.ReadFile(path)
	ts.Check(err)
	switch {
	case len(args) == 3 && args[1] == "truncate":
		n := atoi(ts, args[2])
		ts.Check(os.WriteFile(path, data[:n], 0o600))
	case len(args) == 2:
		off := atoi(ts, args[1])
		if off < 0 {
			off += len(data)
		}
		data[off] ^= 0x01
		ts.Check(os.WriteFile(path, data, 0o600))
	default:
		ts.Fatalf("usage: corrupt FILE OFFSET | corrupt FILE truncate N")
	}
}

func atoi(ts *testscript.TestScript, s string) int {
	n := 0
	neg := false
	for i, c := range s {
		if i == 0 && c == '-' {
			neg = true
			continue
		}
		if c < '0' || c > '9' {
			ts.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		return -n
	}
	return n
}

// boltflip FILE BUCKET[/SUB...] [N] flips one bit in the middle of the N-th value
// (default 0) of a top-level bbolt bucket, as an attacker with the file
// could.
func cmdBoltFlip(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: boltflip FILE BUCKET [N]")
	}
	n := 0
	if len(args) == 3 {
		n = atoi(ts, args[2])
	}
	db, err := bbolt.Open(ts.MkAbs(args[0]), 0o600, &bbolt.Options{Timeout: time.Second})
	ts.Check(err)
	defer db.Close()
	ts.Check(db.Update(func(tx *bbolt.Tx) error {
		var b *bbolt.Bucket
		for i, name := range strings.Split(args[1], "/") {
			if i == 0 {
				b = tx.Bucket([]byte(name))
			} else if b != nil {
				b = b.Bucket([]byte(name))
			}
		}
		if b == nil {
			return fmt.Errorf("no bucket %q", args[1])
		}
		c := b.Cursor()
		k, v := c.First()
		for i := 0; i < n && k != nil; i++ {
			k, v = c.Next()
		}
		if k == nil || v == nil {
			return fmt.Errorf("bucket %q has no value %d", args[1], n)
		}
		val := bytes.Clone(v)
		val[len(val)/2] ^= 0x04
		return b.Put(bytes.Clone(k), val)
	}))
}
