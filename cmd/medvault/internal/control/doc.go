// Package control lets medvault commands run inside a running node
// ('medvault serve'), the way kubo's CLI talks to its daemon: while the node
// holds the vault open and the identity unlocked, a command forwards its
// arguments and standard streams over a unix socket in the data directory
// and the node runs it, so the command neither waits on the vault lock nor
// asks for the passphrase again.
//
// Security: the socket is created mode 0600 inside the 0700 data directory,
// and the server also checks the connecting process's user ID
// (SO_PEERCRED). Anyone who can act as that user can use the vault while
// the node runs, without the passphrase; that is the price of not unlocking
// per command, and the same trust the user's account already has over the
// node's memory.
//
// Wire format (medvault/control/v1): frames of a 1-byte type, a 4-byte
// big-endian length and a payload of at most MaxFrame bytes. The client
// sends one 'h' frame (JSON Request), then 'i' frames of standard input and
// one 'e' frame at its end. The server sends 'o' (stdout) and 'r' (stderr)
// frames and finally one 'x' frame holding the exit code (4 bytes, BE).
package control
