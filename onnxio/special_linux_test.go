package onnxio

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadSpecialFiles is the regression test for Load of a device or a named pipe, which
// could read forever: scan /dev/zero never returned, its memory growing, and scan of a
// named pipe waited for a writer. Load now refuses every
// file that is not a regular one, naming it and what it is, without opening it.
func TestLoadSpecialFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.onnx")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Not /dev/zero: if the check failed, reading it would eat the machine's memory; the
	// pipe just blocks, and /dev/null is a device that reads as empty.
	for _, tt := range []struct{ path, kind string }{
		{fifo, "a named pipe"}, // opening it would wait for a writer
		{"/dev/null", "a device"},
		{dir, "a folder"},
	} {
		if _, err := os.Stat(tt.path); err != nil {
			t.Logf("skipping %s: %v", tt.path, err)
			continue
		}
		done := make(chan error, 1)
		go func() {
			_, err := Load(tt.path)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.kind) {
				t.Errorf("Load(%s): got %v, want an error naming it and saying it is %s", tt.path, err, tt.kind)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Load(%s) did not return", tt.path)
		}
	}
}
