package audit

import (
	"fmt"
	"slices"
	"time"
)

// Mismatch reports where a log stops verifying: entries 1 through Seq-1
// form a valid chain, and the row read where entry Seq belongs (or, for a
// truncated log, the missing entry Seq) does not continue it. The Reason
// says which check failed. Match it with errors.As.
type Mismatch struct {
	Seq    int64
	Reason string
}

// Error implements error.
func (m *Mismatch) Error() string {
	return fmt.Sprintf("audit: entry %d: %s", m.Seq, m.Reason)
}

// Verifier checks a log read in seq order, one entry at a time, so the
// store need not hold the log in memory. The zero value is ready to use.
//
// To check the log against checkpoints, pass each to Expect before the
// first Add, then Add every entry, then call Check with each checkpoint.
// The first failure sticks: later calls to Add and Check return it.
type Verifier struct {
	seq    int64            // the last verified entry's Seq; 0 before the first
	hash   Hash             // the last verified entry's Hash
	expect map[int64][]Hash // checkpoint hashes by seq, registered by Expect
	err    error
}

// Add verifies e as the entry after the last one added: its Seq must be
// exactly one more (1 for the first), its At must be a whole microsecond
// within the hashable range, its Prev must be the previous entry's Hash
// (zero for the first), its Hash must equal e.Compute(), and, if a
// checkpoint given to Expect names its seq, its Hash must equal the
// checkpoint's. Otherwise Add returns a *Mismatch naming the seq where the
// chain breaks.
func (v *Verifier) Add(e Entry) error {
	if v.err != nil {
		return v.err
	}
	want := v.seq + 1
	fail := func(format string, args ...any) error {
		v.err = &Mismatch{Seq: want, Reason: fmt.Sprintf(format, args...)}
		return v.err
	}
	switch {
	case e.Seq != want:
		return fail("row has seq %d: a row is missing, duplicated, inserted or out of order", e.Seq)
	case !e.At.Equal(truncateAt(e.At)):
		return fail("at %s has sub-microsecond precision, which Next never writes", e.At.UTC().Format(time.RFC3339Nano))
	case e.At.Before(minAt) || e.At.After(maxAt):
		return fail("at %s is outside the hashable range", e.At.UTC())
	case e.Prev != v.hash && want == 1:
		return fail("first entry's prev is not the zero hash")
	case e.Prev != v.hash:
		return fail("prev does not match the hash of entry %d", v.seq)
	case e.Hash != e.Compute():
		return fail("hash does not match the entry's columns")
	}
	for _, h := range v.expect[e.Seq] {
		if e.Hash != h {
			return fail("hash %s differs from the checkpoint's %s", e.Hash, h)
		}
	}
	v.seq, v.hash = e.Seq, e.Hash
	return nil
}

// Head returns the seq and hash of the last entry verified, or 0 and the
// zero hash before the first.
func (v *Verifier) Head() (seq int64, h Hash) { return v.seq, v.hash }

// Expect registers a checkpoint the log must agree with; call it before
// Add reaches cp.Seq (Add keeps only the running head, not every hash).
// Add then fails with a *Mismatch at cp.Seq if that entry's hash differs
// from cp.Hash: the chain up to it was rewritten. Check(cp) after the last
// Add catches a log that ends before cp.Seq.
func (v *Verifier) Expect(cp Checkpoint) {
	if cp.Seq <= v.seq {
		return // too late to compare; Check reports it unless cp is the head
	}
	if v.expect == nil {
		v.expect = make(map[int64][]Hash)
	}
	v.expect[cp.Seq] = append(v.expect[cp.Seq], cp.Hash)
}

// Check reports whether the log added so far agrees with cp; call it after
// the last Add. It returns a *Mismatch when the log is shorter than cp.Seq
// (truncated) or holds a different hash at cp.Seq (rewritten), and nil when
// the entry at cp.Seq matches, however far the log has grown past it. When
// cp.Seq is before the head, cp must have been given to Expect before Add
// reached it; otherwise Check returns an error that is not a *Mismatch,
// since the verifier cannot tell. Check does not look at cp.Origin: the
// caller checks that the checkpoint is this server's.
func (v *Verifier) Check(cp Checkpoint) error {
	switch {
	case v.err != nil:
		return v.err
	case cp.Seq < 1:
		return fmt.Errorf("audit: checkpoint seq %d: want at least 1", cp.Seq)
	case cp.Seq > v.seq:
		return &Mismatch{Seq: v.seq + 1, Reason: fmt.Sprintf("log ends at seq %d, but a checkpoint names seq %d: the log was truncated", v.seq, cp.Seq)}
	case cp.Seq == v.seq && cp.Hash != v.hash:
		return &Mismatch{Seq: cp.Seq, Reason: fmt.Sprintf("hash %s differs from the checkpoint's %s", v.hash, cp.Hash)}
	case cp.Seq == v.seq:
		return nil
	case slices.Contains(v.expect[cp.Seq], cp.Hash):
		return nil // Add compared the entry at cp.Seq with it
	default:
		return fmt.Errorf("audit: checkpoint at seq %d was not given to Expect before Add passed it, so it cannot be checked", cp.Seq)
	}
}

// Verify checks a whole log held in memory, in seq order, against the
// given checkpoints, and returns its head: the seq and hash of the last
// entry, or 0 and the zero hash for an empty log. Errors are as for
// Verifier.Add and Verifier.Check.
func Verify(entries []Entry, cps ...Checkpoint) (int64, Hash, error) {
	var v Verifier
	for _, cp := range cps {
		v.Expect(cp)
	}
	for _, e := range entries {
		if err := v.Add(e); err != nil {
			return 0, Hash{}, err
		}
	}
	for _, cp := range cps {
		if err := v.Check(cp); err != nil {
			return 0, Hash{}, err
		}
	}
	seq, h := v.Head()
	return seq, h, nil
}
