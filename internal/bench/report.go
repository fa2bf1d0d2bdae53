package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// Report is the result of one Run; -json prints it as is.
type Report struct {
	Dialect     string `json:"dialect"`
	Servers     int    `json:"servers"`
	External    bool   `json:"external"` // a server this run did not start: no RSS or CPU figures
	Devices     int    `json:"devices"`
	Batch       int    `json:"batch"`
	PushBatches int    `json:"push_batches"`
	Records     int    `json:"records"`
	Page        int    `json:"page"`
	Shared      int    `json:"shared"`

	PushNew   Rate `json:"push_new"`   // records/s, new patrol logs
	PushEdit  Rate `json:"push_edit"`  // records/s, concurrent edits (push halves of the rounds)
	Pull      Rate `json:"pull"`       // records/s, initial sync with gzip
	PullPlain Rate `json:"pull_plain"` // the same without gzip

	RawUpsertNew  Rate `json:"raw_upsert_new"`
	RawUpsertEdit Rate `json:"raw_upsert_edit"`
	RawRead       Rate `json:"raw_read"`

	PulledRecords       int     `json:"pulled_records"`
	BytesPerRecordGzip  float64 `json:"bytes_per_record_gzip"`  // response bodies on the wire
	BytesPerRecordPlain float64 `json:"bytes_per_record_plain"` // the same without gzip
	StateBytesNew       int     `json:"state_bytes_new"`        // a stored new record's state
	StateBytesEdit      int     `json:"state_bytes_edit"`       // a stored edited record's state

	Outcomes         map[string]int     `json:"edit_outcomes"` // push results of the edits
	Latency          map[string]Latency `json:"latency"`       // by request type
	PeakRSSPushBytes int64              `json:"peak_rss_push_bytes"`
	PeakRSSPullBytes int64              `json:"peak_rss_pull_bytes"`
	// Sampled every 50 ms: the anonymous (allocated) and file-backed
	// (mapped files) parts of the resident set; VmHWM counts both.
	PeakAnonPushBytes int64   `json:"peak_rss_anon_push_bytes"`
	PeakFilePushBytes int64   `json:"peak_rss_file_push_bytes"`
	PeakAnonPullBytes int64   `json:"peak_rss_anon_pull_bytes"`
	Phases            []Phase `json:"phases"`
	Seconds           float64 `json:"seconds"`

	Figures []Figure `json:"figures"`
}

// Rate is records over time.
type Rate struct {
	Records   int     `json:"records"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
}

// Phase is one step of a run: its wall time, the CPU time the servers and
// the benchmark process used in it, and the share of the machine's CPU
// that was busy (all processes: servers, database, benchmark, others).
type Phase struct {
	Name             string  `json:"name"`
	Seconds          float64 `json:"seconds"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	BenchCPUSeconds  float64 `json:"bench_cpu_seconds"`
	DBCPUSeconds     float64 `json:"db_cpu_seconds"` // PostgreSQL backends of this database; 0 for SQLite (in the server)
	MachineBusy      float64 `json:"machine_busy"`
}

// Figure is one row of the report's table: a fieldsync figure, the raw
// limit it is measured against (0: none), their ratio, and its target.
type Figure struct {
	Name   string  `json:"name"`
	Unit   string  `json:"unit"`
	Value  float64 `json:"value"`
	Raw    float64 `json:"raw,omitempty"`
	Ratio  float64 `json:"ratio,omitempty"`
	Target string  `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"`
}

// Targets of the performance issue.
const (
	TargetPushRatio = 0.60      // push ≥ 60 % of the raw upsert
	TargetPullRatio = 0.50      // pull ≥ 50 % of the raw read
	TargetPullTime  = 5.0       // seconds per 100,000 records of initial sync
	TargetPushRSS   = 100 << 20 // bytes: the server's peak RSS while pushing
	TargetLoadP99   = 1000.0    // milliseconds: the load test's p99 latency
)

const mib = float64(1 << 20)

func (r *Report) figures() {
	ratio := func(name string, v, raw Rate, target float64) Figure {
		f := Figure{Name: name, Unit: "records/s", Value: v.PerSecond, Raw: raw.PerSecond}
		if raw.PerSecond > 0 {
			f.Ratio = v.PerSecond / raw.PerSecond
		}
		f.Target = fmt.Sprintf("≥ %.0f %% of raw", 100*target)
		met := f.Ratio >= target
		f.Met = &met
		return f
	}
	r.Figures = []Figure{
		ratio("push, new records", r.PushNew, r.RawUpsertNew, TargetPushRatio),
		ratio("push, concurrent edits", r.PushEdit, r.RawUpsertEdit, TargetPushRatio),
		ratio("pull, initial sync (gzip)", r.Pull, r.RawRead, TargetPullRatio),
		{Name: "pull, initial sync (no gzip)", Unit: "records/s", Value: r.PullPlain.PerSecond, Raw: r.RawRead.PerSecond, Ratio: r.PullPlain.PerSecond / max(r.RawRead.PerSecond, 1e-9)},
	}
	limit := TargetPullTime * float64(max(r.PulledRecords, 1)) / 100_000
	met := r.Pull.Seconds < limit
	r.Figures = append(r.Figures,
		Figure{Name: "pull, initial sync wall time", Unit: "s", Value: r.Pull.Seconds, Raw: r.RawRead.Seconds,
			Target: fmt.Sprintf("< %.3g s (5 s per 100,000 records)", limit), Met: &met},
		Figure{Name: "pull, bytes per record (gzip)", Unit: "B", Value: r.BytesPerRecordGzip},
		Figure{Name: "pull, bytes per record (no gzip)", Unit: "B", Value: r.BytesPerRecordPlain},
	)
	if !r.External {
		met := r.PeakRSSPushBytes < TargetPushRSS
		r.Figures = append(r.Figures,
			Figure{Name: "server peak RSS, pushes", Unit: "MiB", Value: float64(r.PeakRSSPushBytes) / mib, Target: "< 100 MiB", Met: &met},
			Figure{Name: "server peak RSS, pushes: anonymous", Unit: "MiB", Value: float64(r.PeakAnonPushBytes) / mib},
			Figure{Name: "server peak RSS, pushes: mapped files", Unit: "MiB", Value: float64(r.PeakFilePushBytes) / mib},
			Figure{Name: "server peak RSS, initial sync", Unit: "MiB", Value: float64(r.PeakRSSPullBytes) / mib},
		)
	}
}

// Print writes the report as tables for people.
func (r *Report) Print(w io.Writer) {
	servers := "server process"
	if r.Servers > 1 {
		servers += "es"
	}
	where := fmt.Sprintf("%d %s", r.Servers, servers)
	if r.External {
		where = "an external server"
	}
	fmt.Fprintf(w, "fieldsync bench: %s, %s; %d devices × %d pushes of %d changes per workload; initial sync of %d records in pages of %d\n\n",
		r.Dialect, where, r.Devices, r.PushBatches, r.Batch, r.PulledRecords, r.Page)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-38s\tfieldsync\traw limit\tratio\ttarget\t\t\n", "figure")
	for _, f := range r.Figures {
		raw, ratio := "", ""
		if f.Raw > 0 {
			raw = num(f.Raw, f.Unit)
		}
		if f.Ratio > 0 {
			ratio = fmt.Sprintf("%.0f %%", 100*f.Ratio)
		}
		verdict := ""
		if f.Met != nil {
			verdict = "not met"
			if *f.Met {
				verdict = "met"
			}
		}
		fmt.Fprintf(tw, "%-38s\t%s\t%s\t%s\t%s\t%s\t\n", f.Name, num(f.Value, f.Unit), raw, ratio, f.Target, verdict)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-12s\tcount\tp50\tp99\tmax\t\n", "request")
	kinds := make([]string, 0, len(r.Latency))
	for k := range r.Latency {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		l := r.Latency[k]
		fmt.Fprintf(tw, "%-12s\t%d\t%.1f ms\t%.1f ms\t%.1f ms\t\n", k, l.Count, l.P50Ms, l.P99Ms, l.MaxMs)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-18s\twall\tserver CPU\tdatabase CPU\tbench CPU\tmachine busy\t\n", "phase")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "%-18s\t%.2f s\t%.2f s\t%.2f s\t%.2f s\t%.0f %%\t\n", p.Name, p.Seconds, p.ServerCPUSeconds, p.DBCPUSeconds, p.BenchCPUSeconds, 100*p.MachineBusy)
	}
	tw.Flush()
	var out []string
	for _, k := range []string{"applied", "merged"} {
		out = append(out, fmt.Sprintf("%s %d", k, r.Outcomes[k]))
	}
	fmt.Fprintf(w, "\nedits: %s; stored state %d B new, %d B after edits; %.1f s in all\n",
		strings.Join(out, ", "), r.StateBytesNew, r.StateBytesEdit, r.Seconds)
}

// num formats v in unit with thousands separators where they help.
func num(v float64, unit string) string {
	switch unit {
	case "records/s":
		return group(int64(v + 0.5))
	case "s":
		return fmt.Sprintf("%.2f s", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case "B":
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%g %s", v, unit)
}

func group(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
