package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openPty opens a pseudo-terminal and returns its two ends: what is written to tty comes
// out of pty. It skips the test where the system has no pseudo-terminals.
func openPty(t *testing.T) (pty, tty *os.File) {
	t.Helper()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	unlock := int32(0)
	ioctl := func(req uintptr, arg unsafe.Pointer) syscall.Errno {
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, pty.Fd(), req, uintptr(arg))
		return errno
	}
	if errno := ioctl(syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); errno != 0 {
		pty.Close()
		t.Skipf("no pseudo-terminal: unlocking: %v", errno)
	}
	var n uint32
	if errno := ioctl(syscall.TIOCGPTN, unsafe.Pointer(&n)); errno != 0 {
		pty.Close()
		t.Skipf("no pseudo-terminal: its number: %v", errno)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		pty.Close()
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { pty.Close(); tty.Close() })
	return pty, tty
}

// TestProgressOnTerminal runs harvest and init with stderr on a pseudo-terminal: the
// progress bars appear there, and not with --quiet or --json.
func TestProgressOnTerminal(t *testing.T) {
	t.Parallel()
	pty, tty := openPty(t)
	if !isTerminal(tty.Fd()) {
		t.Fatalf("%s: isTerminal says it is not a terminal", tty.Name())
	}
	if !wantProgress(tty, false, false, isTerminal) {
		t.Fatalf("wantProgress on %s: got false, want true", tty.Name())
	}

	// Everything the terminal shows, read as it comes so that the pty never fills up.
	shown := make(chan string)
	go func() {
		var b bytes.Buffer
		io.Copy(&b, pty) // ends with EIO once the last tty descriptor is closed
		shown <- b.String()
	}()

	dir := t.TempDir()
	testdata := filepath.Join("..", "..", "testdata")
	model := filepath.Join(testdata, "models", "convmixer_digits_d64_l4_k9.onnx")
	other := filepath.Join(testdata, "cases", "11_fp16_storage.onnx")
	runs := []struct {
		args []string
		bar  bool
	}{
		{[]string{"harvest", model, other, "-o", filepath.Join(dir, "b1.npz")}, true},
		{[]string{"harvest", model, other, "-o", filepath.Join(dir, "b2.npz"), "--quiet"}, false},
		{[]string{"harvest", model, other, "-o", filepath.Join(dir, "b3.npz"), "--json"}, false},
		{[]string{"init", model, "-o", filepath.Join(dir, "i1.onnx")}, true},
		{[]string{"init", model, "-o", filepath.Join(dir, "i2.onnx"), "--quiet"}, false},
		{[]string{"transfer", "--bank", filepath.Join(dir, "b1.npz"), model, "-o", filepath.Join(dir, "t.onnx"),
			"--json"}, false},
	}
	var marks []string
	for k, r := range runs {
		// A mark on the terminal between runs tells which run drew what.
		fmt.Fprintf(tty, "\n<run %d>\n", k)
		var stdout bytes.Buffer
		e := &env{stdout: &stdout, stderr: tty} // no delay: every bar shows
		if code := runEnv(t.Context(), e, r.args); code != 0 {
			t.Fatalf("%s: exit %d", strings.Join(r.args, " "), code)
		}
		if strings.Contains(stdout.String(), "\r") || strings.Contains(stdout.String(), "[#") {
			t.Errorf("%s: a progress bar on stdout: %q", strings.Join(r.args, " "), stdout.String())
		}
		marks = append(marks, fmt.Sprintf("<run %d>", k))
	}
	fmt.Fprint(tty, "\n<end>\n")
	tty.Close()
	out := <-shown

	for k, r := range runs {
		start := strings.Index(out, marks[k])
		end := strings.Index(out, "<end>")
		if k+1 < len(runs) {
			end = strings.Index(out, marks[k+1])
		}
		if start < 0 || end < start {
			t.Fatalf("the terminal lacks the marks of run %d:\n%q", k, out)
		}
		part := out[start+len(marks[k]) : end]
		label := map[string]string{"harvest": "harvesting [", "init": "writing [", "transfer": "writing ["}[r.args[0]]
		got := strings.Contains(part, label) && strings.Contains(part, "100%")
		if got != r.bar {
			t.Errorf("%s: progress bar shown %v, want %v; the terminal showed %q",
				strings.Join(r.args, " "), got, r.bar, part)
		}
		if r.bar && !strings.Contains(part, "\r"+strings.Repeat(" ", 20)) {
			t.Errorf("%s: the bar's line is not blanked at the end: %q", strings.Join(r.args, " "), part)
		}
	}
}
