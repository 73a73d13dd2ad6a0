package share

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestPickHints(t *testing.T) {
	const id = "/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"
	// both gives a host's TCP and QUIC addresses on port 4001, as
	// Node.Addrs does for each interface serve listens on.
	both := func(ip string) []string {
		return []string{ip + "/tcp/4001" + id, ip + "/udp/4001/quic-v1" + id}
	}
	cat := func(ss ...[]string) []string { return slices.Concat(ss...) }
	long := "/dns4/" + strings.Repeat("a", MaxHintLen) + "/tcp/4001"
	var reviewer []string // the reviewer's five interfaces
	for i := 1; i <= 5; i++ {
		reviewer = append(reviewer, both(fmt.Sprintf("/ip4/10.0.%d.2", i))...)
	}
	var ports []string // one IP listening on nine TCP ports and QUIC
	for p := 4001; p <= 4009; p++ {
		ports = append(ports, fmt.Sprintf("/ip4/203.0.113.5/tcp/%d", p))
	}
	ports = append(ports, "/ip4/203.0.113.5/udp/4001/quic-v1")
	for _, c := range []struct {
		name    string
		in      []string
		want    []string
		dropped int
	}{
		{"none", nil, nil, 0},
		{"loopback only", both("/ip4/127.0.0.1"), both("/ip4/127.0.0.1"), 0},
		{"reviewer's five interfaces", reviewer, cat(both("/ip4/10.0.1.2"), both("/ip4/10.0.2.2"), both("/ip4/10.0.3.2"), both("/ip4/10.0.4.2")), 2},
		{"lo, eth, wlan, docker0, VPN",
			cat(both("/ip4/127.0.0.1"), both("/ip4/192.168.1.20"), both("/ip4/192.168.1.21"), both("/ip4/172.17.0.1"), both("/ip4/100.101.102.103")),
			cat(both("/ip4/100.101.102.103"), both("/ip4/172.17.0.1"), both("/ip4/192.168.1.20"), both("/ip4/192.168.1.21")), 2},
		{"public, private, loopback",
			cat(both("/ip4/127.0.0.1"), both("/ip4/192.168.1.20"), both("/ip4/198.51.100.7")),
			cat(both("/ip4/198.51.100.7"), both("/ip4/192.168.1.20"), both("/ip4/127.0.0.1")), 0},
		{"IPv6",
			cat(both("/ip6/::1"), both("/ip6/fe80::1"), both("/ip6/fd12:3456::1"), both("/ip6/2001:db8::1"), both("/ip4/198.51.100.7"),
				[]string{"/ip6zone/eth0/ip6/fe80::1/tcp/4001", "/ip6/::/tcp/4001", "/ip6/::ffff:192.168.1.20/tcp/4001", "/ip6/ff02::1/udp/4001/quic-v1"}),
			cat(both("/ip4/198.51.100.7"), both("/ip6/2001:db8::1"), []string{"/ip6/::ffff:192.168.1.20/tcp/4001"}, both("/ip6/fd12:3456::1"), both("/ip6/::1")[:1]), 6},
		{"DNS names",
			cat(both("/ip4/192.168.1.20"), []string{"/dns/localhost/tcp/4001", "/dns4/vault.example.org/tcp/4001" + id, "/dns6/vault.example.org/udp/4001/quic-v1", "/dnsaddr/vault.example.org" + id}),
			cat([]string{"/dns4/vault.example.org/tcp/4001" + id, "/dns6/vault.example.org/udp/4001/quic-v1"}, both("/ip4/192.168.1.20"), []string{"/dns/localhost/tcp/4001"}), 1},
		{"duplicates", cat(both("/ip4/192.168.1.20"), both("/ip4/192.168.1.20"), both("/ip4/192.168.1.20")), both("/ip4/192.168.1.20"), 4},
		{"over-long", []string{long, "/ip4/192.168.1.20/tcp/4001"}, []string{"/ip4/192.168.1.20/tcp/4001"}, 1},
		{"unreadable and undialable", []string{
			"", "192.168.1.20:4001", "/ip4/192.168.1.20", "/ip4/192.168.1/tcp/4001", "/ip4/::1/tcp/4001", "/ip6/127.0.0.1/tcp/4001",
			"/ip4/192.168.1.20/sctp/4001", "/ip4/192.168.1.20/tcp/0", "/ip4/192.168.1.20/tcp/65536", "/ip4/192.168.1.20/tcp/4001/",
			"/ip4/192.168.1.20/tcp/4001 /p2p/x", "/ip4/0.0.0.0/tcp/4001", "/ip4/169.254.1.1/tcp/4001", "/ip4/224.0.0.1/udp/4001",
			"/ip4/192.168.1.20/udp/4001/quic-v1",
		}, []string{"/ip4/192.168.1.20/udp/4001/quic-v1"}, 14},
		{"one TCP and one QUIC per IP before a second of either", ports,
			[]string{"/ip4/203.0.113.5/tcp/4001", "/ip4/203.0.113.5/udp/4001/quic-v1", "/ip4/203.0.113.5/tcp/4002", "/ip4/203.0.113.5/tcp/4003",
				"/ip4/203.0.113.5/tcp/4004", "/ip4/203.0.113.5/tcp/4005", "/ip4/203.0.113.5/tcp/4006", "/ip4/203.0.113.5/tcp/4007"}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, dropped := PickHints(c.in)
			if !slices.Equal(got, c.want) || dropped != c.dropped {
				t.Fatalf("PickHints(%q) =\n%q, %d dropped; want\n%q, %d dropped", c.in, got, dropped, c.want, c.dropped)
			}
			if len(got)+dropped != len(c.in) {
				t.Errorf("%d kept and %d dropped of %d", len(got), dropped, len(c.in))
			}
			if err := checkHints(got); err != nil {
				t.Errorf("a card or grant cannot carry them: %v", err)
			}
			// The order the node lists its addresses in changes nothing.
			r := rand.New(rand.NewPCG(1, uint64(len(c.in))))
			for range 20 {
				in := slices.Clone(c.in)
				r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
				if again, d := PickHints(in); !slices.Equal(again, got) || d != dropped {
					t.Fatalf("PickHints(%q) =\n%q, %d dropped; the same addresses in another order gave\n%q, %d dropped", in, again, d, got, dropped)
				}
			}
		})
	}
}
