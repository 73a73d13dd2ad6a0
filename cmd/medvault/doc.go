// Command medvault is a patient-side vault for health records: the CLI of
// packages vault, ledger, share and p2p.
//
// This package only parses flags, prompts, prints and maps errors to the
// documented exit codes (exit.go); it is the only code that reads os.Args,
// the environment or the terminal. Commands are built by constructors
// (newXCommand) with no package-level state. While 'medvault serve' runs,
// commands are forwarded to it over a local control socket
// (internal/control) and run there against the node's open vault.
//
// Run 'medvault help' for the commands and 'medvault help exit-codes' for
// the exit codes.
package main
