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
// Wire format (Request.V 3): frames of a 1-byte type, a 4-byte big-endian
// length and a payload of at most MaxFrame bytes. The client sends one 'h'
// frame (JSON Request); the server answers 'a' (accepted, empty) at once;
// the client answers 'g' (go, empty). The server runs the command only
// after 'g', so a client that gave up before 'a' never has its command run
// later. When the command first reads standard input the server sends 'w'
// (want, empty), and only then does the client read its own standard input
// and send it as 'i' frames and one 'e' frame at its end ('f' with the
// reason if reading failed); a client without input (a terminal) sends 'e'
// right after 'g'. A command that never reads leaves the client's input
// unread, as it would running in the client. A file argument the node
// cannot open as the client would (Request.StdinArg: /dev/stdin, a pipe)
// travels the same way, as standard input. While it runs, the server sends 'o' (stdout) and 'r' (stderr)
// frames and an empty 'k' frame every 2 s, and finally one 'x' frame
// holding the exit code (4 bytes, BE). A client that hears nothing for 5 s before 'a', or for 15 s
// after it, gives up (ErrNodeStuck): a stopped or wedged
// node never makes a command hang. A server closes a request of another
// version without answering. A server that is stopping answers a request
// with 'z' (empty) instead of 'a' (ErrNodeStopping): it keeps its socket
// until its last commands finish, so a new command learns why it cannot
// run rather than find no node and wait on the vault the node still holds.
package control
