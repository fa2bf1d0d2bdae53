package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// resetPeak sets the kernel's peak-RSS mark (VmHWM) of each process back to
// its current RSS ("5" to /proc/<pid>/clear_refs, Linux 4.0 and later), so
// the next peakRSS covers one phase only. Where that is refused the mark
// keeps counting from the process's start: an upper bound of the phase's
// peak, never an underestimate.
func resetPeak(pids []int) {
	for _, pid := range pids {
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	}
}

// peakRSS returns the largest VmHWM (peak resident set) among the
// processes, in bytes; 0 when none can be read.
func peakRSS(pids []int) int64 {
	var peak int64
	for _, pid := range pids {
		if v, err := procStatus(pid, "VmHWM"); err == nil {
			peak = max(peak, v)
		}
	}
	return peak
}

// procStatus reads one kB field of /proc/<pid>/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s of process %d: %w", field, pid, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// cpuTime returns the user plus system CPU time the processes have used
// (fields 14 and 15 of /proc/<pid>/stat, in clock ticks of 1/100 s on
// Linux); processes that cannot be read count nothing.
func cpuTime(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name (field 2) may hold spaces; the fields after it
		// start past its closing parenthesis.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}

// machineCPU returns the machine's busy and total CPU time so far, in
// clock ticks, from the first line of /proc/stat (busy is everything but
// idle and iowait); zeros when it cannot be read.
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, s := range f[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		v, _ := strconv.ParseInt(s, 10, 64)
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total
}

// memWatch samples the resident memory of processes while a phase runs,
// split as the kernel splits it: anonymous (heap, stacks: what the process
// allocated) and file-backed (mapped files, such as an SQLite database
// read through mmap, which the kernel may drop at any time). VmHWM counts
// both.
type memWatch struct {
	stop       chan struct{}
	done       chan struct{}
	anon, file int64
}

func watchMem(pids []int) *memWatch {
	w := &memWatch{stop: make(chan struct{}), done: make(chan struct{})}
	if len(pids) == 0 {
		close(w.done)
		return w
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			for _, pid := range pids {
				if v, err := procStatus(pid, "RssAnon"); err == nil {
					w.anon = max(w.anon, v)
				}
				if v, err := procStatus(pid, "RssFile"); err == nil {
					w.file = max(w.file, v)
				}
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// end stops the sampling and returns the largest anonymous and file-backed
// resident sizes seen in any one process, in bytes.
func (w *memWatch) end() (anon, file int64) {
	select {
	case <-w.done:
	default:
		close(w.stop)
		<-w.done
	}
	return w.anon, w.file
}
