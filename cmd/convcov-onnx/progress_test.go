package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fdWriter is a writer with a file descriptor, as *os.File has.
type fdWriter struct {
	bytes.Buffer
	fd uintptr
}

func (w *fdWriter) Fd() uintptr { return w.fd }

// TestWantProgress checks the decision: a bar only on a terminal, and not with --quiet or
// --json.
func TestWantProgress(t *testing.T) {
	t.Parallel()
	const ttyFd = 42
	fakeTerminal := func(fd uintptr) bool { return fd == ttyFd }
	tests := []struct {
		name        string
		w           any
		quiet, json bool
		want        bool
	}{
		{"terminal", &fdWriter{fd: ttyFd}, false, false, true},
		{"terminal --quiet", &fdWriter{fd: ttyFd}, true, false, false},
		{"terminal --json", &fdWriter{fd: ttyFd}, false, true, false},
		{"file, not a terminal", &fdWriter{fd: 7}, false, false, false},
		{"a writer without a descriptor", &bytes.Buffer{}, false, false, false},
	}
	for _, tc := range tests {
		w := tc.w.(interface{ Write([]byte) (int, error) })
		if got := wantProgress(w, tc.quiet, tc.json, fakeTerminal); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}

	// Real files that are not terminals, with the real test.
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer pw.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, f := range []*os.File{devnull, pw, file} {
		if wantProgress(f, false, false, isTerminal) {
			t.Errorf("%s: got a progress bar, want none on a file that is not a terminal", f.Name())
		}
	}
}

// fakeClock is a clock that tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestProgressBar(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	var out bytes.Buffer
	e := &env{stderr: &out, progressDelay: time.Second, now: clock.now}
	bar := e.newProgress(true, "harvesting", false)

	// Nothing before the delay.
	bar.update(0, 4, "a.onnx")
	clock.t = clock.t.Add(900 * time.Millisecond)
	bar.update(1, 4, "b.onnx")
	if out.Len() != 0 {
		t.Fatalf("drew %q before the delay, want nothing", out.String())
	}

	// Then a line, redrawn in place.
	clock.t = clock.t.Add(200 * time.Millisecond)
	bar.update(2, 4, "zoo/a-model-with-a-name-far-too-long-to-fit-beside-the-bar-on-one-line-of-eighty-columns.onnx")
	first := out.String()
	if !strings.HasPrefix(first, "\rharvesting [") || !strings.Contains(first, " 50% 2/4") ||
		!strings.Contains(first, "…") {
		t.Errorf("got %q, want \\r, the label, a bar at 50%% 2/4 and the note shortened", first)
	}
	if n := len([]rune(first)) - 1; n > progressWidth {
		t.Errorf("the line is %d columns, want at most %d", n, progressWidth)
	}
	// Redraws are at most ten a second, except the last.
	clock.t = clock.t.Add(10 * time.Millisecond)
	bar.update(3, 4, "c.onnx")
	if out.String() != first {
		t.Errorf("redrew after 10 ms: %q", strings.TrimPrefix(out.String(), first))
	}
	clock.t = clock.t.Add(10 * time.Millisecond)
	bar.update(4, 4, "")
	last := strings.TrimPrefix(out.String(), first)
	if !strings.Contains(last, "100% 4/4") {
		t.Errorf("the end of the work: got %q, want 100%% 4/4", last)
	}
	// The shorter line blanks what is left of the longer one.
	if !strings.HasSuffix(last, " ") {
		t.Errorf("got %q, want the rest of the previous line blanked", last)
	}

	// finish blanks the line and leaves the cursor at its start.
	out.Reset()
	bar.finish()
	if s := out.String(); !strings.HasPrefix(s, "\r") || !strings.HasSuffix(s, "\r") || strings.TrimSpace(s) != "" {
		t.Errorf("finish wrote %q, want \\r, spaces, \\r", s)
	}
	out.Reset()
	bar.finish()
	if out.Len() != 0 {
		t.Errorf("a second finish wrote %q", out.String())
	}

	// Sizes, and a nil bar, which draws nothing.
	bar = e.newProgress(true, "writing", true)
	clock.t = clock.t.Add(2 * time.Second)
	bar.update(1_500_000, 12_000_000, "out.onnx")
	if !strings.Contains(out.String(), "12% 1.5 MB/12.0 MB  out.onnx") {
		t.Errorf("got %q, want 12%% 1.5 MB/12.0 MB  out.onnx", out.String())
	}
	var none *progressBar
	none.update(1, 2, "x")
	none.finish()
	if e.newProgress(false, "x", false) != nil {
		t.Errorf("newProgress(false): want nil")
	}
}

// TestNoProgressOffTerminal: the commands print no bar when stderr is not a terminal, even
// with no delay.
func TestNoProgressOffTerminal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	model := filepath.Join("..", "..", "testdata", "models", "convmixer_digits_d64_l4_k9.onnx")
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr}
	other := filepath.Join("..", "..", "testdata", "cases", "11_fp16_storage.onnx")
	harvest := []string{"harvest", model, other, "-o", filepath.Join(dir, "b.npz")}
	if code := runEnv(t.Context(), e, harvest); code != 0 {
		t.Fatalf("harvest: exit %d: %s", code, stderr.String())
	}
	if code := runEnv(t.Context(), e, []string{"init", model, "-o", filepath.Join(dir, "o.onnx")}); code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), "\r") || strings.Contains(stderr.String(), "[#") {
		t.Errorf("stderr holds a progress bar: %q", stderr.String())
	}
}
