// Package identity holds a medvault user's keys and their public ID.
//
// A user has one Ed25519 key, whose public half is their ID (written as the
// libp2p peer ID of that key, so the ID is also their network address), and
// one age X25519 identity that records are encrypted to. Both, with a random
// secret from which symmetric vault keys are derived (SubKey), live in one
// file encrypted with an age passphrase (scrypt).
//
// Invariants:
//   - the identity file is created with O_EXCL and mode 0600 and is never
//     overwritten;
//   - private key bytes are unexported; nothing in this package prints,
//     logs or returns them in an error;
//   - reading caps the scrypt work factor (MaxWorkFactor) so a crafted file
//     cannot stall the tool, and returns scrypt's memory to the OS after use.
//
// Caveat: scrypt at DefaultWorkFactor costs about 0.65 s and 256 MiB. Unlock
// once per process. Tests may use a lower work factor; never ship one.
package identity
