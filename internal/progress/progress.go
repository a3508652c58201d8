// Package progress reports the progress of long tasks over events (a
// rebuild, a generated data set): a bar on a terminal, plain lines in a log.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// plainEvery is how often plain progress prints a line at least, besides
// every tenth of the total.
const plainEvery = 2 * time.Second

// New returns a progress callback for a long task over events (a
// rebuild), of the shape projections.Rebuild takes, and a finish function
// to call once when the task has ended.
//
// On a terminal it draws a progress bar labelled label. Otherwise (a log
// file, a container's output) it prints plain lines, at most one per tenth
// of the total and at least one every 2 s while progress is reported:
//
//	rebuild access_history: 120000/1000000 events (12%), 150000 ev/s
//
// and finish prints the final count, time taken and rate. The callback
// and finish may be called from any goroutine.
func New(w io.Writer, isTerminal bool, label string) (func(done, total uint64), func()) {
	return newClock(w, isTerminal, label, time.Now)
}

func newClock(w io.Writer, isTerminal bool, label string, now func() time.Time) (func(done, total uint64), func()) {
	p := &progress{w: w, label: label, now: now, start: now(), terminal: isTerminal}
	p.lastLine = p.start
	return p.report, p.finish
}

type progress struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	now      func() time.Time
	terminal bool
	bar      *progressbar.ProgressBar

	start     time.Time
	done      uint64
	total     uint64
	reported  bool
	finished  bool
	lastLine  time.Time
	lastTenth uint64
}

func (p *progress) report(done, total uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.done, p.total, p.reported = done, max(total, done), true
	if p.terminal {
		if p.total == 0 {
			return
		}
		if p.bar == nil {
			p.bar = progressbar.NewOptions64(int64(p.total),
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(p.label),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("ev"),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionFullWidth(),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
			)
		} else if int64(p.total) != p.bar.GetMax64() {
			p.bar.ChangeMax64(int64(p.total))
		}
		_ = p.bar.Set64(int64(p.done))
		return
	}
	t := p.now()
	tenth := uint64(0)
	if p.total > 0 {
		tenth = p.done * 10 / p.total
	}
	if tenth > p.lastTenth || (done > 0 && t.Sub(p.lastLine) >= plainEvery) {
		p.lastTenth = tenth
		p.lastLine = t
		fmt.Fprintf(p.w, "%s: %d/%d events (%d%%), %s\n", p.label, p.done, p.total, percent(p.done, p.total), rate(p.done, t.Sub(p.start)))
	}
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.finished = true
	if p.bar != nil {
		if p.done == p.total {
			_ = p.bar.Finish()
		} else {
			_ = p.bar.Exit()
		}
		return
	}
	if !p.reported {
		return
	}
	took := p.now().Sub(p.start)
	fmt.Fprintf(p.w, "%s: %d/%d events (%d%%) in %s, %s\n", p.label, p.done, p.total, percent(p.done, p.total),
		took.Round(100*time.Millisecond), rate(p.done, took))
}

func percent(done, total uint64) uint64 {
	if total == 0 {
		return 100
	}
	return done * 100 / total
}

func rate(done uint64, d time.Duration) string {
	if d <= 0 {
		return "- ev/s"
	}
	return fmt.Sprintf("%.0f ev/s", float64(done)/d.Seconds())
}

// IsTerminal reports whether w is a terminal (for a progress bar).
func IsTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
