package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/medvault/medvault/cmd/medvault/internal/control"

	"github.com/spf13/cobra"
)

// run executes medvault with args and returns the exit code. When a node
// ('medvault serve') is running for the data directory, commands that use
// the vault are forwarded to it.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	if code, ok := a.forward(args); ok {
		return code
	}
	return execute(a, args)
}

func execute(a *app, args []string) int {
	root := newRootCommand(a)
	if len(args) > 0 && strings.HasPrefix(args[0], cobra.ShellCompRequestCmd) {
		// Only a shell asking for completions needs them: building
		// them for every command would add to every start-up.
		registerCompletions(a, root)
	}
	strictCompletion(root, args)
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	c, err := root.ExecuteC()
	if err != nil {
		err = namedCommandHint(plainCobraError(err), root, c)
		printError(a.stderr, err)
	}
	return exitCode(err)
}

// namedCommandHint puts the name of the command that failed, c, in place of
// COMMAND in the hint of a usage error: 'medvault grant --help' is what
// to run, not 'medvault COMMAND --help'.
func namedCommandHint(err error, root, c *cobra.Command) error {
	h := hintFor(err)
	if !strings.Contains(h, "COMMAND") || c == nil {
		return err
	}
	if c == root {
		return withHint(err, "see 'medvault help'")
	}
	return withHint(err, "see '"+c.CommandPath()+" --help'")
}

// strictCompletion makes 'completion' refuse a shell it does not know, as
// 'contacts' refuses an unknown subcommand: cobra's own prints its help and
// exits 0, so 'medvault completion tcsh > file' would pass in a script.
func strictCompletion(root *cobra.Command, args []string) {
	root.InitDefaultCompletionCmd(args...)
	c, _, err := root.Find([]string{"completion"})
	if err != nil || c == root {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return withHint(usagef("unknown shell %q for \"medvault completion\" (bash, zsh, fish or powershell)", args[0]),
				"see 'medvault completion --help'")
		}
		return cmd.Help()
	}
}

func init() { cobra.AddTemplateFunc("buildVersion", version) }

// version describes this build: the module version (or "(devel)") and,
// when built from a git checkout, the commit and whether it had changes.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+changes"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return v + " " + bi.GoVersion
}

// plainCobraError rewrites the errors cobra and pflag make from bad
// command lines into medvault's words, without Go's internals, as usage
// errors (exit 2).
func plainCobraError(err error) error {
	// Compiled here, on an error, not at every start-up.
	quoted := regexp.MustCompile(`"([^"]*)"`)
	badFlagValue := regexp.MustCompile(`^invalid argument "(.*)" for "(.*)" flag: strconv\.Parse(Int|Uint|Float|Bool): .*$`)
	msg := err.Error()
	if strings.HasPrefix(msg, "required flag(s) ") {
		var names []string
		for _, m := range quoted.FindAllStringSubmatch(msg, -1) {
			names = append(names, "--"+m[1])
		}
		verb := "is"
		if len(names) > 1 {
			verb = "are"
		}
		return withHint(usagef("%s %s required", strings.Join(names, " and "), verb), "see 'medvault COMMAND --help'")
	}
	if m := badFlagValue.FindStringSubmatch(msg); m != nil {
		want := map[string]string{"Int": "a whole number", "Uint": "a whole number of 0 or more", "Float": "a number", "Bool": "true or false"}[m[3]]
		return withHint(usagef("invalid value %q for %s: want %s", m[1], m[2], want), "see 'medvault COMMAND --help'")
	}
	return err
}

// localOnly marks commands that never run inside the node.
var localOnly = map[string]bool{"init": true, "serve": true, "demo": true, "completion": true, "help": true, "exit-codes": true, "man": true, "medvault": true}

// confirmRemove asks on the terminal, before rm goes to the node, whether
// to delete; it returns false when --yes was given (nothing to ask).
func (a *app) confirmRemove(rm *cobra.Command, args []string) (bool, error) {
	if err := rm.ParseFlags(args); err != nil {
		return false, nil // the node reports it
	}
	if yes, _ := rm.Flags().GetBool("yes"); yes {
		return false, nil
	}
	ids := rm.Flags().Args()
	if len(ids) > 0 && ids[0] == rm.Name() {
		ids = ids[1:]
	}
	if len(ids) != 1 {
		return false, nil
	}
	fmt.Fprintf(a.stderr, "Delete record %s for good? Type yes: ", sanitize(ids[0]))
	line, _ := readLine(a.stdin)
	if strings.TrimSpace(line) != "yes" {
		return false, errCancelled
	}
	a.removeConfirmed = true
	return true, nil
}

// clientFile opens, for a command that reads files (add, import), the one
// file argument the node could not open as this process would: a path under
// /dev or /proc (/dev/stdin, /dev/fd/63 from '<(...)', which name this
// process's descriptors) or anything that is not a regular file or a
// directory (a named pipe). Its content then travels as the command's
// standard input (Request.StdinArg). It returns a nil file when there is
// none, and a usage error when there are several, or one besides "-".
func (a *app) clientFile(cmd *cobra.Command, args []string) (string, *os.File, error) {
	if cmd.Name() != "add" && cmd.Name() != "import" {
		return "", nil, nil
	}
	c := newRootCommand(&app{getenv: a.getenv})
	sub, rest, err := c.Find(args)
	if err != nil || sub.ParseFlags(rest) != nil {
		return "", nil, nil // the node reports it
	}
	var special []string
	dash := false
	files := sub.Flags().Args()
	if len(files) > 0 && files[0] == sub.Name() {
		files = files[1:]
	}
	for _, p := range files {
		if p == "-" {
			dash = true
			continue
		}
		if clientOnly(a.abs(p)) {
			special = append(special, p)
		}
	}
	switch {
	case len(special) == 0:
		return "", nil, nil
	case len(special) > 1 || dash:
		return "", nil, withHint(usagef("%s: only one pipe or device (or -) can be read while a node runs", sanitize(special[len(special)-1])),
			"save all but one to files first, or stop 'medvault serve'")
	}
	f, err := openRegular(a.abs(special[0]))
	if err != nil {
		return "", nil, err
	}
	return special[0], f, nil
}

// clientOnly reports whether path must be opened by this process rather
// than by the node (see clientFile). A path is judged by where it leads,
// not only by how it is spelled: a symbolic link to /proc/self/environ
// opened by the node stored the node's environment, not the caller's.
// A link that cannot be followed to the end (a pipe's /proc/self/fd/N
// leads to "pipe:[...]") is opened here too: the node must not find out
// what it means in its own process.
func clientOnly(path string) bool {
	if procOrDev(path) || viaProcOrDev(path) {
		return true
	}
	st, err := os.Stat(path)
	return err == nil && !st.Mode().IsRegular() && !st.IsDir()
}

// viaProcOrDev reports whether resolving path, relative to this process's
// working directory, passes through /proc or /dev at any step: a link to
// /proc/self/cwd/x.txt ends at a regular file, but which one depends on the
// process that opens it. It resolves as the kernel does, one component at
// a time, ".." against the directory reached so far (not the text: in
// L/../x, L's target's parent), and follows at most 40 links (then true:
// the client opens it). A link that leads nowhere is true as well.
func viaProcOrDev(path string) bool {
	if !strings.HasPrefix(path, "/") {
		wd, err := os.Getwd()
		if err != nil {
			return true
		}
		path = wd + "/" + path
	}
	rest := strings.Split(path, "/")
	cur := "/" // resolved: no links, no "..", under neither /proc nor /dev
	for links := 0; len(rest) > 0; {
		part := rest[0]
		rest = rest[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		c := filepath.Join(cur, part)
		if procOrDev(c) {
			return true
		}
		fi, err := os.Lstat(c)
		if err != nil {
			// Missing: the open fails either way, but where a link led
			// here (a dangling link, or one into a pipe's
			// /proc/self/fd/N) what it means is the caller's to find.
			return links > 0
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = c
			continue
		}
		if links++; links > 40 {
			return true
		}
		t, err := os.Readlink(c)
		if err != nil {
			return true
		}
		if strings.HasPrefix(t, "/") {
			cur = "/"
		}
		rest = append(strings.Split(t, "/"), rest...)
	}
	return false
}

// procOrDev reports whether path names something under /proc or /dev,
// whose meaning depends on the process that opens it.
func procOrDev(path string) bool {
	clean := filepath.Clean(path)
	return clean == "/proc" || clean == "/dev" || strings.HasPrefix(clean, "/dev/") || strings.HasPrefix(clean, "/proc/")
}

// removable asks the node to show the record rm names; when it cannot (no
// such record, an ambiguous prefix), it prints why and returns the exit
// code and false. Flags and ID go as given, so the node resolves them
// exactly as it will for the rm itself.
func (a *app) removable(sock string, req control.Request, rm *cobra.Command, args []string) (int, bool) {
	if err := rm.ParseFlags(args); err != nil {
		return 0, true // the node reports it
	}
	ids := rm.Flags().Args()
	if len(ids) > 0 && ids[0] == rm.Name() {
		ids = ids[1:]
	}
	if len(ids) != 1 {
		return 0, true
	}
	req.Args = []string{"show", "--", ids[0]}
	var errb bytes.Buffer
	code, err := control.Call(sock, req, nil, io.Discard, &errb)
	if err != nil || code == exitOK {
		return 0, true // the rm itself meets and reports what went wrong
	}
	a.stderr.Write(errb.Bytes())
	return code, false
}

// withFlag returns args with flag added among the flags: before a "--"
// that ends them, or at the end.
func withFlag(args []string, flag string) []string {
	i := slices.Index(args, "--")
	if i < 0 {
		i = len(args)
	}
	return slices.Concat(args[:i], []string{flag}, args[i:])
}

// forward runs args in the node when one is running and the command uses
// the vault. ok is false when the command must run here.
func (a *app) forward(args []string) (code int, ok bool) {
	// Help is never forwarded: look for it before building the command
	// tree, which --help (the start-up budget's measure) then builds once.
	for _, s := range args {
		if s == "--" {
			break
		}
		if s == "-h" || s == "--help" {
			return 0, false
		}
	}
	root := newRootCommand(a)
	cmd, _, err := root.Find(args)
	if err != nil || localOnly[cmd.Name()] || (cmd.Parent() != nil && localOnly[cmd.Parent().Name()] && cmd.Parent() != root) {
		return 0, false
	}
	dir, err := a.dataDir()
	if err != nil || checkDataDir(dir) != nil {
		// Run here, where the same check reports it.
		return 0, false
	}
	// Empty if this directory was removed: the node then resolves no
	// relative path (see runInNode).
	cwd, _ := os.Getwd()
	req := a.nodeRequest(args, cwd)
	if cmd.Name() == "rm" && req.StdinTTY && control.Running(filepath.Join(dir, nodeSocket)) {
		// The node cannot read this terminal: ask here, and send the
		// answer as --yes; but first let the node say whether there is
		// such a record, so nobody confirms deleting one that is not.
		if code, ok := a.removable(filepath.Join(dir, nodeSocket), req, cmd, args); !ok {
			return code, true
		}
		yes, err := a.confirmRemove(cmd, args)
		if err != nil {
			printError(a.stderr, err)
			return exitCode(err), true
		}
		if yes {
			req.Args = withFlag(args, "--yes")
		}
	}
	var in io.Reader
	if !req.StdinTTY {
		in = a.stdin
	}
	name, pre, err := a.clientFile(cmd, args)
	if err != nil {
		printError(a.stderr, err)
		return exitCode(err), true
	}
	if pre != nil {
		defer func() {
			if a.preopened[name] != pre {
				pre.Close()
			}
		}()
		req.StdinArg, req.StdinTTY, in = name, false, pre
	}
	if passFD(args) == "0" && a.getenv("MEDVAULT_PASSPHRASE_FILE") == "" && !hasFlag(args, "--passphrase-file") &&
		control.Running(filepath.Join(dir, nodeSocket)) {
		// The node needs no passphrase, but the first line of standard
		// input is one: read it here, or it would become the start of
		// what 'add -' stores.
		if pass, err := readPassphrase(oneByte{a.stdin}); err == nil {
			clear(pass)
		}
	}
	code, err = control.Call(filepath.Join(dir, nodeSocket), req, in, a.stdout, a.stderr)
	if errors.Is(err, control.ErrNoNode) {
		if pre != nil {
			// The command runs here: it reads the file already open.
			// Opening a named pipe again would wait for a second
			// writer, and what the first one wrote would be lost with
			// the descriptor closed.
			a.preopened = map[string]*os.File{name: pre}
		}
		return 0, false
	}
	if errors.Is(err, control.ErrForeignNode) {
		printError(a.stderr, withHint(err, "another user's process listens in "+dir+": nothing was sent to it; check who can write there (chmod 700 "+dir+")"))
		return exitFailure, true
	}
	if errors.Is(err, control.ErrNodeStopping) {
		// It holds the vault until its last commands end.
		printError(a.stderr, withHint(err, "it holds the vault until its last commands finish (at most a few seconds); run the command again then"))
		return exitBusy, true
	}
	if errors.Is(err, control.ErrNodeStuck) {
		// The node holds the vault: opening it here would only wait
		// on the lock.
		printError(a.stderr, withHint(err, "the node ('medvault serve') for "+dir+" holds the vault: see whether it was stopped (kill -CONT) or restart it"))
		return exitBusy, true
	}
	if err != nil {
		printError(a.stderr, err)
		return exitFailure, true
	}
	return code, true
}

// nodeRequest describes a command for the node: its arguments and what
// the node cannot see of this process (working directory, terminals,
// environment). A terminal that cannot show styles (TERM=dumb) travels as
// NoColor: the node's own TERM is not the caller's.
func (a *app) nodeRequest(args []string, cwd string) control.Request {
	return control.Request{Args: args, Dir: cwd, StdinTTY: a.isTTY(a.stdin), StdoutTTY: a.stdoutTTY(),
		NoColor:          a.getenv("NO_COLOR") != "" || a.getenv("TERM") == "dumb",
		MaxGrantLifetime: a.getenv("MEDVAULT_MAX_GRANT_LIFETIME"), TZ: a.getenv("TZ")}
}

func newRootCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "medvault",
		Short: "A patient-side vault for health records",
		Long: `medvault keeps your health records on your own machine, encrypted; lets you
decide who may read which of them, for how long and for what purpose; and keeps
a tamper-evident log of every read and change.

Data directory: $MEDVAULT_HOME, else $XDG_DATA_HOME/medvault, else ~/.local/share/medvault.
Passphrase: --passphrase-file FILE, $MEDVAULT_PASSPHRASE_FILE, --passphrase-fd N, or a prompt.`,
		Example: `  medvault init --name "Ada Lovelace"
  medvault add scan.pdf --category imaging --title "Knee MRI" --date 2026-03-02
  medvault list
  medvault help exit-codes`,
		// Non-empty, so cobra adds --version; the template asks
		// buildVersion, which reads the build info only when printed.
		Version:           "-",
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	// cobra's help command prints the root's help for a topic it does not
	// know and exits 0: a typo in a script would pass.
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		ValidArgsFunction: func(_ *cobra.Command, args []string, typed string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, _, err := root.Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() || sub.IsAdditionalHelpTopicCommand() {
					if strings.HasPrefix(sub.Name(), typed) {
						out = append(out, cobra.CompletionWithDesc(sub.Name(), sub.Short))
					}
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(_ *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return withHint(usagef("unknown help topic %q", strings.Join(args, " ")), "see 'medvault help'")
			}
			return cmd.Help()
		},
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.passphraseFile, "passphrase-file", "", "read the passphrase from the first line of `FILE`")
	pf.IntVar(&a.passphraseFD, "passphrase-fd", -1, "read the passphrase from file descriptor `N` (its first line; 0 is standard input)")

	root.AddCommand(
		newInitCommand(a),
		newIDCommand(a),
		newAddCommand(a),
		newListCommand(a),
		newShowCommand(a),
		newGetCommand(a),
		newRmCommand(a),
		newLabelCommand(a),
		newImportCommand(a),
		newExportCommand(a),
		newLogCommand(a),
		newVerifyCommand(a),
		newAuditCommand(a),
		newContactsCommand(a),
		newGrantCommand(a),
		newGrantsCommand(a),
		newRevokeCommand(a),
		newServeCommand(a),
		newFetchCommand(a),
		newInboxCommand(a),
		newWitnessCommand(a),
		newDemoCommand(a),
		newManCommand(a),
		&cobra.Command{
			Use:   "exit-codes",
			Short: "The exit codes medvault returns",
			Long:  exitCodesHelp,
		},
	)
	root.SetVersionTemplate("{{.Name}} version {{buildVersion}}\n")
	return root
}

// exactArgsOr is exactArgs(n) that, given more arguments, lets extra say
// what an extra one is for: it returns the error to give, or nil for the
// usual one.
func exactArgsOr(n int, extra func(cmd *cobra.Command, args []string) error) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			if err := extra(cmd, args); err != nil {
				return err
			}
		}
		return exactArgs(n)(cmd, args)
	}
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// passFD returns the value given to --passphrase-fd in args (before any
// "--"), or "".
func passFD(args []string) string {
	v := ""
	for i, s := range args {
		switch {
		case s == "--":
			return v
		case s == "--passphrase-fd" && i+1 < len(args):
			v = args[i+1]
		case strings.HasPrefix(s, "--passphrase-fd="):
			v = strings.TrimPrefix(s, "--passphrase-fd=")
		}
	}
	return v
}

// hasFlag reports whether args (before any "--") give the flag, alone or
// as --flag=value.
func hasFlag(args []string, flag string) bool {
	for _, s := range args {
		if s == "--" {
			return false
		}
		if s == flag || strings.HasPrefix(s, flag+"=") {
			return true
		}
	}
	return false
}
