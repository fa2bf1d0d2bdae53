// Package audit is the pure core of fieldsync's tamper-evident audit trail:
// it hashes entries into a chain, verifies a stream of stored entries, and
// signs and opens checkpoints of the chain's head. It does no I/O and reads
// no clock; the store keeps the rows and times come in as values.
//
// # The chain
//
// Every accepted push, conflict resolution, sign-off, device enrolment,
// revocation and key rotation appends an [Entry]. Entry n carries the hash
// of entry n-1 (Prev) and its own hash (Hash), a SHA-256 over all its
// columns and Prev; see [Entry.Compute] for the exact encoding. The first
// entry has Seq 1 and a zero Prev. [Next] builds entries; a [Verifier] reads
// them back in seq order and names the first one that does not fit.
//
// # What the chain detects, and what it cannot
//
// The chain has no secret: anyone who can write the audit_log table and
// reads this package can compute hashes. On its own, the chain detects a
// changed column in any row, and a deleted, inserted, duplicated or moved
// row anywhere before the newest entry: the row's seq, its own Hash, or the
// next entry's Prev stops matching, and the Verifier names the first such
// seq.
//
// Two attacks leave a chain that is consistent in itself, so the chain
// alone cannot detect them:
//
//   - truncation: deleting the newest entries leaves a shorter, valid chain;
//   - rebuilding: editing entry k and recomputing the hashes of entries k
//     through the newest (or editing the newest entry and recomputing its
//     own hash) leaves a different, valid chain.
//
// Both are detected against a [Checkpoint]: the seq and hash of the head at
// some moment, signed by the server's key (a note in the format of
// golang.org/x/mod/sumdb/note) and kept off the server by a supervisor. A
// verified checkpoint authenticates every entry up to its seq, because the
// head's hash commits to the whole chain before it. [Verifier.Check] fails
// if the log is shorter than the checkpoint or holds a different entry at
// its seq. That is why checkpoints exist.
//
// Entries after the newest checkpoint a supervisor holds are not
// authenticated: someone with write access may change, drop or append them
// without a trace until the next checkpoint is taken off the server. The
// exposure window is the time between checkpoints. A checkpoint also does
// not protect against an attacker who holds the signing key and swaps the
// checkpoints supervisors keep; it protects the log, not the key.
//
// # Invariants the store must keep
//
//   - At is hashed as UTC Unix nanoseconds after truncation to whole
//     microseconds, because PostgreSQL's timestamptz keeps microseconds.
//     [Next] truncates; the store must keep at least microsecond precision
//     and must not round. The time zone the store returns does not matter.
//   - Detail is hashed byte for byte. It is canonical JSON stored in a text
//     column; never jsonb, which reorders keys and drops whitespace.
//   - Hashes are stored as lower-case hex ([Hash.String], [ParseHash]).
//   - Rows are read in ascending seq order and given to the Verifier one by
//     one; seq has no gaps, so a missing seq is a deleted row.
package audit
