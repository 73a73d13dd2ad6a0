package main

import (
	"io"

	"github.com/spf13/cobra"
)

// run executes medvault with args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := newRootCommand(a)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err != nil {
		printError(stderr, err)
	}
	return exitCode(err)
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
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.passphraseFile, "passphrase-file", "", "read the passphrase from the first line of `FILE`")
	pf.IntVar(&a.passphraseFD, "passphrase-fd", 0, "read the passphrase from file descriptor `N`")

	root.AddCommand(
		newInitCommand(a),
		newIDCommand(a),
		newAddCommand(a),
		newListCommand(a),
		newShowCommand(a),
		newGetCommand(a),
		newRmCommand(a),
		newLabelCommand(a),
		&cobra.Command{
			Use:   "exit-codes",
			Short: "The exit codes medvault returns",
			Long:  exitCodesHelp,
		},
	)
	return root
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
