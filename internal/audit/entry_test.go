package audit_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/audit"
	"pgregory.net/rapid"
)

// fixedEntry is the entry whose hash is pinned by TestComputeGolden.
func fixedEntry() audit.Entry {
	prev, _ := audit.ParseHash(strings.Repeat("ab", 32))
	return audit.Entry{
		Seq:     7,
		At:      time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC),
		Kind:    "resolve",
		Actor:   "user:ana",
		Subject: "conflict:tasks/42",
		Detail:  []byte(`{"policy":"manual","winner":"device:7f3a"}`),
		Prev:    prev,
	}
}

// goldenHash was computed once from fixedEntry (and checked against an
// independent implementation of the encoding documented on Compute). If this test fails, the
// encoding changed and every stored log stops verifying: bump the domain
// tag to a new version instead.
const goldenHash = "21bcb0688e1d52d8fa1db79a2d9088291aa51010520fe353a65bb17734a9ff2c"

func TestComputeGolden(t *testing.T) {
	got := fixedEntry().Compute()
	if got.String() != goldenHash {
		t.Fatalf("Compute() = %s, want %s", got, goldenHash)
	}
	if again := fixedEntry().Compute(); again != got {
		t.Fatalf("Compute is not deterministic: %s, then %s", got, again)
	}
}

func TestComputeIgnoresHashZoneAndSubMicroseconds(t *testing.T) {
	want := fixedEntry().Compute()
	tests := []struct {
		name string
		edit func(*audit.Entry)
	}{
		{"own hash is not hashed", func(e *audit.Entry) { e.Hash = want }},
		{"same instant in another zone hashes alike", func(e *audit.Entry) { e.At = e.At.In(time.FixedZone("UTC+2", 2*3600)) }},
		{"nanoseconds below a microsecond are truncated", func(e *audit.Entry) { e.At = e.At.Add(999 * time.Nanosecond) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := fixedEntry()
			tt.edit(&e)
			if got := e.Compute(); got != want {
				t.Fatalf("Compute() = %s, want %s", got, want)
			}
		})
	}
}

func TestComputeChangesWithEveryField(t *testing.T) {
	base := fixedEntry().Compute()
	tests := []struct {
		name string
		edit func(*audit.Entry)
	}{
		{"seq", func(e *audit.Entry) { e.Seq++ }},
		{"at by one microsecond", func(e *audit.Entry) { e.At = e.At.Add(time.Microsecond) }},
		{"kind", func(e *audit.Entry) { e.Kind = "signoff" }},
		{"actor", func(e *audit.Entry) { e.Actor = "user:bo" }},
		{"subject", func(e *audit.Entry) { e.Subject = "conflict:tasks/43" }},
		{"detail by one space", func(e *audit.Entry) { e.Detail = append([]byte(" "), e.Detail...) }},
		{"prev by one bit", func(e *audit.Entry) { e.Prev[31] ^= 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := fixedEntry()
			tt.edit(&e)
			if e.Compute() == base {
				t.Fatalf("changing %s left the hash unchanged", tt.name)
			}
		})
	}
}

func TestLengthPrefixesKeepFieldsApart(t *testing.T) {
	tests := []struct {
		name string
		a, b func(*audit.Entry)
	}{
		{"a byte moved from kind to actor", func(e *audit.Entry) { e.Kind, e.Actor = "push", "user:ana" }, func(e *audit.Entry) { e.Kind, e.Actor = "pus", "huser:ana" }},
		{"all of kind moved into actor", func(e *audit.Entry) { e.Kind, e.Actor = "push", "" }, func(e *audit.Entry) { e.Kind, e.Actor = "", "push" }},
		{"a byte moved from subject to detail", func(e *audit.Entry) { e.Subject, e.Detail = "ab", []byte("c") }, func(e *audit.Entry) { e.Subject, e.Detail = "a", []byte("bc") }},
		{"a length-like prefix moved from actor to subject", func(e *audit.Entry) { e.Actor, e.Subject = "x\x00\x00\x00\x00\x00\x00\x00\x01", "y" }, func(e *audit.Entry) { e.Actor, e.Subject = "x", "\x00\x00\x00\x00\x00\x00\x00\x01y" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := fixedEntry(), fixedEntry()
			tt.a(&a)
			tt.b(&b)
			if a.Compute() == b.Compute() {
				t.Fatal("entries that differ only in where a field ends hash alike")
			}
		})
	}
}

// Moving the boundary between any two adjacent string fields changes the
// hash, whatever the bytes.
func TestLengthPrefixesProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.StringN(1, 40, -1).Draw(t, "joined")
		i := rapid.IntRange(0, len(s)).Draw(t, "split")
		j := rapid.IntRange(0, len(s)).Filter(func(j int) bool { return j != i }).Draw(t, "other split")
		field := rapid.IntRange(0, 2).Draw(t, "boundary")
		split := func(at int) audit.Entry {
			e := fixedEntry()
			switch field {
			case 0:
				e.Kind, e.Actor = s[:at], s[at:]
			case 1:
				e.Actor, e.Subject = s[:at], s[at:]
			case 2:
				e.Subject, e.Detail = s[:at], []byte(s[at:])
			}
			return e
		}
		if split(i).Compute() == split(j).Compute() {
			t.Fatalf("splitting %q at %d and at %d hash alike", s, i, j)
		}
	})
}

func TestNext(t *testing.T) {
	at := time.Date(2025, 3, 14, 9, 26, 53, 589793123, time.FixedZone("UTC+2", 2*3600))
	first := audit.Next(nil, at, "enrol", "user:ana", "device:7f3a", []byte(`{}`))
	if first.Seq != 1 || first.Prev != (audit.Hash{}) {
		t.Errorf("first entry has seq %d and prev %s, want 1 and the zero hash", first.Seq, first.Prev)
	}
	if want := at.Truncate(time.Microsecond); !first.At.Equal(want) || first.At.Location() != time.UTC {
		t.Errorf("At = %s, want %s in UTC", first.At, want.UTC())
	}
	if first.Hash != first.Compute() {
		t.Errorf("Hash = %s, want Compute() = %s", first.Hash, first.Compute())
	}
	second := audit.Next(&first, at, "push", "device:7f3a", "record:tasks/42", []byte(`{"n":1}`))
	if second.Seq != 2 || second.Prev != first.Hash || second.Hash != second.Compute() {
		t.Errorf("second entry = %+v, want seq 2 linked to the first", second)
	}
}

func TestHashText(t *testing.T) {
	h := fixedEntry().Compute()
	got, err := audit.ParseHash(h.String())
	if err != nil || got != h {
		t.Fatalf("ParseHash(%q) = %s, %v; want %s", h.String(), got, err, h)
	}
	if s := (audit.Hash{}).String(); s != strings.Repeat("0", 64) {
		t.Errorf("zero hash = %q", s)
	}
	for _, bad := range []string{
		"",
		strings.Repeat("a", 63),
		strings.Repeat("a", 65),
		strings.Repeat("A", 64), // one text form per hash: lower case only
		strings.Repeat("g", 64),
		" " + strings.Repeat("a", 63),
	} {
		if _, err := audit.ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded, want an error", bad)
		}
	}
}

func FuzzParseHash(f *testing.F) {
	f.Add(strings.Repeat("0f", 32))
	f.Add(strings.Repeat("F0", 32))
	f.Add("xyz")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := audit.ParseHash(s)
		if err == nil && h.String() != s {
			t.Fatalf("ParseHash(%q) = %s, which prints differently", s, h)
		}
	})
}
