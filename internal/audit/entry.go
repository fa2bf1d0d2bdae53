package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"time"
)

// domainTag starts every hashed encoding, so an entry hash can never be
// mistaken for a hash of anything else, nor for a later version's.
const domainTag = "fieldsync-audit-v1"

// Entry is one row of the audit log: an event, who did it, what it was
// about, and the chain links.
type Entry struct {
	Seq     int64     // 1 for the first entry, then one more than the previous
	At      time.Time // when the event happened; hashed at microsecond precision
	Kind    string    // the kind of event, such as a push or a revocation
	Actor   string    // who caused it: a user or device id
	Subject string    // what it concerns: a record, conflict, device or key
	Detail  []byte    // canonical JSON, stored as text and hashed byte for byte
	Prev    Hash      // the previous entry's Hash; zero for the first entry
	Hash    Hash      // Compute of this entry
}

// The range of At that Compute can hash: Unix nanoseconds must fit in an
// int64 (the years 1678 to 2262). Outside it UnixNano wraps, and two times
// 2^64 ns apart would hash alike, so the Verifier rejects such entries.
var (
	minAt = time.Unix(0, math.MinInt64)
	maxAt = time.Unix(0, math.MaxInt64)
)

// Compute returns the hash of e: SHA-256 over a sequence of fields, each
// written as its length in bytes (8-byte big-endian) followed by its bytes:
//
//	"fieldsync-audit-v1", Seq, At, Kind, Actor, Subject, Detail, Prev
//
// Seq is 8 bytes big-endian; At is e.At truncated to whole microseconds,
// as UTC Unix nanoseconds, 8 bytes big-endian two's complement; Prev is its
// 32 bytes. The length prefixes keep bytes from moving between fields
// unnoticed. e.Hash is not hashed. At must lie within the years 1678 to
// 2262; the Verifier rejects entries outside that range.
//
// Because At is truncated here, the store must keep at least microsecond
// precision (PostgreSQL's timestamptz keeps exactly that), and an entry
// hashes the same before and after a round trip through the database.
func (e Entry) Compute() Hash {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	int64Field := func(v int64) {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(v))
		field(b[:])
	}
	field([]byte(domainTag))
	int64Field(e.Seq)
	int64Field(truncateAt(e.At).UnixNano())
	field([]byte(e.Kind))
	field([]byte(e.Actor))
	field([]byte(e.Subject))
	field(e.Detail)
	field(e.Prev[:])
	return Hash(h.Sum(nil))
}

// truncateAt drops what the store cannot keep below a microsecond, and the
// monotonic clock reading.
func truncateAt(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// Next returns the entry that follows prev, or the first entry when prev
// is nil: Seq is one more than prev's, Prev is prev's Hash, At is at
// truncated to microseconds (in UTC), and Hash is computed. Detail is kept,
// not copied; the caller must not change it afterwards.
func Next(prev *Entry, at time.Time, kind, actor, subject string, detail []byte) Entry {
	e := Entry{
		Seq:     1,
		At:      truncateAt(at).UTC(),
		Kind:    kind,
		Actor:   actor,
		Subject: subject,
		Detail:  detail,
	}
	if prev != nil {
		e.Seq = prev.Seq + 1
		e.Prev = prev.Hash
	}
	e.Hash = e.Compute()
	return e
}
