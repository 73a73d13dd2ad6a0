package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medvault/medvault/cmd/medvault/internal/control"
	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault/identity"
)

// serve's default, /ip4/0.0.0.0 over TCP and QUIC, gives two addresses per
// IPv4 interface: a host with five (lo, eth0, wlan0, docker0, a VPN) has
// ten, more than a grant or card holds. grant and id inside the node still
// work, carry the eight a provider can most likely reach, and say on
// stderr that some were left out.
func TestGrantAndCardWithManyNodeAddresses(t *testing.T) {
	v := openPatientVault(t)
	doc, err := identity.Generate("Dr. Hopper", identity.Provider)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := share.ParseAgeRecipient(doc.Recipient().String())
	card, err := share.NewCard(doc, share.CardParams{Recipient: r, Name: doc.Name(), Role: doc.Role()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := share.SaveContact(v, "dr", card, false); err != nil {
		t.Fatal(err)
	}
	both := func(ip string) []string { // what Node.Addrs gives for one interface
		return []string{fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", ip, v.Owner().ID()), fmt.Sprintf("/ip4/%s/udp/4001/quic-v1/p2p/%s", ip, v.Owner().ID())}
	}
	run := func(addrs []string, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		node := &app{getenv: func(string) string { return "" }, nodeAddrs: addrs}
		var out, errb bytes.Buffer
		code = node.runInNode(v, &control.Request{Args: args, Dir: t.TempDir()}, strings.NewReader(""), &out, &errb)
		return code, out.String(), errb.String()
	}
	grant := []string{"grant", "dr", "--scope", "labs", "--expires", "1h", "--purpose", "TREAT"}

	addrs := slices.Concat(both("10.8.0.2"), both("127.0.0.1"), both("172.17.0.1"), both("192.168.1.20"), both("192.168.1.21"))
	want := slices.Concat(both("10.8.0.2"), both("172.17.0.1"), both("192.168.1.20"), both("192.168.1.21"))
	const note = "medvault: note: the %s carries 8 of your node's 10 addresses, those another machine can most likely reach (it holds at most 8)\n"
	code, out, errs := run(addrs, grant...)
	if code != 0 {
		t.Fatalf("grant with the node on %d addresses: exit %d: %s", len(addrs), code, errs)
	}
	_, text, _ := strings.Cut(out, "\n") // the grant's ID, then its token
	g, err := share.ParseGrant(strings.TrimSpace(text))
	if err != nil {
		t.Fatalf("grant printed %q: %v", out, err)
	}
	if !slices.Equal(g.Hints(), want) {
		t.Errorf("the grant carries\n%q, want\n%q", g.Hints(), want)
	}
	if n := strings.Count(errs, "medvault: note: the grant carries"); n != 1 || !strings.Contains(errs, fmt.Sprintf(note, "grant")) {
		t.Errorf("grant's stderr:\n%s\nwant once: "+note, errs, "grant")
	}
	// The node listing its addresses in another order asks for the same
	// grant: it is the one already issued.
	slices.Reverse(addrs)
	if code, out, errs := run(addrs, grant...); code != 0 || !strings.Contains(errs, "is already active") || !strings.Contains(out, g.ID().String()) {
		t.Errorf("the same grant again: exit %d\n%s%s", code, out, errs)
	}

	code, out, errs = run(addrs, "id")
	if code != 0 {
		t.Fatalf("id with the node on %d addresses: exit %d: %s", len(addrs), code, errs)
	}
	_, text, _ = strings.Cut(out, "Card:")
	c, err := share.ParseCard(strings.TrimSpace(text))
	if err != nil {
		t.Fatalf("id printed %q: %v", out, err)
	}
	if !slices.Equal(c.Hints(), want) {
		t.Errorf("the card carries\n%q, want\n%q", c.Hints(), want)
	}
	if errs != fmt.Sprintf(note, "card") {
		t.Errorf("id's stderr:\n%s\nwant: "+note, errs, "card")
	}

	// A node on loopback only (the demo, the tests) gives its addresses
	// as they are, without a note.
	lo := both("127.0.0.1")
	code, out, errs = run(lo, "grant", "dr", "--scope", "vitals", "--expires", "1h", "--purpose", "TREAT")
	if code != 0 {
		t.Fatalf("grant on loopback: exit %d: %s", code, errs)
	}
	_, text, _ = strings.Cut(out, "\n")
	if g, err := share.ParseGrant(strings.TrimSpace(text)); err != nil {
		t.Errorf("grant on loopback printed %q: %v", out, err)
	} else if !slices.Equal(g.Hints(), lo) {
		t.Errorf("the grant on loopback carries %q, want %q", g.Hints(), lo)
	}
	if strings.Contains(errs, "addresses") {
		t.Errorf("grant on loopback says:\n%s", errs)
	}
}
