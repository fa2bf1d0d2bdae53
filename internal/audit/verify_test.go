package audit_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/audit"
	"pgregory.net/rapid"
)

var (
	kinds    = []string{"push", "resolve", "signoff", "enrol", "revoke", "rotate"}
	actors   = []string{"user:ana", "user:Zoë", "device:7f3a", "device:0b21", "system", ""}
	subjects = []string{"record:tasks/42", "record:sites/7", "conflict:17", "device:7f3a", "key:2025-03", ""}
)

// buildLog returns a valid log of n entries with varied fields, the same
// for the same seed.
func buildLog(seed uint64, n int) []audit.Entry {
	r := rand.New(rand.NewPCG(seed, 0))
	at := time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC)
	var log []audit.Entry
	for i := range n {
		if r.IntN(4) > 0 { // some entries share a timestamp
			at = at.Add(time.Duration(r.Int64N(5e6)) * time.Microsecond)
		}
		detail := []byte(fmt.Sprintf(`{"n":%d,"note":%q}`, i, subjects[r.IntN(len(subjects))]))
		if r.IntN(8) == 0 {
			detail = nil
		}
		var prev *audit.Entry
		if len(log) > 0 {
			prev = &log[len(log)-1]
		}
		log = append(log, audit.Next(prev, at, pick(r, kinds), pick(r, actors), pick(r, subjects), detail))
	}
	return log
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// rebuild recomputes Seq, Prev and Hash of every entry from index i on, as
// an attacker who knows the algorithm would after editing entry i.
func rebuild(log []audit.Entry, i int) {
	for ; i < len(log); i++ {
		var prev *audit.Entry
		if i > 0 {
			prev = &log[i-1]
		}
		e := log[i]
		log[i] = audit.Next(prev, e.At, e.Kind, e.Actor, e.Subject, e.Detail)
	}
}

func sameEntry(a, b audit.Entry) bool {
	return a.Seq == b.Seq && a.At.Equal(b.At) && a.Kind == b.Kind && a.Actor == b.Actor &&
		a.Subject == b.Subject && bytes.Equal(a.Detail, b.Detail) && a.Prev == b.Prev && a.Hash == b.Hash
}

// firstChange returns the index of the first entry where got differs from
// want, or len(got) if got is a strict prefix of want.
func firstChange(want, got []audit.Entry) int {
	for i := range got {
		if i >= len(want) || !sameEntry(want[i], got[i]) {
			return i
		}
	}
	return len(got)
}

func TestChainVerifies(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 60).Draw(t, "n")
		log := buildLog(rapid.Uint64().Draw(t, "seed"), n)
		seq, head, err := audit.Verify(log)
		if err != nil {
			t.Fatalf("a log built with Next does not verify: %v", err)
		}
		want := audit.Hash{}
		if n > 0 {
			want = log[n-1].Hash
		}
		if seq != int64(n) || head != want {
			t.Fatalf("head = %d %s, want %d %s", seq, head, n, want)
		}
	})
}

// Hashes are a function of the entries alone: the same log twice gives the
// same hashes.
func TestChainIsDeterministic(t *testing.T) {
	a, b := buildLog(7, 40), buildLog(7, 40)
	for i := range a {
		if a[i].Hash != b[i].Hash {
			t.Fatalf("entry %d hashes to %s and to %s", i+1, a[i].Hash, b[i].Hash)
		}
	}
}

// A mutation is one way an attacker with write access to audit_log could
// change the rows. apply works on a copy and returns the changed log and,
// for mutations whose position matters, a label such as "first".
type mutation struct {
	name string
	// slack is how many rows past the first changed one detection may come:
	// 1 when the changed row is itself a valid continuation of the chain (the
	// forger computed its hash), so only the row after it, or the checkpoint,
	// breaks.
	slack int
	// rebuilt marks a chain rebuilt to the end, which only the checkpoint
	// catches, at its seq.
	rebuilt bool
	apply   func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string)
}

// position picks a row index in [0, n), the first and the last row a
// quarter of the time each, so that the edges are always covered.
func position(r *rand.Rand, n int) (int, string) {
	switch r.IntN(4) {
	case 0:
		return 0, "first"
	case 1:
		return n - 1, "last"
	}
	return r.IntN(n), ""
}

// columns are the columns editColumn can change; contentColumns are those
// a forger who recomputes the row's own hash would edit.
var (
	columns        = []string{"at", "kind", "actor", "subject", "detail", "prev", "hash", "seq"}
	contentColumns = []string{"at", "kind", "actor", "subject", "detail", "prev"}
)

// editColumn changes one column of e to a different value.
func editColumn(r *rand.Rand, e *audit.Entry, column string, log []audit.Entry) {
	orig := *e
	for sameEntry(orig, *e) {
		switch column {
		case "at":
			switch r.IntN(3) {
			case 0:
				e.At = orig.At.Add(time.Duration(r.Int64N(2e9)-1e9) * time.Microsecond)
			case 1: // below the precision the store keeps
				e.At = orig.At.Add(time.Duration(1 + r.IntN(999)))
			case 2: // hashes alike: only the range check catches it
				e.At = alias(orig.At)
			}
		case "kind":
			e.Kind = editString(r, orig.Kind, kinds)
		case "actor":
			e.Actor = editString(r, orig.Actor, actors)
		case "subject":
			e.Subject = editString(r, orig.Subject, subjects)
		case "detail":
			switch r.IntN(3) {
			case 0:
				e.Detail = append([]byte(" "), orig.Detail...) // same JSON, other bytes
			case 1:
				e.Detail = []byte(fmt.Sprintf(`{"n":%d}`, r.IntN(100)))
			case 2:
				e.Detail = nil
			}
		case "prev", "hash":
			h := &e.Prev
			if column == "hash" {
				h = &e.Hash
			}
			switch r.IntN(3) {
			case 0:
				h[r.IntN(len(h))] ^= 1 << r.IntN(8)
			case 1:
				*h = pick(r, log).Hash
			case 2:
				*h = audit.Hash{}
			}
		case "seq":
			switch r.IntN(4) {
			case 0:
				e.Seq = orig.Seq + int64(r.IntN(3)) - 1
			case 1:
				e.Seq = pick(r, log).Seq
			case 2:
				e.Seq = -e.Seq
			case 3:
				e.Seq = r.Int64()
			}
		default:
			panic("unknown column " + column)
		}
	}
}

func editString(r *rand.Rand, s string, pool []string) string {
	switch r.IntN(3) {
	case 0:
		return s + "x"
	case 1:
		if s != "" {
			return s[:len(s)-1]
		}
	}
	return pick(r, pool)
}

// forged returns a row an attacker made up to sit at index i of log.
func forged(r *rand.Rand, log []audit.Entry, i int) audit.Entry {
	var prev *audit.Entry
	if i > 0 {
		prev = &log[i-1]
	}
	at := log[min(i, len(log)-1)].At
	return audit.Next(prev, at, "signoff", pick(r, actors[:4]), "record:forged", []byte(`{"approved":true}`))
}

var mutations = func() []mutation {
	var ms []mutation
	for _, c := range columns {
		ms = append(ms, mutation{name: "edit " + c, apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			i, label := position(r, len(log))
			editColumn(r, &log[i], c, log)
			return log, label
		}})
	}
	return append(ms,
		mutation{name: "edit a column and recompute the row's hash", slack: 1, apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			i, label := position(r, len(log))
			editColumn(r, &log[i], pick(r, contentColumns), log)
			log[i].Hash = log[i].Compute()
			return log, label
		}},
		mutation{name: "delete a row", apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			i, label := position(r, len(log))
			return slices.Delete(log, i, i+1), label
		}},
		mutation{name: "delete a row and relink the rest, keeping their seqs", apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			i, label := position(r, len(log))
			log = slices.Delete(log, i, i+1)
			for j := i; j < len(log); j++ {
				log[j].Prev = audit.Hash{}
				if j > 0 {
					log[j].Prev = log[j-1].Hash
				}
				log[j].Hash = log[j].Compute()
			}
			return log, label
		}},
		mutation{name: "swap two rows", apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			i, j := twoRows(r, len(log))
			log[i], log[j] = log[j], log[i]
			return log, ""
		}},
		mutation{name: "swap two rows' seqs", apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			i, j := twoRows(r, len(log))
			log[i].Seq, log[j].Seq = log[j].Seq, log[i].Seq
			return log, ""
		}},
		// A forged row at the end with a valid link is an append, which is
		// how the log legitimately grows: that is TestCheckpointCatches's
		// "grown log passes". Forged rows here go before an existing row.
		mutation{name: "insert a forged row with its own hash computed", slack: 1, apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			i, label := position(r, len(log))
			return slices.Insert(log, i, forged(r, log, i)), label
		}},
		mutation{name: "insert a forged row with a copied hash", apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			i := r.IntN(len(log) + 1) // the end too: the hash does not match
			f := forged(r, log, i)
			f.Hash = pick(r, log).Hash
			return slices.Insert(log, i, f), ""
		}},
		mutation{name: "duplicate a row", apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			i, label := position(r, len(log))
			return slices.Insert(log, r.IntN(len(log)+1), log[i]), label
		}},
		mutation{name: "delete the last rows", apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			k := 1 + r.IntN(len(log))
			return log[:len(log)-k], ""
		}},
		mutation{name: "rebuild the chain after an edit, insertion or deletion", rebuilt: true, apply: func(r *rand.Rand, log []audit.Entry) ([]audit.Entry, string) {
			i, label := position(r, len(log))
			switch r.IntN(3) {
			case 0: // whole microseconds only: Next would round anything finer away
				if c := pick(r, []string{"at", "kind", "actor", "subject", "detail"}); c == "at" {
					log[i].At = log[i].At.Add(time.Duration(1+r.IntN(1e6)) * time.Microsecond)
				} else {
					editColumn(r, &log[i], c, log)
				}
			case 1:
				log = slices.Insert(log, i, forged(r, log, i))
			case 2:
				log = slices.Delete(log, i, i+1)
			}
			rebuild(log, i)
			return log, label
		}},
	)
}()

func twoRows(r *rand.Rand, n int) (int, int) {
	i, j := r.IntN(n), r.IntN(n-1)
	if j >= i {
		j++
	}
	return min(i, j), max(i, j)
}

// TestTamperIsDetected plays an attacker with write access to audit_log
// 1,000 times, in every way listed in mutations, against a log whose head a
// supervisor holds as a checkpoint. Every change must be detected, and the
// reported seq must be where the change is, not before it (the prefix is
// intact) and not after it (except where a forged row is itself valid).
func TestTamperIsDetected(t *testing.T) {
	const n, cases = 40, 1000
	orig := buildLog(1, n)
	cp := audit.Checkpoint{Origin: "fieldsync.example", Seq: n, Hash: orig[n-1].Hash, At: orig[n-1].At}
	if _, _, err := audit.Verify(orig, cp); err != nil {
		t.Fatalf("the untouched log does not verify: %v", err)
	}

	r := rand.New(rand.NewPCG(2026, 3))
	ran := map[string]int{}
	for c := range cases {
		m := pick(r, mutations)
		log := slices.Clone(orig)
		log, label := m.apply(r, log)
		ran[m.name]++
		if label != "" {
			ran[m.name+" ("+label+")"]++
		}

		first := firstChange(orig, log)
		if first == len(orig) && len(log) == len(orig) {
			t.Fatalf("case %d, %s: the mutation changed nothing", c, m.name)
		}
		lo, hi := int64(first+1), int64(first+1+m.slack)
		if m.rebuilt {
			lo, hi = cp.Seq, cp.Seq
		}

		_, _, err := audit.Verify(log, cp)
		var mm *audit.Mismatch
		if !errors.As(err, &mm) {
			t.Errorf("case %d, %s (%s), first change at entry %d: not detected (err = %v)", c, m.name, label, first+1, err)
			continue
		}
		if mm.Seq < lo || mm.Seq > hi {
			t.Errorf("case %d, %s (%s): reported %v; want a seq in [%d, %d]", c, m.name, label, mm, lo, hi)
		}
		if m.rebuilt {
			if _, _, err := audit.Verify(log); err != nil {
				t.Errorf("case %d, %s: a rebuilt chain should verify without a checkpoint, got %v", c, m.name, err)
			}
		}
	}

	want := []string{"delete a row (first)", "delete a row (last)"}
	for _, m := range mutations {
		want = append(want, m.name)
	}
	for _, name := range want {
		if ran[name] == 0 {
			t.Errorf("mutation %q never ran in %d cases", name, cases)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(ran)) {
		t.Logf("%4d  %s", ran[name], name)
	}
}

// alias returns a time 125 * 2^64 ns (about 73,000 years) after t: a
// whole number of microseconds, and a multiple of 2^64 ns, so its Unix
// nanoseconds wrap to t's and it hashes alike.
func alias(t time.Time) time.Time {
	for range 125 {
		t = t.Add(math.MaxInt64).Add(math.MaxInt64).Add(2) // 2^64 ns
	}
	return t
}

func TestVerifierRefusesMalformedAt(t *testing.T) {
	log := buildLog(3, 3)
	e := log[1]
	e.At = alias(e.At)
	if e.Compute() != log[1].Compute() {
		t.Fatalf("an At 125 * 2^64 ns later no longer hashes alike; alias needs a new example of the hazard")
	}
	tests := []struct {
		name string
		at   time.Time
	}{
		{"sub-microsecond", log[1].At.Add(time.Nanosecond)},
		{"outside the hashable range", alias(log[1].At)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := slices.Clone(log)
			bad[1].At = tt.at
			bad[1].Hash = bad[1].Compute()
			rebuild(bad, 2)
			var mm *audit.Mismatch
			if _, _, err := audit.Verify(bad); !errors.As(err, &mm) || mm.Seq != 2 {
				t.Fatalf("Verify = %v, want a mismatch at entry 2", err)
			}
		})
	}
}

func TestVerifierFirstFailureSticks(t *testing.T) {
	log := buildLog(4, 5)
	var v audit.Verifier
	for _, e := range log[:2] {
		if err := v.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	err := v.Add(log[3]) // entry 3 is missing
	var mm *audit.Mismatch
	if !errors.As(err, &mm) || mm.Seq != 3 {
		t.Fatalf("Add(entry 4) after entry 2 = %v, want a mismatch at entry 3", err)
	}
	if again := v.Add(log[2]); again != err {
		t.Errorf("Add after a failure = %v, want the first failure %v", again, err)
	}
	if seq, h := v.Head(); seq != 2 || h != log[1].Hash {
		t.Errorf("Head() = %d %s, want the last verified entry, 2 %s", seq, h, log[1].Hash)
	}
	cp := audit.Checkpoint{Origin: "o", Seq: 2, Hash: log[1].Hash}
	if got := v.Check(cp); got != err {
		t.Errorf("Check after a failure = %v, want the first failure %v", got, err)
	}
}

func TestVerifyEmptyLog(t *testing.T) {
	seq, h, err := audit.Verify(nil)
	if seq != 0 || h != (audit.Hash{}) || err != nil {
		t.Errorf("Verify(nil) = %d %s %v, want 0, the zero hash, nil", seq, h, err)
	}
	var v audit.Verifier
	if seq, h := v.Head(); seq != 0 || h != (audit.Hash{}) {
		t.Errorf("zero Verifier's Head() = %d %s", seq, h)
	}
}
