// Package vault keeps a user's health records in one bbolt file: each
// record's content as an age file cut into chunks, its metadata sealed, and
// every change or read paired, in the same transaction, with an entry in
// the user's ledger (package ledger).
//
// Invariants:
//   - nothing stored reveals a title, category, label, date, file name or
//     provider name: metadata, FHIR index keys and stored objects (contacts,
//     grants) are sealed or keyed under subkeys of the owner's identity;
//   - a record becomes visible only in the transaction that writes its
//     metadata and ledger entry: an add, import or fetch that fails or is
//     killed leaves nothing visible, and its leftovers are removed at the
//     next Open (except what a broken fetch received, kept hidden as a
//     Partial to resume);
//   - content cannot be read through this package without a ledger entry:
//     Get logs before decrypting, exports log first, and Share needs an
//     Admission whose decision was logged;
//   - Verify checks the ledger and that every stored value is what the
//     ledger committed to;
//   - bbolt byte slices never leave their transaction.
//
// Caveats: only one process opens a vault at a time (a lock file with a
// timeout, ErrLocked); the node (medvault serve) shares one open Vault
// between concurrent requests, which the Vault supports. Deleting compacts
// the whole file so freed pages keep no copy: its cost grows with the vault.
// Rolling the whole file back to an older copy is not detectable locally.
// See docs/DESIGN.md for the format and the threat model.
package vault
