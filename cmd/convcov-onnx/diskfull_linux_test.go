package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/convcov/convcov-onnx/internal/testutil"
)

// TestInitDiskFull runs init where the disk fills up halfway through writing. The test
// binary runs itself again as a child process with RLIMIT_FSIZE lowered to 64 KiB, so
// that a write past 64 KiB of any file fails (EFBIG), as a write on a full disk does
// (ENOSPC); no root is needed. Each run exits 1 naming the file it could not write,
// leaves no file behind, not even a temporary one, and leaves its inputs as they were.
func TestInitDiskFull(t *testing.T) {
	if args := os.Getenv("CONVCOV_DISKFULL_ARGS"); args != "" {
		initOnFullDisk(t, args)
		return
	}
	t.Parallel()
	root := testutil.RepoRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		args  []string // "$D/" is replaced by the case's folder
	}{
		{
			name:  "-o a new file",
			setup: func(t *testing.T, dir string) { copyModel(t, root, dir) },
			args:  []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"},
		},
		{
			name:  "--in-place",
			setup: func(t *testing.T, dir string) { copyModel(t, root, dir) },
			args:  []string{"init", "$D/m.onnx", "--in-place"},
		},
		{
			// Fixture 14a with its tensors moved 200 KB into the data file, so that the
			// output's data file, written before the model, passes the limit.
			name: "-o with external data",
			setup: func(t *testing.T, dir string) {
				externalModel(t, dir, offsetBy(200000))
				data := filepath.Join(dir, "m", "weights.bin")
				b, err := os.ReadFile(data)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(data, append(make([]byte, 200000), b...), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			args: []string{"init", "$D/m/model.onnx", "-o", "$D/out.onnx"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tt.setup(t, dir)
			before := listFiles(t, dir)
			args := make([]string, len(tt.args))
			for k, a := range tt.args {
				args[k] = strings.ReplaceAll(a, "$D/", dir+string(filepath.Separator))
			}
			js, _ := json.Marshal(args)
			cmd := exec.Command(os.Args[0], "-test.run=^TestInitDiskFull$", "-test.v")
			cmd.Env = append(os.Environ(), "CONVCOV_DISKFULL_ARGS="+string(js))
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestInitDiskFull") {
				t.Fatalf("the run on a full disk: %v\n%s", err, out)
			}
			t.Logf("the child process:\n%s", out)
			if !strings.Contains(string(out), "exit status 1") || !strings.Contains(string(out), "file too large") {
				t.Errorf("want exit status 1 and an error saying the file is too large:\n%s", out)
			}

			after := listFiles(t, dir)
			if got, want := keys(after), keys(before); !slices.Equal(got, want) {
				t.Errorf("files in the folder: got %q, want %q", got, want)
			}
			for name, sum := range before {
				if after[name] != sum {
					t.Errorf("%s changed", name)
				}
			}
		})
	}
}

// initOnFullDisk runs in the child process: it lowers the file size limit and runs the
// command line args (JSON), logging its exit status and stderr.
func initOnFullDisk(t *testing.T, args string) {
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: 64 << 10, Max: 64 << 10}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	code, _, stderr := runCLI(t, argv...)
	t.Logf("exit status %d\n%s", code, stderr)
	if !strings.HasPrefix(stderr, "convcov-onnx: ") {
		t.Errorf("stderr %q: want it to start with \"convcov-onnx: \"", stderr)
	}
}

// copyModel copies the 175 KB ConvMixer of testdata/models to dir/m.onnx.
func copyModel(t *testing.T, root, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "testdata", "models", "convmixer_digits_d64_l4_k9.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "m.onnx"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
