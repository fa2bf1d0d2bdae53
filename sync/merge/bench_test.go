package merge_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/fieldsync/fieldsync/sync/hlc"
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// benchLog builds a patrol log with 20 written fields whose vector holds
// nodes writers, each of which has edited it. It returns the record and the
// vector a device had before the last writer's edit (to build a concurrent
// change).
func benchLog(b *testing.B, nodes int) (*merge.Record, vv.Vector) {
	b.Helper()
	p := merge.PatrolLogs()
	fields := []merge.FieldValue{}
	for _, f := range p.Fields {
		if f.ServerOnly || len(fields) == 20 {
			continue
		}
		var v string
		switch f.Type {
		case merge.Enum:
			v = strconv.Quote(f.Enum[1])
		case merge.Time:
			v = `"2026-11-28T05:00:00Z"`
		case merge.Int:
			v = "4"
		case merge.Geo:
			v = `{"lat":18.54,"lon":-72.34}`
		default:
			v = `"KEN-3 route RN1 north"`
		}
		fields = append(fields, merge.FieldValue{Name: f.Name, Value: []byte(v)})
	}
	if len(fields) != 20 {
		b.Fatalf("patrol_logs has %d device-writable fields, want 20", len(fields))
	}
	merge.SortFields(fields)
	ch := &merge.Change{ChangeID: "c0", Collection: "patrol_logs", ID: "log-1",
		VV: vv.MustFromMap(map[vv.NodeID]uint64{"dev-00": 1}), HLC: hlc.Timestamp{Wall: 1764300000000, Node: "dev-00"}, Fields: fields}
	res := p.Apply(nil, ch, nil, merge.Options{})
	rec := res.Record
	var before vv.Vector
	for i := 1; i < nodes; i++ {
		node := vv.NodeID(fmt.Sprintf("dev-%02d", i))
		before = rec.VV
		ch := &merge.Change{ChangeID: fmt.Sprintf("c%d", i), Collection: "patrol_logs", ID: "log-1",
			VV: rec.VV.Increment(node), HLC: hlc.Timestamp{Wall: 1764300000000 + int64(i), Node: node},
			Fields: []merge.FieldValue{{Name: "notes", Value: []byte(`"edit ` + strconv.Itoa(i) + `"`)}}}
		res := p.Apply(rec, ch, nil, merge.Options{})
		if res.Outcome != merge.Applied {
			b.Fatalf("setup edit %d: %s %s", i, res.Outcome, res.Message)
		}
		rec = res.Record
	}
	return rec, before
}

// editOf is a typical field edit: three fields of the log.
func editOf(node vv.NodeID, v vv.Vector) *merge.Change {
	return &merge.Change{ChangeID: "bench", Collection: "patrol_logs", ID: "log-1", VV: v,
		HLC: hlc.Timestamp{Wall: 1764300100000, Node: node},
		Fields: []merge.FieldValue{
			{Name: "notes", Value: []byte(`"checkpoint Delmas 33 passed, road clear"`)},
			{Name: "route", Value: []byte(`"RN1 north via Kafou"`)},
			{Name: "status", Value: []byte(`"completed"`)},
		}}
}

func BenchmarkApply(b *testing.B) {
	p := merge.PatrolLogs()
	for _, nodes := range []int{3, 50} {
		rec, before := benchLog(b, nodes)
		b.Run(fmt.Sprintf("nodes=%d/fast-forward", nodes), func(b *testing.B) {
			ch := editOf("dev-00", rec.VV.Increment("dev-00"))
			b.ReportAllocs()
			for b.Loop() {
				if res := p.Apply(rec, ch, nil, merge.Options{}); res.Outcome != merge.Applied {
					b.Fatal(res.Outcome, res.Message)
				}
			}
		})
		b.Run(fmt.Sprintf("nodes=%d/concurrent", nodes), func(b *testing.B) {
			// The device had not seen the last writer's note: notes
			// conflict, the other fields merge.
			ch := editOf("dev-00", before.Increment("dev-00"))
			b.ReportAllocs()
			for b.Loop() {
				if res := p.Apply(rec, ch, nil, merge.Options{}); res.Outcome != merge.Merged || len(res.Conflicts) != 1 {
					b.Fatal(res.Outcome, res.Message, len(res.Conflicts))
				}
			}
		})
	}
}

func BenchmarkRecordJSON(b *testing.B) {
	rec, _ := benchLog(b, 3)
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = rec.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}
