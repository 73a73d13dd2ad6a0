package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/spf13/cobra"

	"github.com/medvault/medvault/ledger"
	"github.com/medvault/medvault/p2p"
	"github.com/medvault/medvault/share"
	"github.com/medvault/medvault/vault"
	"github.com/medvault/medvault/vault/fhir"
	"github.com/medvault/medvault/vault/identity"
	"github.com/medvault/medvault/vault/record"
)

func newDemoCommand(a *app) *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "A self-contained walkthrough: a patient shares lab results with a doctor",
		Long: `Run a walkthrough in a temporary directory: a throwaway patient and doctor,
generated sample records (synthetic, not real patients), a grant of the
patient's lab results to the doctor for one hour, the doctor's fetch over
libp2p on 127.0.0.1, a revocation, the doctor's next fetch refused, and the
patient's audit log, verified. It needs no passphrase and no network beyond
loopback, and removes everything when it ends.`,
		Example: "  medvault demo",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.demo(cmd.Context(), keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the temporary directory and print its path")
	return cmd
}

func (a *app) step(format string, args ...any) {
	title := fmt.Sprintf(format, args...)
	if a.styled() {
		fmt.Fprintln(a.stdout, "\n"+lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("12")).Render("▶ "+title))
		return
	}
	fmt.Fprintln(a.stdout, "\n==> "+title)
}

// nodeVoice prints each line the demo's node writes as a note, marked as
// the node's.
type nodeVoice struct{ a *app }

func (n *nodeVoice) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		n.a.note("patient's node: %s", line)
	}
	return len(p), nil
}

func (a *app) note(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if a.styled() {
		line = lipgloss.NewStyle().Foreground(lipgloss.Color("8")).Render(line)
	}
	fmt.Fprintln(a.stdout, "    "+line)
}

func demoVault(dir, name string, role identity.Role) (*vault.Vault, error) {
	id, err := identity.Generate(name, role)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := vault.Create(dir, id, vault.Options{}); err != nil {
		return nil, err
	}
	return vault.Open(dir, id, vault.Options{})
}

func (a *app) demo(ctx context.Context, keep bool) (err error) {
	start := time.Now()
	tmp, err := os.MkdirTemp("", "medvault-demo-")
	if err != nil {
		return err
	}
	defer func() {
		if keep {
			a.say("kept %s", tmp)
			return
		}
		os.RemoveAll(tmp)
	}()

	a.step("A patient and a doctor each create an identity and a vault")
	pv, err := demoVault(filepath.Join(tmp, "patient"), "Ada Lovelace", identity.Patient)
	if err != nil {
		return err
	}
	defer pv.Close()
	dv, err := demoVault(filepath.Join(tmp, "doctor"), "Dr. Grace Hopper", identity.Provider)
	if err != nil {
		return err
	}
	defer dv.Close()
	a.note("patient %s  safety number %s", pv.Owner().ID(), pv.Owner().ID().SafetyNumber())
	a.note("doctor  %s  safety number %s", dv.Owner().ID(), dv.Owner().ID().SafetyNumber())
	a.note("(a real 'medvault init' asks for a passphrase; this demo keeps its keys in memory only)")

	a.step("The patient imports records exported from a hospital portal (generated FHIR R4, synthetic)")
	var nd bytes.Buffer
	if err := fhir.Generate(&nd, 200, 7); err != nil {
		return err
	}
	st, err := pv.Import("sample-export.ndjson", &nd, nil)
	if err != nil {
		return err
	}
	a.note("%d resources imported, %d carry sensitivity labels derived from their clinical codes", st.Added, st.Labelled)
	labs, _ := pv.List(vault.Filter{Category: record.Labs})
	a.note("%d of them are lab results", len(labs))

	a.step("The patient's node starts on 127.0.0.1 (libp2p over TCP, encrypted with TLS 1.3)")
	// What the node says (served, refused) is shown as the node's, in
	// the narration, as a real 'medvault serve' prints it in its terminal.
	na := &app{stdin: a.stdin, stdout: a.stdout, stderr: &nodeVoice{a: a}, getenv: a.getenv}
	node, err := na.startNode(ctx, pv, []string{"/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		return err
	}
	defer node.Close()
	defer na.pushNotes.stop()
	defer na.pushLimited.stop()
	for _, addr := range node.Addrs() {
		a.note("listening on %s", addr)
	}

	a.step("The patient pins the doctor's contact card and grants lab results for one hour, for treatment")
	dcard, err := newDemoCard(dv)
	if err != nil {
		return err
	}
	if _, err := share.SaveContact(pv, "dr-hopper", dcard, false); err != nil {
		return err
	}
	g, err := share.IssueAndStore(pv, share.GrantParams{Audience: dv.Owner().ID(), Scope: share.Scope{Categories: []record.Category{record.Labs}},
		Purpose: "TREAT", Expiry: time.Now().Add(time.Hour), Hints: node.Addrs()}, time.Now())
	if err != nil {
		return err
	}
	a.note("grant %s (%s, %s, until %s)", g.ID().String()[:12], g.Scope(), g.Purpose(), g.Expiry().In(a.zone()).Format("15:04"))
	a.note("token: %s…", g.Text()[:60])
	if infos, err := share.RecordInfos(pv); err == nil {
		sel := share.Select(g, infos)
		byID := map[record.ID][]record.Label{}
		for _, i := range infos {
			byID[i.ID] = i.Labels
		}
		var ls []string
		for _, lc := range sel.WithheldLabels(func(id record.ID) []record.Label { return byID[id] }, g.Labels()) {
			ls = append(ls, fmt.Sprintf("%d labelled %s", lc.N, lc.Label))
		}
		a.note("it covers %d lab results; %d sensitive ones (%s) stay out: the grant names no label", len(sel.Items), len(sel.Withheld), strings.Join(ls, ", "))
	}

	a.step("The doctor fetches over the network, straight from the patient's node")
	doctorNode, err := p2p.NewNode(ctx, p2p.Config{Key: dv.Owner().NetworkKey()})
	if err != nil {
		return err
	}
	defer doctorNode.Close()
	fetch := func() (*share.FetchResult, time.Duration, error) {
		t0 := time.Now()
		pid, err := p2p.IDFromPublicKey(g.Issuer().PublicKey())
		if err != nil {
			return nil, 0, err
		}
		s, err := doctorNode.DialPeer(ctx, pid, g.Hints(), p2p.ProtocolShare)
		if err != nil {
			return nil, 0, err
		}
		defer s.Close()
		res, err := share.FetchConn(dv, s, g, time.Now(), nil)
		return res, time.Since(t0), err
	}
	res, took, err := fetch()
	if err != nil {
		return err
	}
	a.note("%d records (%s) arrived encrypted to the doctor in %s; receipt: entry %d of the patient's ledger, verified",
		res.Records, vault.FormatSize(res.Bytes), took.Round(time.Millisecond), res.Index)
	got, err := dv.List(vault.Filter{})
	if err != nil {
		return err
	}
	more := len(got) - 5
	if more > 0 {
		got = got[more:]
	}
	a.printRecords(got)
	if more > 0 {
		a.note("(%d more of the doctor's records not shown)", more)
	}

	a.step("The patient revokes the grant")
	issued, err := share.FindIssued(pv, g.ID().String())
	if err != nil {
		return err
	}
	if _, _, err := share.RevokeAndStore(pv, issued, time.Now()); err != nil {
		return err
	}
	a.note("%s", notRecallable)

	a.step("The doctor's next fetch is refused")
	_, _, err = fetch()
	if !errors.Is(err, share.ErrRevoked) {
		return fmt.Errorf("expected the fetch after revocation to be refused, got %v", err)
	}
	a.note("refused: %v (the CLI exits 17)", err)

	a.step("The patient's audit log: every read and change, and every request, served or denied")
	var rows []logRow
	imports := 0
	pv.Entries(0, func(i int64, e *ledger.Entry) error {
		if e.Action != ledger.ActionImport {
			rows = append(rows, logRow{i, e})
		} else {
			imports++
		}
		return nil
	})
	a.note("(%d import entries not shown: one per record (%d), and the import's commit)", imports, st.Added)
	if err := a.printLog(pv, rows); err != nil {
		return err
	}

	a.step("Verify: the ledger's Merkle tree, signed checkpoints and every record against it")
	rep, err := pv.Verify(true)
	if err != nil {
		return err
	}
	a.note("OK: %d entries, %s, %s checked; root %s", rep.Ledger.Size, count(rep.Ledger.Checkpoints, "checkpoint"), count(rep.Records, "record"), rep.Ledger.Latest.Root)
	if rep, err := dv.Verify(true); err != nil {
		return err
	} else {
		a.note("OK: the doctor's vault too (%d entries)", rep.Ledger.Size)
	}
	if keep {
		a.step("Done in %s; the temporary vaults are kept in %s (their keys were in memory only: the files can be inspected, not opened)",
			time.Since(start).Round(time.Millisecond), tmp)
		return nil
	}
	a.step("Done in %s; the temporary vaults are removed", time.Since(start).Round(time.Millisecond))
	return nil
}

func newDemoCard(v *vault.Vault) (*share.Card, error) {
	id := v.Owner()
	r, err := share.ParseAgeRecipient(id.Recipient().String())
	if err != nil {
		return nil, err
	}
	return share.NewCard(id, share.CardParams{Recipient: r, Name: id.Name(), Role: id.Role()}, time.Now())
}
