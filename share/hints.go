package share

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Reachability classes of a hint, most preferred first.
const (
	hintPublic = iota
	hintPrivate
	hintLoopback
)

// cgnat is the shared address space of carrier-grade NAT (RFC 6598): as
// private as RFC 1918 to a peer outside the carrier.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// hintChoice is one candidate of PickHints.
type hintChoice struct {
	s     string
	class int
	name  string     // the DNS name, or ""
	ip    netip.Addr // the IP address, when name is ""
	kind  string     // transport: "tcp", "udp/quic-v1", ...
	round int        // how many hints for the same host and kind precede it
}

// PickHints chooses the address hints a card or grant carries from a
// node's addresses (multiaddr strings), by the rule of TOKEN.md §2.6: it
// leaves out duplicates, addresses it cannot read, ones no peer can dial
// (link-local, unspecified, multicast, port 0) and ones longer than
// MaxHintLen; puts public addresses (and DNS names) before private ones
// (RFC 1918, ULA, CGNAT), and those before loopback; takes one address per
// host and transport before a second of either; and keeps at most
// MaxHints. The result depends only on the set of addresses, not on their
// order. dropped counts the addresses left out.
func PickHints(addrs []string) (kept []string, dropped int) {
	cs := make([]hintChoice, 0, len(addrs))
	seen := make(map[string]bool, len(addrs))
	for _, s := range addrs {
		if seen[s] {
			dropped++
			continue
		}
		seen[s] = true
		c, ok := parseHint(s)
		if !ok {
			dropped++
			continue
		}
		cs = append(cs, c)
	}
	// Number the hints of each host and kind in a fixed order, then order
	// them all by class, then round.
	slices.SortFunc(cs, func(a, b hintChoice) int {
		return cmp.Or(cmpHost(a, b), cmp.Compare(a.kind, b.kind), cmp.Compare(a.s, b.s))
	})
	for i := 1; i < len(cs); i++ {
		if cmpHost(cs[i-1], cs[i]) == 0 && cs[i-1].kind == cs[i].kind {
			cs[i].round = cs[i-1].round + 1
		}
	}
	slices.SortStableFunc(cs, func(a, b hintChoice) int {
		return cmp.Or(cmp.Compare(a.class, b.class), cmp.Compare(a.round, b.round))
	})
	if len(cs) > MaxHints {
		dropped += len(cs) - MaxHints
		cs = cs[:MaxHints]
	}
	for _, c := range cs {
		kept = append(kept, c.s)
	}
	return kept, dropped
}

// cmpHost orders DNS names (by name) before IP addresses (IPv4 before
// IPv6, then by value).
func cmpHost(a, b hintChoice) int {
	if (a.name == "") != (b.name == "") {
		if a.name != "" {
			return -1
		}
		return 1
	}
	if a.name != "" {
		return cmp.Compare(a.name, b.name)
	}
	return a.ip.Compare(b.ip)
}

// parseHint reads a hint of the form /ip4|ip6|dns|dns4|dns6/HOST/tcp|udp/PORT
// followed by any further components (/quic-v1, /p2p/ID), and classes it.
// It refuses a hint that a card or grant cannot carry, or that no peer can
// dial: link-local, unspecified and multicast addresses, and port 0.
func parseHint(s string) (hintChoice, bool) {
	c := hintChoice{s: s}
	if checkHints([]string{s}) != nil { // empty, too long, not printable
		return c, false
	}
	parts := strings.Split(s, "/")
	if len(parts) < 5 || parts[0] != "" || slices.Contains(parts[1:], "") {
		return c, false
	}
	switch parts[1] {
	case "ip4", "ip6":
		ip, err := netip.ParseAddr(parts[2])
		if err != nil || ip.Zone() != "" || ip.Is4() != (parts[1] == "ip4") {
			return c, false
		}
		c.ip = ip
		switch u := ip.Unmap(); {
		case u.IsLoopback():
			c.class = hintLoopback
		case !u.IsGlobalUnicast():
			return c, false
		case u.IsPrivate() || cgnat.Contains(u):
			c.class = hintPrivate
		}
	case "dns", "dns4", "dns6":
		c.name = strings.ToLower(parts[2])
		if c.name == "localhost" || strings.HasSuffix(c.name, ".localhost") {
			c.class = hintLoopback
		}
	default:
		return c, false
	}
	if parts[3] != "tcp" && parts[3] != "udp" {
		return c, false
	}
	if port, err := strconv.ParseUint(parts[4], 10, 16); err != nil || port == 0 {
		return c, false
	}
	c.kind = parts[3]
	if len(parts) > 5 && parts[5] != "p2p" {
		c.kind += "/" + parts[5]
	}
	return c, true
}
