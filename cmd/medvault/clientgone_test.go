package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/cmd/medvault/internal/control"
)

// A command run by the node that writes a file (get -o, export -o, export
// --format files) and whose client goes away midway (killed, interrupted)
// stops, and leaves nothing: the node must not put the decrypted record
// in place for a client that is no longer there to be told.
func TestOutputFileAbandonedByClient(t *testing.T) {
	v := openPatientVault(t)
	node := &app{getenv: func(string) string { return "" }}
	content := make([]byte, 24<<20)
	rand.Read(content)
	var out, errb bytes.Buffer
	code := node.runInNode(v, &control.Request{Args: []string{"add", "-", "--category", "imaging", "--title", "scan"}, Dir: "/"},
		bytes.NewReader(content), &out, &errb)
	if code != 0 {
		t.Fatalf("add: exit %d: %s", code, errb.String())
	}
	id := strings.TrimSpace(out.String())
	// export -o writes FHIR resources only: one as large as the scan, so
	// that the export too is still writing when its client goes away (an
	// export of nothing finished first under the race detector).
	binary := `{"resourceType":"Binary","id":"scan","contentType":"application/octet-stream","data":"` +
		base64.StdEncoding.EncodeToString(content) + `"}`
	out.Reset()
	if code := node.runInNode(v, &control.Request{Args: []string{"import", "-"}, Dir: "/"},
		strings.NewReader(binary), &out, &errb); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errb.String())
	}

	sock := filepath.Join(t.TempDir(), "node.sock")
	ln, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	finished := make(chan int, 1)
	srv := control.NewServer(func(req *control.Request, stdin io.Reader, stdout, stderr io.Writer) int {
		code := node.runInNode(v, req, stdin, stdout, stderr)
		finished <- code
		return code
	})
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })

	for _, args := range [][]string{
		{"get", id, "-o", "record.bin"},
		{"export", "-o", "bundle.json"},
		{"export", "--format", "files", "-o", "exported"},
	} {
		work := t.TempDir()
		abandon(t, sock, control.Request{V: control.Version, Args: args, Dir: work})
		select {
		case code := <-finished:
			if code == 0 {
				t.Errorf("%v: exit 0 though its client went away midway", args)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: still running 10 s after its client went away", args)
		}
		entries, err := os.ReadDir(work)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("%v: its client went away midway, and the node left %s", args, e.Name())
		}
	}
	rid, err := v.Resolve(id)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := v.Get(rid, &got); err != nil || !bytes.Equal(got.Bytes(), content) {
		t.Fatalf("the record after the abandoned commands: %v", err)
	}
}

// abandon sends req to the node as a client does, and goes away as soon
// as the command runs.
func abandon(t *testing.T, sock string, req control.Request) {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	frame := func(typ byte, p []byte) {
		h := binary.BigEndian.AppendUint32([]byte{typ}, uint32(len(p)))
		if _, err := conn.Write(append(h, p...)); err != nil {
			t.Fatal(err)
		}
	}
	hello, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	frame('h', hello)
	var h [5]byte
	if _, err := io.ReadFull(conn, h[:]); err != nil || h[0] != 'a' {
		t.Fatalf("the node did not acknowledge: %q, %v", h[0], err)
	}
	frame('g', nil)
	frame('e', nil)
}
