package main

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/convcov/convcov-onnx/onnxio"
)

// progressDelay is how long work runs before its progress bar appears: work that ends
// sooner gets none, so quick commands print nothing extra.
const progressDelay = time.Second

// progressWidth is the width of a progress line, bar and text, in columns.
const progressWidth = 79

// wantProgress decides whether a command draws progress bars on w: only when w is a
// terminal, and never with --quiet or --json. isTerminal tells whether a file descriptor is
// a terminal.
func wantProgress(w io.Writer, quiet, jsonOut bool, isTerminal func(fd uintptr) bool) bool {
	if quiet || jsonOut {
		return false
	}
	f, ok := w.(interface{ Fd() uintptr })
	return ok && isTerminal(f.Fd())
}

// isTerminal reports whether fd is a terminal (a character device that answers terminal
// requests; /dev/null is a character device, but not a terminal).
func isTerminal(fd uintptr) bool { return term.IsTerminal(int(fd)) }

// progressBar draws one line on a terminal, redrawn in place with a carriage return and no
// other control sequences. A nil *progressBar draws nothing.
type progressBar struct {
	w        io.Writer
	label    string
	bytes    bool // show done and total as sizes, not counts
	delay    time.Duration
	now      func() time.Time
	start    time.Time
	last     time.Time
	drawn    int // columns of the line on screen
	lastFrac float64
}

// newProgress returns a progress bar for e's stderr, or nil when on is false.
func (e *env) newProgress(on bool, label string, bytes bool) *progressBar {
	if !on {
		return nil
	}
	now := e.now
	if now == nil {
		now = time.Now
	}
	return &progressBar{w: e.stderr, label: label, bytes: bytes, delay: e.progressDelay, now: now,
		start: now()}
}

// update shows that done of total is done; note says what is being worked on.
func (p *progressBar) update(done, total int64, note string) {
	if p == nil {
		return
	}
	t := p.now()
	frac := 1.0
	if total > 0 {
		frac = min(1, max(0, float64(done)/float64(total)))
	}
	// Nothing in the first moments, and no more than ten redraws a second, but always the
	// end of the work once a bar is shown.
	if t.Sub(p.start) < p.delay || (t.Sub(p.last) < 100*time.Millisecond && !(frac == 1 && p.lastFrac < 1)) {
		return
	}
	p.last, p.lastFrac = t, frac

	const barWidth = 24
	full := int(frac * barWidth)
	count := fmt.Sprintf("%d/%d", done, total)
	if p.bytes {
		count = sizeString(done) + "/" + sizeString(total)
	}
	bar := strings.Repeat("#", full) + strings.Repeat("-", barWidth-full)
	line := fmt.Sprintf("%s [%s] %3.0f%% %s", p.label, bar, 100*frac, count)
	if note != "" {
		if room := progressWidth - utf8.RuneCountInString(line) - 2; room >= 8 {
			line += "  " + shortenMiddle(note, room)
		}
	}
	n := utf8.RuneCountInString(line)
	pad := ""
	if p.drawn > n {
		pad = strings.Repeat(" ", p.drawn-n)
	}
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
	p.drawn = n
}

// finish blanks the bar's line, so that what follows starts on a clean one.
func (p *progressBar) finish() {
	if p == nil || p.drawn == 0 {
		return
	}
	fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.drawn))
	p.drawn = 0
}

// sizeString writes a byte count in B, KB, MB or GB (powers of 1000, one decimal above B).
func sizeString(n int64) string {
	const k = 1000
	switch {
	case n < k:
		return fmt.Sprintf("%d B", n)
	case n < k*k:
		return fmt.Sprintf("%.1f KB", float64(n)/k)
	case n < k*k*k:
		return fmt.Sprintf("%.1f MB", float64(n)/(k*k))
	}
	return fmt.Sprintf("%.1f GB", float64(n)/(k*k*k))
}

// shortenMiddle cuts runes from the middle of s, leaving "…" in their place, to at most n
// runes.
func shortenMiddle(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	head := (n - 1) / 2
	return string(r[:head]) + "…" + string(r[len(r)-(n-1-head):])
}

// saveModel saves m to path, with a progress bar of the bytes written when on.
func (e *env) saveModel(m *onnxio.Model, path string, on bool) error {
	bar := e.newProgress(on, "writing", true)
	if bar == nil {
		return m.Save(path)
	}
	defer bar.finish()
	report := func(written, total int64) { bar.update(written, total, path) }
	return m.SaveWith(path, onnxio.SaveOptions{Progress: report})
}
