// Command startup-ref is the reference for medvault's start-up budget: the
// BRIEF gives "6.4 ms with libp2p linked in" for `--help` of a cobra program
// that links go-libp2p. docs/bench/add-get.sh times its --help beside
// medvault's, so the budget can be read against what this machine does.
package main

import (
	"os"

	_ "github.com/libp2p/go-libp2p" // linked in: its package initialisers run
	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:   "startup-ref",
		Short: "A cobra program with go-libp2p linked in",
	}
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}
