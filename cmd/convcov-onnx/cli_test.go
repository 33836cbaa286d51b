package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/internal/testutil"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// copyTree copies the files under src into dst and returns dst.
func copyTree(t *testing.T, src, dst string) string {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// listFiles returns the paths of the files under dir, relative to it, with their sha256.
func listFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[filepath.ToSlash(rel)] = testutil.SHA256(t, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestCommandLine runs the command line's usage errors, failures and small successes.
// Each case gets a fresh folder dir holding a copy of testdata/cases, so that nothing in
// the repository can be written; after the run the copy must be as it was, plus the files
// the case names.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	cases := filepath.Join(testutil.RepoRoot(t), "testdata", "cases")
	const model = "01_mobilenet_baseline.onnx" // D = 3: /dw1/Conv, /dw2/Conv, /dw3/Conv
	tests := []struct {
		name     string
		args     []string // "$D/" is replaced by the case's folder
		code     int
		stdout   []string // keywords, as in expect.json: case-insensitive, "a|b" for either
		stderr   []string
		newFiles []string                                              // files the run adds to $D
		changed  []string                                              // files of $D the run changes
		check    func(t *testing.T, dir string, stdout, stderr string) // more checks
	}{
		{name: "no arguments", args: nil, code: 2, stderr: []string{"usage", "scan", "init", "cov"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: []string{"unknown command", "frobnicate"}},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"usage", "scan", "init", "cov"}},
		{name: "help init", args: []string{"help", "init"}, code: 0, stderr: []string{"example:", "convcov-onnx init "}},
		{name: "scan -h", args: []string{"scan", "-h"}, code: 0, stderr: []string{"example:", "convcov-onnx scan "}},
		{name: "init -h", args: []string{"init", "-h"}, code: 0, stderr: []string{"example:", "convcov-onnx init "}},
		{name: "cov -h", args: []string{"cov", "-h"}, code: 0, stderr: []string{"example:", "convcov-onnx cov "}},
		{name: "unknown flag", args: []string{"init", "$D/" + model, "-o", "$D/out.onnx", "--bogus"}, code: 2, stderr: []string{"bogus"}},
		{name: "init --help", args: []string{"init", "--help"}, code: 0, stderr: []string{"example:"}},

		// init: where to write.
		{name: "init without -o", args: []string{"init", "$D/" + model}, code: 2, stderr: []string{"-o", "in-place"}},
		{name: "init -o the input", args: []string{"init", "$D/" + model, "-o", "$D/" + model}, code: 2, stderr: []string{"in-place"}},
		{
			name: "init -o the input by another path", args: []string{"init", "$D/" + model, "-o", "$D/10_external_data/../" + model},
			code: 2, stderr: []string{"in-place"},
		},
		{name: "init -o and --in-place elsewhere", args: []string{"init", "$D/" + model, "--in-place", "-o", "$D/out.onnx"}, code: 2},
		{name: "init two models", args: []string{"init", "$D/" + model, "$D/" + model, "-o", "$D/out.onnx"}, code: 2},
		{
			name: "init --in-place", args: []string{"init", "$D/" + model, "--in-place"},
			code: 0, stdout: []string{"rewrote 3"}, changed: []string{model},
			check: func(t *testing.T, dir, _, _ string) {
				checkWholeModel(t, filepath.Join(cases, model), filepath.Join(dir, model), []target{
					{tensor: "dw1.weight"}, {tensor: "dw2.weight"}, {tensor: "dw3.weight"},
				})
			},
		},
		{
			name: "init --in-place with external data", args: []string{"init", "$D/10_external_data/model.onnx", "--in-place"},
			code: 0, changed: []string{"10_external_data/weights/dw.bin"},
			check: func(t *testing.T, dir, _, _ string) {
				checkWholeModel(t, filepath.Join(cases, "10_external_data", "model.onnx"),
					filepath.Join(dir, "10_external_data", "model.onnx"), []target{{tensor: "W_dw1"}, {tensor: "W_dw2"}})
			},
		},

		// init: schedule flags.
		{name: "bad --preset", args: []string{"init", "$D/" + model, "-o", "$D/out.onnx", "--preset", "imagenet"}, code: 2, stderr: []string{"preset", "imagenet-thawed"}},
		{name: "bad --schedule", args: []string{"init", "$D/" + model, "-o", "$D/out.onnx", "--schedule", "sawtooth"}, code: 2, stderr: []string{"schedule", "global"}},
		{name: "bad --only", args: []string{"init", "$D/" + model, "-o", "$D/out.onnx", "--only", "dw("}, code: 2, stderr: []string{"only"}},
		{name: "scan bad --preset", args: []string{"scan", "$D/" + model, "--preset", "nope"}, code: 2, stderr: []string{"preset"}},
		{
			name: "--only selects nothing", args: []string{"init", "$D/" + model, "-o", "$D/out.onnx", "--only", "^nothing$", "--json"},
			code: 0, newFiles: []string{"out.onnx"},
			check: func(t *testing.T, dir, stdout, _ string) {
				var rep struct {
					Rewritten int `json:"rewritten"`
					Layers    []struct {
						Node, Action, Reason string
					} `json:"layers"`
				}
				if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
					t.Fatalf("init --json: %v\n%s", err, stdout)
				}
				if len(rep.Layers) != 3 || rep.Rewritten != 0 {
					t.Errorf("got %d layers, %d rewritten; want 3, 0", len(rep.Layers), rep.Rewritten)
				}
				for _, l := range rep.Layers {
					if l.Action != inject.ActionSkip || !strings.Contains(l.Reason, "not selected by --only") {
						t.Errorf("node %s: got action %q, reason %q; want skip, 'not selected by --only'", l.Node, l.Action, l.Reason)
					}
				}
				checkSameBytes(t, filepath.Join(dir, model), filepath.Join(dir, "out.onnx"))
			},
		},
		{
			name: "--only selects one", args: []string{"init", "$D/" + model, "-o", "$D/out.onnx", "--only", "dw2"},
			code: 0, stdout: []string{"rewrote 1 of 3", "not selected by --only"}, newFiles: []string{"out.onnx"},
			check: func(t *testing.T, dir, _, _ string) {
				checkWholeModel(t, filepath.Join(dir, model), filepath.Join(dir, "out.onnx"), []target{{tensor: "dw2.weight"}})
			},
		},
		{
			name: "schedule goes non-positive", args: []string{"init", "$D/" + model, "-o", "$D/out.onnx", "--v", "-10"},
			code: 1, stderr: []string{"node", "/dw2/Conv|/dw3/Conv", "σ|sigma", "nothing was written"},
		},
		{name: "non-positive --sigma0", args: []string{"init", "$D/" + model, "-o", "$D/out.onnx", "--sigma0", "0"}, code: 2, stderr: []string{"sigma0"}},

		// Files that are not models.
		{name: "scan missing model", args: []string{"scan", "$D/missing.onnx"}, code: 1, stderr: []string{"missing.onnx"}},
		{name: "init missing model", args: []string{"init", "$D/missing.onnx", "-o", "$D/out.onnx"}, code: 1, stderr: []string{"missing.onnx"}},
		{name: "scan text file", args: []string{"scan", "$D/EXPECT.md"}, code: 1, stderr: []string{"EXPECT.md"}},
		{name: "init text file", args: []string{"init", "$D/EXPECT.md", "-o", "$D/out.onnx"}, code: 1, stderr: []string{"EXPECT.md"}},

		// cov.
		{name: "cov 7x5", args: []string{"cov", "--kernel", "7x5", "--sigma", "1.5", "-o", "$D/c.npy"}, code: 0, newFiles: []string{"c.npy"}, check: checkNpy("c.npy", 35)},
		{name: "cov 5", args: []string{"cov", "--kernel", "5", "--sigma", "0.5", "-o", "$D/c.npy"}, code: 0, newFiles: []string{"c.npy"}, check: checkNpy("c.npy", 25)},
		{name: "cov 3x3x3", args: []string{"cov", "--kernel", "3x3x3", "--sigma", "2", "-o", "$D/c.npy"}, code: 0, newFiles: []string{"c.npy"}, check: checkNpy("c.npy", 27)},
		{name: "cov --json", args: []string{"cov", "--kernel", "3", "--sigma", "1", "--json"}, code: 0, stdout: []string{`"covariance"`, `"version"`}},
		{name: "cov without --sigma", args: []string{"cov", "--kernel", "5"}, code: 2, stderr: []string{"sigma"}},
		{name: "cov without --kernel", args: []string{"cov", "--sigma", "1"}, code: 2, stderr: []string{"kernel"}},
		{name: "cov bad --kernel", args: []string{"cov", "--kernel", "3x", "--sigma", "1"}, code: 2, stderr: []string{"kernel"}},
		{name: "cov negative --sigma", args: []string{"cov", "--kernel", "3", "--sigma", "-1"}, code: 2, stderr: []string{"sigma"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := copyTree(t, cases, t.TempDir())
			before := listFiles(t, dir)
			args := make([]string, len(tt.args))
			for k, a := range tt.args {
				args[k] = strings.ReplaceAll(a, "$D/", dir+string(filepath.Separator))
			}
			code, stdout, stderr := runCLI(t, args...)
			if code != tt.code {
				t.Errorf("got exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			if missing := testutil.MissingKeywords(stdout, tt.stdout); len(missing) > 0 {
				t.Errorf("stdout lacks %q:\n%s", missing, stdout)
			}
			if missing := testutil.MissingKeywords(stderr, tt.stderr); len(missing) > 0 {
				t.Errorf("stderr lacks %q:\n%s", missing, stderr)
			}
			if code == 1 && !strings.HasPrefix(stderr, "convcov-onnx: ") {
				t.Errorf("stderr %q: want it to start with \"convcov-onnx: \"", stderr)
			}

			// The folder holds what it held, changed only where the case says, plus the
			// new files.
			after := listFiles(t, dir)
			for _, name := range tt.newFiles {
				if _, ok := after[name]; !ok {
					t.Errorf("no %s written", name)
				}
				delete(after, name)
			}
			if got, want := keys(after), keys(before); !slices.Equal(got, want) {
				t.Errorf("files in the folder: got %q, want %q plus %q", got, want, tt.newFiles)
			}
			for name, sum := range before {
				if changed := after[name] != sum; changed != slices.Contains(tt.changed, name) {
					t.Errorf("%s: changed %v, want %v", name, changed, !changed)
				}
			}
			if tt.check != nil {
				tt.check(t, dir, stdout, stderr)
			}
		})
	}
}

// checkNpy checks that the file is a float64 .npy of an n×n matrix.
func checkNpy(name string, n int) func(t *testing.T, dir, stdout, stderr string) {
	return func(t *testing.T, dir, _, _ string) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x93NUMPY")) {
			t.Fatalf("%s starts with %q, want the .npy magic \\x93NUMPY", name, b[:min(len(b), 8)])
		}
		// Magic (6 bytes), version (2), header length (2 bytes little-endian in version 1,
		// 4 in versions 2 and 3), header, data.
		start := 10
		hlen := int(b[8]) | int(b[9])<<8
		if b[6] >= 2 {
			start = 12
			hlen |= int(b[10])<<16 | int(b[11])<<24
		}
		if start+hlen > len(b) {
			t.Fatalf("%s: header of %d bytes in a file of %d", name, hlen, len(b))
		}
		header := string(b[start : start+hlen])
		if !strings.Contains(header, "'<f8'") {
			t.Errorf("%s: header %q, want dtype '<f8'", name, header)
		}
		if want := fmt.Sprintf("(%d, %d)", n, n); !strings.Contains(header, want) {
			t.Errorf("%s: header %q, want shape %s", name, header, want)
		}
		if got, want := len(b)-start-hlen, n*n*8; got != want {
			t.Errorf("%s: got %d data bytes, want %d", name, got, want)
		}
	}
}

// externalModel writes fixture 14a into dir/m with edit applied to the external data
// entries of its tensors, and its data file as dir/m/weights.bin.
func externalModel(t *testing.T, dir string, edit func(kv *onnxpb.StringStringEntryProto)) {
	t.Helper()
	src := filepath.Join(testutil.RepoRoot(t), "testdata", "models", "fixtures", "14a_external_one_file")
	b, err := os.ReadFile(filepath.Join(src, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(b, mp); err != nil {
		t.Fatal(err)
	}
	testutil.WalkTensors(mp, func(x *onnxpb.TensorProto) {
		for _, kv := range x.GetExternalData() {
			edit(kv)
		}
	})
	if b, err = proto.Marshal(mp); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "m"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyTree(t, src, filepath.Join(dir, "m"))
	if err := os.WriteFile(filepath.Join(dir, "m", "model.onnx"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// setLocation returns an edit that points every external tensor at location.
func setLocation(location string) func(kv *onnxpb.StringStringEntryProto) {
	return func(kv *onnxpb.StringStringEntryProto) {
		if kv.GetKey() == "location" {
			kv.Value = proto.String(location)
		}
	}
}

// TestInputsAreNeverWritten runs init where it could harm its inputs: outputs that land on
// the input's files, and external data locations that DESIGN.md says to refuse. Each run
// must fail with exit status 1 or 2, name the problem, and leave every file as it was.
func TestInputsAreNeverWritten(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  func(t *testing.T, dir string) // makes dir/m/model.onnx and what it reads
		args   []string                       // "$D/" is replaced by the case's folder
		stderr []string
	}{
		{
			name:   "-o the input's data file",
			setup:  func(t *testing.T, dir string) { externalModel(t, dir, func(*onnxpb.StringStringEntryProto) {}) },
			args:   []string{"init", "$D/m/model.onnx", "-o", "$D/m/weights.bin"},
			stderr: []string{"weights.bin"},
		},
		{
			name: "-o whose data file is the input's",
			setup: func(t *testing.T, dir string) {
				externalModel(t, dir, setLocation("out.onnx.data"))
				rename(t, dir, "m/weights.bin", "m/out.onnx.data")
			},
			args:   []string{"init", "$D/m/model.onnx", "-o", "$D/m/out.onnx"},
			stderr: []string{"out.onnx.data"},
		},
		{
			name: "-o a symbolic link to the input",
			setup: func(t *testing.T, dir string) {
				externalModel(t, dir, func(*onnxpb.StringStringEntryProto) {})
				if err := os.Symlink("model.onnx", filepath.Join(dir, "m", "link.onnx")); err != nil {
					t.Fatal(err)
				}
			},
			args:   []string{"init", "$D/m/model.onnx", "-o", "$D/m/link.onnx"},
			stderr: []string{"in-place"},
		},
		{
			name:   "location with ..",
			setup:  func(t *testing.T, dir string) { externalModel(t, dir, setLocation("../m/weights.bin")) },
			args:   []string{"init", "$D/m/model.onnx", "-o", "$D/out.onnx"},
			stderr: []string{"model.onnx", "W_dw1|W_pw|W_dw2|external", ".."},
		},
		{
			name: "absolute location",
			setup: func(t *testing.T, dir string) {
				externalModel(t, dir, setLocation(filepath.Join(dir, "m", "weights.bin")))
			},
			args:   []string{"init", "$D/m/model.onnx", "-o", "$D/out.onnx"},
			stderr: []string{"model.onnx", "absolute"},
		},
		{
			name: "location through a link out of the folder",
			setup: func(t *testing.T, dir string) {
				externalModel(t, dir, setLocation("link.bin"))
				rename(t, dir, "m/weights.bin", "elsewhere.bin")
				if err := os.Symlink(filepath.Join("..", "elsewhere.bin"), filepath.Join(dir, "m", "link.bin")); err != nil {
					t.Fatal(err)
				}
			},
			args:   []string{"init", "$D/m/model.onnx", "-o", "$D/out.onnx"},
			stderr: []string{"model.onnx", "link"},
		},
		{
			name:   "missing data file",
			setup:  func(t *testing.T, dir string) { externalModel(t, dir, setLocation("gone.bin")) },
			args:   []string{"init", "$D/m/model.onnx", "-o", "$D/out.onnx"},
			stderr: []string{"gone.bin"},
		},
		{
			name: "offset past the end",
			setup: func(t *testing.T, dir string) {
				externalModel(t, dir, func(kv *onnxpb.StringStringEntryProto) {
					if kv.GetKey() == "offset" {
						kv.Value = proto.String("100000")
					}
				})
			},
			args:   []string{"init", "$D/m/model.onnx", "-o", "$D/out.onnx"},
			stderr: []string{"model.onnx", "100000|offset"},
		},
		{
			name:   "scan of a refused location",
			setup:  func(t *testing.T, dir string) { externalModel(t, dir, setLocation("../m/weights.bin")) },
			args:   []string{"scan", "$D/m/model.onnx"},
			stderr: []string{".."},
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
			code, stdout, stderr := runCLI(t, args...)
			if code != 1 && code != 2 {
				t.Errorf("got exit status %d, want 1 or 2\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if missing := testutil.MissingKeywords(stderr, tt.stderr); len(missing) > 0 {
				t.Errorf("stderr lacks %q:\n%s", missing, stderr)
			}
			after := listFiles(t, dir)
			if got, want := keys(after), keys(before); !slices.Equal(got, want) {
				t.Errorf("files in the folder: got %q, want %q", got, want)
			}
			for name, sum := range before {
				if after[name] != sum {
					t.Errorf("%s changed: sha256 %s before, %s after", name, sum, after[name])
				}
			}
		})
	}
}

func rename(t *testing.T, dir, from, to string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
		t.Fatal(err)
	}
}
