// Package ledger is medvault's tamper-evident personal access log.
//
// Every change to a vault and every access to it (by the owner or by a
// provider under a grant) becomes an Entry. Entries are the leaves of an
// RFC 6962 Merkle tree (golang.org/x/mod/sumdb/tlog) stored in bbolt, and
// the tree is committed to by checkpoints in the C2SP tlog-checkpoint
// signed-note format, signed by the owner's Ed25519 key. FORMAT.md beside
// this file specifies every byte.
//
// # Use
//
// A Log holds configuration only. Every method takes the caller's
// *bbolt.Tx, so the vault appends an entry in the same transaction as the
// change it records, and calls Checkpoint once before committing:
//
//	err := db.Update(func(tx *bbolt.Tx) error {
//		// ... change the vault ...
//		if _, err := lg.Append(tx, &ledger.Entry{Action: ledger.ActionAdd, Outcome: ledger.OutcomeOK, ...}); err != nil {
//			return err
//		}
//		_, err := lg.Checkpoint(tx)
//		return err
//	})
//
// A provider who receives an entry (a Leaf), a checkpoint and an inclusion
// proof checks them offline with ParseCheckpoint, Leaf.Hash and
// VerifyInclusion; a later checkpoint is checked against an earlier one
// with VerifyConsistency. Two signed checkpoints that cannot both be true
// make ForkEvidence, which anyone holding the public key can Check.
//
// # Invariants
//
//   - Entry encoding is canonical: one encoding per value; decoders reject
//     everything else, are bounded (MaxEntrySize, MaxCheckpointSize,
//     MaxProofHashes) and never panic.
//   - Leaves are salted (32 random bytes per entry), so an inclusion proof
//     reveals nothing about other entries; leaf and sealing inputs carry
//     versioned domain-separation strings ("medvault/ledger/leaf/v1", ...).
//   - With an AEAD configured, stored entries are sealed; the additional
//     data binds each entry to its index, so moving or swapping entries
//     fails to decrypt. The file then shows the number and sizes of
//     entries and the checkpoints, not who accessed what.
//   - At most one checkpoint per Checkpoint call; older checkpoints are
//     thinned (the latest KeepLatest, plus the first at or past each power
//     of two), and the latest commits to the set kept, so removing one is
//     detected.
//   - Byte slices read from bbolt never leave the transaction: results
//     are copies.
//   - Signatures are verified on the exact stored bytes; nothing is
//     re-serialised before verifying.
//
// # Caveats
//
//   - Verify sees any change to the ledger buckets except one: replacing
//     the whole file (or the whole ledger) by an older genuine copy. That
//     rollback can only be seen by someone who saw a later checkpoint: a
//     provider holding a receipt, or a future witness. Log.ProveFork turns
//     such a checkpoint into evidence.
//   - Incremental Verify (full == false) trusts the entries before the
//     verified-through marker; only full mode re-checks old entries. Set
//     Config.MarkerKey, or anyone who can write the file can move the
//     marker to the latest checkpoint and make incremental mode skip all.
//   - Cutting off the newest entries together with every checkpoint that
//     covers them leaves an older genuine ledger: a rollback, as above.
//   - Entries after the latest checkpoint count as tampering: callers
//     must call Checkpoint in every write transaction that appends.
//   - Ciphertext lengths are visible: an entry's size shows roughly how
//     many subjects it names and whether it carries a signed request.
//   - Whoever holds the signing key can fork the log (sign a different
//     history); a fork is detectable only by comparing checkpoints.
package ledger
