package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/medvault/medvault/cmd/medvault/internal/control"
	"github.com/medvault/medvault/p2p"
	"github.com/medvault/medvault/vault"
)

// nodeSocket is the control socket's name in the data directory.
const nodeSocket = "node.sock"

func newServeCommand(a *app) *cobra.Command {
	var listen []string
	cmd := &cobra.Command{
		Use:   "serve [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--dht]",
		Short: "Run your node: keep the vault open for other commands and for providers",
		Long: `Run your medvault node in the foreground until interrupted (Ctrl-C, SIGTERM;
commands it is running get 10 s to finish, none after a second interrupt).
It serves providers the records your grants allow, over libp2p (TCP and QUIC,
encrypted and authenticated by your key), and receives grants and revocation
notices pushed to you. It prints its addresses; grants and your contact card
carry them while it runs. Unless told other ports, it listens on the ports of
its last run while they are free, so the addresses already given out stay
good across restarts.

The node unlocks your identity once and holds the vault open; while it runs,
every other medvault command for the same data directory is handled by the
node through a local control socket (` + nodeSocket + `, mode 0600), without the
passphrase and without waiting on the vault lock.`,
		Example: `  medvault serve --passphrase-file ~/.config/medvault/pass &
  medvault serve --listen /ip4/0.0.0.0/tcp/4001 --listen /ip4/0.0.0.0/udp/4001/quic-v1
  medvault list          # answered by the node`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Say so before asking for the passphrase, not after.
			if dir, err := a.dataDir(); err == nil && control.Running(filepath.Join(dir, nodeSocket)) {
				return withHint(fmt.Errorf("%w: a node is already running for %s", vault.ErrLocked, dir),
					"other commands use it as they are; to restart it, stop it first (Ctrl-C where it runs)")
			}
			v, done, err := a.openVault()
			if err != nil {
				return err
			}
			defer done()
			// Port 0 means the port of the last run, while it is free:
			// grants and cards given out carry this node's address.
			lastTCP, lastQUIC := readPorts(v.Dir())
			node, err := a.startNode(cmd.Context(), v, p2p.WithPorts(listen, lastTCP, lastQUIC))
			if err != nil && (lastTCP != 0 || lastQUIC != 0) {
				node, err = a.startNode(cmd.Context(), v, listen)
			} else if err == nil {
				// libp2p fails only when no address listens: a last
				// port taken on one transport left the node without it
				// (no QUIC at all, saved as none). Start again with a
				// new port there, keeping the other's.
				t, q := node.Ports()
				tcpLost := t == 0 && lastTCP != 0 && slices.Compare(p2p.WithPorts(listen, lastTCP, 0), listen) != 0
				quicLost := q == 0 && lastQUIC != 0 && slices.Compare(p2p.WithPorts(listen, 0, lastQUIC), listen) != 0
				if tcpLost || quicLost {
					node.Close()
					node, err = a.startNode(cmd.Context(), v, p2p.WithPorts(listen, t, q))
					if err != nil {
						// The port kept was taken meanwhile: new ones.
						node, err = a.startNode(cmd.Context(), v, listen)
					}
				}
			}
			if err != nil {
				return err
			}
			defer node.Close()
			tcpPort, quicPort := node.Ports()
			if (lastTCP != 0 && tcpPort != lastTCP) || (lastQUIC != 0 && quicPort != lastQUIC) {
				// A last port was not free only where it was asked for
				// (a port 0 in --listen); elsewhere --listen named
				// another port, or left the transport out.
				why := fmt.Sprintf("the ports of the last run (%s) were not free; this run uses %s", portsText(lastTCP, lastQUIC), portsText(tcpPort, quicPort))
				tcpTaken := tcpPort != lastTCP && slices.Compare(p2p.WithPorts(listen, lastTCP, 0), listen) != 0
				quicTaken := quicPort != lastQUIC && slices.Compare(p2p.WithPorts(listen, 0, lastQUIC), listen) != 0
				if !tcpTaken && !quicTaken {
					why = fmt.Sprintf("this run's ports (%s) differ from the last run's (%s), as your --listen asked", portsText(tcpPort, quicPort), portsText(lastTCP, lastQUIC))
				}
				a.say("medvault: warning: %s: grants and cards given out before carry the old address, so send new ones", why)
			}
			if err := writePorts(v.Dir(), tcpPort, quicPort); err != nil {
				a.say("medvault: warning: could not keep this run's ports for the next: %v", err)
			}
			a.node, a.nodeAddrs = node, node.Addrs()
			ln, err := control.Listen(filepath.Join(v.Dir(), nodeSocket))
			if err != nil {
				return err
			}
			defer os.Remove(filepath.Join(v.Dir(), nodeSocket))
			srv := control.NewServer(func(req *control.Request, stdin io.Reader, stdout, stderr io.Writer) int {
				return a.runInNode(v, req, stdin, stdout, stderr)
			})
			go srv.Serve(ln)
			for _, addr := range a.nodeAddrs {
				fmt.Fprintln(a.stdout, addr)
			}
			if boot := a.bootstrapPeers(); len(boot) > 0 {
				if c := node.BootstrapConnected(); c == 0 {
					a.say("medvault: warning: none of the %d bootstrap nodes answered; the DHT keeps trying", len(boot))
				} else {
					a.say("joined medvault's DHT through %d of %d bootstrap nodes", c, len(boot))
				}
			}
			a.say("medvault node running for %s (ID %s); Ctrl-C to stop", v.Dir(), v.Owner().ID())
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			<-sig
			// The socket stays open while the last commands finish, so
			// new ones hear that the node is stopping (exit 12) rather
			// than find no node and wait on the vault it still holds.
			a.stopCommands(srv, sig)
			ln.Close()
			signal.Stop(sig)
			a.pushNotes.stop()
			a.pushLimited.stop()
			a.say("medvault node stopped")
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&a.bootstrap, "bootstrap", nil, "join medvault's DHT through the node at `MULTIADDR` (ending in /p2p/<ID>; repeatable; default: $MEDVAULT_BOOTSTRAP), so peers find this node after its address changes, and it finds them")
	cmd.Flags().BoolVar(&a.dht, "dht", false, "run medvault's DHT even with no bootstrap node, so that other nodes can bootstrap from this one")
	cmd.Flags().StringArrayVar(&listen, "listen", []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}, "listen on `MULTIADDR` (repeatable; port 0: the last run's port while free, else any)")
	return cmd
}

// portsText names a node's TCP and QUIC ports, as serve's warnings do.
func portsText(tcpPort, quicPort int) string {
	text := func(p int) string {
		if p == 0 {
			return "none"
		}
		return fmt.Sprint(p)
	}
	return "TCP " + text(tcpPort) + ", QUIC " + text(quicPort)
}

// shutdownGrace is how long a stopping node lets running commands finish.
const shutdownGrace = 10 * time.Second

// stopCommands lets the commands the node is running finish, for up to
// shutdownGrace or until a second signal, and then cuts them: a command
// whose client stopped reading ('get | less', paused) would otherwise keep
// the vault from closing, and the node from stopping, indefinitely.
func (a *app) stopCommands(srv *control.Server, sig <-chan os.Signal) {
	if n := srv.Running(); n > 0 {
		a.say("medvault: waiting up to %s for %d running command(s) to finish; interrupt again to stop them now", shutdownGrace, n)
	}
	stop, finished := make(chan struct{}), make(chan struct{})
	defer close(finished)
	go func() {
		t := time.NewTimer(shutdownGrace)
		defer t.Stop()
		select {
		case <-sig:
		case <-t.C:
		case <-finished:
			return
		}
		close(stop)
	}()
	if cut := srv.Shutdown(stop); cut > 0 {
		a.say("medvault: stopped %d command(s) that were still running", cut)
	}
}

// portsFile keeps, in the data directory, the ports of the node's last
// run, so a restarted node keeps its address.
const portsFile = "node.ports"

type savedPorts struct {
	V    int `json:"v"`
	TCP  int `json:"tcp"`
	QUIC int `json:"quic"`
}

// readPorts returns the ports saved by the last run; 0 for none (no file,
// or one this version cannot read: the node then takes any port).
func readPorts(dir string) (tcpPort, quicPort int) {
	b, err := os.ReadFile(filepath.Join(dir, portsFile))
	if err != nil || len(b) > 1024 {
		return 0, 0
	}
	var p savedPorts
	if json.Unmarshal(b, &p) != nil || p.V != 1 || p.TCP < 0 || p.TCP > 65535 || p.QUIC < 0 || p.QUIC > 65535 {
		return 0, 0
	}
	return p.TCP, p.QUIC
}

// writePorts saves the ports (mode 0600, replaced whole).
func writePorts(dir string, tcpPort, quicPort int) error {
	b, err := json.Marshal(savedPorts{V: 1, TCP: tcpPort, QUIC: quicPort})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+portsFile+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, portsFile))
}

// runInNode runs a forwarded command against the node's open vault.
// Commands run concurrently, each with its own app: the vault is safe for
// concurrent use (compaction after rm takes its lock exclusively), so one
// slow command (a paused 'get | less') never holds up the others.
func (a *app) runInNode(v *vault.Vault, req *control.Request, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	env := func(k string) string {
		switch k {
		case "NO_COLOR":
			if req.NoColor {
				return "1"
			}
			return ""
		case "TERM":
			// The node's terminal, if any, is not the caller's: a
			// caller's TERM=dumb arrives as NoColor.
			return ""
		case "MEDVAULT_HOME":
			return v.Dir()
		case "MEDVAULT_MAX_GRANT_LIFETIME":
			// The client's: the node's own environment is not the
			// caller's.
			return req.MaxGrantLifetime
		}
		return a.getenv(k)
	}
	if err := req.PeerGroups(); err != nil {
		// The node would open and create the command's files with
		// groups its caller does not hold.
		printError(stderr, withHint(err, "run the command without the node (stop 'medvault serve'), or from a shell with the node's groups"))
		return exitFailure
	}
	cwd := req.Dir
	switch {
	case cwd == "":
		// The client's directory was removed. A relative path must not
		// resolve against the node's own: under this one, which cannot
		// exist, it fails and says why.
		cwd = "/(your working directory was removed)"
	case !filepath.IsAbs(cwd):
		fmt.Fprintln(stderr, "medvault: error: the command's working directory is not an absolute path")
		return exitUsage
	}
	sub := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: env,
		id: v.Owner(), vault: v, cwd: cwd, remote: req, node: a.node, nodeAddrs: a.nodeAddrs, loc: zoneOf(req.TZ)}
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintln(stderr, "medvault: error: internal error in the node")
			code = exitFailure
		}
	}()
	code = execute(sub, req.Args)
	// A delete whose compaction found the vault being read left it owed:
	// done now if nothing reads (never waiting: the caller is waiting).
	v.CompactIfOwed(0)
	return code
}
