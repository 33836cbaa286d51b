package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convcov/convcov-onnx/covtransfer"
	"github.com/convcov/convcov-onnx/internal/testutil"
)

// TestHarvestTransferCommands runs harvest, transfer and verify --bank: usage errors (exit
// 2), failures (exit 1) and successes. Each case has a fresh folder $D holding bank.npz,
// harvested from the trained ConvMixer; $T is the repository's testdata.
func TestHarvestTransferCommands(t *testing.T) {
	t.Parallel()
	testdata := filepath.Join(testutil.RepoRoot(t), "testdata")
	const convmixer = "$T/models/convmixer_digits_d64_l4_k9.onnx"
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string // keywords, as in expect.json: case-insensitive, "a|b" for either
		stderr []string
		files  []string // files of $D the run must leave (besides bank.npz)
		check  func(t *testing.T, dir, stdout string)
	}{
		{name: "help lists them", args: []string{"help"}, stdout: []string{"harvest", "transfer", "--bank"}},
		{name: "harvest -h", args: []string{"harvest", "-h"}, stderr: []string{"example:", "convcov-onnx harvest "}},
		{name: "transfer -h", args: []string{"transfer", "-h"}, stderr: []string{"example:", "--bank", "-direct"}},

		// harvest: usage and failures.
		{name: "harvest nothing", args: []string{"harvest", "-o", "$D/b.npz"}, code: 2, stderr: []string{"one or more model"}},
		{name: "harvest without -o", args: []string{"harvest", convmixer}, code: 2, stderr: []string{"-o"}},
		{name: "harvest -o an input", args: []string{"harvest", "--merge", "$D/bank.npz", "-o", "$D/bank.npz"}, code: 2, stderr: []string{"inputs"}},
		{name: "harvest missing model", args: []string{"harvest", "$D/missing.onnx", "-o", "$D/b.npz"}, code: 1, stderr: []string{"missing.onnx"}},
		{name: "harvest text file", args: []string{"harvest", "$T/cases/EXPECT.md", "-o", "$D/b.npz"}, code: 1, stderr: []string{"EXPECT.md", "not a valid ONNX"}},
		{name: "merge a model", args: []string{"harvest", "--merge", convmixer, "-o", "$D/b.npz"}, code: 1, stderr: []string{"convmixer_digits", "not a valid bank"}},

		// harvest: successes.
		{
			name: "harvest with skipped layers", args: []string{"harvest", "$T/models/fixtures/05_weight_paths.onnx", "-o", "$D/b.npz"},
			stdout: []string{"9 depthwise", "6 harvested", "not harvested dw_dequant", "DequantizeLinear", "wrote"}, files: []string{"b.npz"},
		},
		{
			name: "harvest without depthwise", args: []string{"harvest", "$T/cases/21b_no_depthwise.onnx", "-o", "$D/b.npz"},
			stdout: []string{"no depthwise|0 depthwise", "0 filters"}, files: []string{"b.npz"},
			check: func(t *testing.T, dir, _ string) {
				b, err := covtransfer.Load(filepath.Join(dir, "b.npz"))
				if err != nil || len(b.Entries) != 0 {
					t.Errorf("bank of 21b: %v, entries %v", err, b)
				}
			},
		},
		{
			name: "harvest --json", args: []string{"harvest", convmixer, "$T/cases/11_fp16_storage.onnx", "-o", "$D/b.npz", "--json"},
			files: []string{"b.npz"},
			check: func(t *testing.T, dir, stdout string) {
				var doc harvestJSON
				if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
					t.Fatalf("%v\n%s", err, stdout)
				}
				if doc.Version != reportVersion || doc.Command != "harvest" || doc.Layers != 6 || doc.Filters != 256+16 ||
					len(doc.Models) != 2 || strings.Join(doc.Kernels, ",") != "9x9,3x3" {
					t.Errorf("got %+v", doc)
				}
				if l := doc.Models[1].Layers[1]; l.Action != actionHarvest || l.Filters != 8 || l.DType != "FLOAT16" || *l.Index != 2 {
					t.Errorf("layer 2 of 11_fp16_storage: %+v", l)
				}
			},
		},
		{
			name: "merge halves", args: []string{"harvest", "--merge", "$D/bank.npz", "$D/half.npz", "-o", "$D/all.npz"},
			stdout: []string{"merged 2 banks", "6 layers of 2 models"}, files: []string{"all.npz", "half.npz", "whole.npz"},
			check: func(t *testing.T, dir, _ string) {
				a, _ := os.ReadFile(filepath.Join(dir, "all.npz"))
				w, _ := os.ReadFile(filepath.Join(dir, "whole.npz"))
				if !bytes.Equal(a, w) {
					t.Error("the merge of two banks differs from the harvest of both models at once")
				}
			},
		},

		// transfer: usage and failures.
		{name: "transfer without --bank", args: []string{"transfer", convmixer, "-o", "$D/o.onnx"}, code: 2, stderr: []string{"--bank"}},
		{name: "transfer without -o", args: []string{"transfer", "--bank", "$D/bank.npz", convmixer}, code: 2, stderr: []string{"transfer needs -o"}},
		{name: "transfer -o the input", args: []string{"transfer", "--bank", "$D/bank.npz", convmixer, "-o", convmixer}, code: 2, stderr: []string{"in-place"}},
		{name: "transfer two models", args: []string{"transfer", "--bank", "$D/bank.npz", convmixer, convmixer, "-o", "$D/o.onnx"}, code: 2},
		{name: "transfer -o the bank", args: []string{"transfer", "--bank", "$D/bank.npz", convmixer, "-o", "$D/bank.npz"}, code: 2, stderr: []string{"bank"}},
		{
			name: "--direct with --kronecker", args: []string{"transfer", "--bank", "$D/bank.npz", convmixer, "-o", "$D/o.onnx", "--direct", "--kronecker"},
			code: 2, stderr: []string{"--direct"},
		},
		{name: "bad --only", args: []string{"transfer", "--bank", "$D/bank.npz", convmixer, "-o", "$D/o.onnx", "--only", "("}, code: 2, stderr: []string{"only"}},
		{name: "missing bank", args: []string{"transfer", "--bank", "$D/none.npz", convmixer, "-o", "$D/o.onnx"}, code: 1, stderr: []string{"none.npz"}},
		{name: "a model as the bank", args: []string{"transfer", "--bank", convmixer, convmixer, "-o", "$D/o.onnx"}, code: 1, stderr: []string{"not a valid bank"}},
		{
			name: "kernels the bank cannot give", args: []string{"transfer", "--bank", "$D/bank.npz", "$T/cases/06_kernel_geometry.onnx", "-o", "$D/o.onnx"},
			code: 1, stderr: []string{"dw_1x7", "1x7", "9x9", "nothing was written"},
		},
		{
			name: "--direct into another architecture", args: []string{"transfer", "--bank", "$D/bank.npz", "$T/models/fixtures/13a_convmixer_d8_k9.onnx", "-o", "$D/o.onnx", "--direct"},
			code: 1, stderr: []string{"layer for layer", "4 depthwise layers, the target has 8", "nothing was written"},
		},
		{
			name: "an empty bank", args: []string{"transfer", "--bank", "$D/empty.npz", convmixer, "-o", "$D/o.onnx"},
			code: 1, stderr: []string{"no layer with 2 or more filters"}, files: []string{"empty.npz"},
		},

		// transfer: successes.
		{
			name: "transfer and verify", args: []string{"transfer", "--bank", "$D/bank.npz", "$T/models/fixtures/13b_convmixer_d12_k7.onnx", "-o", "$D/o.onnx", "--verify", "--no-run"},
			stdout: []string{"12 depthwise", "9x9 to 7x7 filter-size transfer", "rewrote 12 of 12", "fidelity against the bank", "PASS"}, files: []string{"o.onnx"},
		},
		{
			name: "transfer --direct", args: []string{"transfer", "--bank", "$D/bank.npz", convmixer, "-o", "$D/o.onnx", "--direct", "--verify", "--no-run"},
			stdout: []string{"direct copy", "copy of node /3/3.0/fn/fn.0/Conv", "rewrote 4 of 4", "PASS"}, files: []string{"o.onnx"},
		},
		{
			name: "transfer --json", args: []string{"transfer", "--bank", "$D/bank.npz", "$T/cases/01_mobilenet_baseline.onnx", "-o", "$D/o.onnx",
				"--json", "--with-mean", "--kronecker", "--align-corners=false", "--seed", "3", "--only", "dw[13]", "--verify", "--no-run"},
			files: []string{"o.onnx"},
			check: func(t *testing.T, dir, stdout string) {
				var doc struct {
					transferJSON
					Verify *struct {
						OK   bool            `json:"ok"`
						Bank *bankTargetJSON `json:"bank"`
						Sch  *scheduleJSON   `json:"schedule"`
					} `json:"verify"`
				}
				if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
					t.Fatalf("%v\n%s", err, stdout)
				}
				if doc.Command != "transfer" || doc.Rewritten != 2 || doc.Seed != 3 || doc.Bank.AlignCorners || !doc.Bank.WithMean || !doc.Bank.Kronecker {
					t.Errorf("got %+v", doc.transferJSON)
				}
				if l := doc.Layers[2]; l.Action != "rewrite" || !strings.Contains(l.From, "9x9 to 5x5") || !strings.Contains(l.From, "Kronecker") {
					t.Errorf("layer 3: %+v", l)
				}
				if l := doc.Layers[1]; l.Action != "skip" || !strings.Contains(l.Reason, "--only") {
					t.Errorf("layer 2: %+v", l)
				}
				if v := doc.Verify; v == nil || !v.OK || v.Bank == nil || v.Sch != nil {
					t.Errorf("verify: %+v", v)
				}
			},
		},

		{
			name: "transfer --in-place", args: []string{"transfer", "--bank", "$D/bank.npz", "$D/model.onnx", "--in-place", "--only", "fn.0"},
			stdout: []string{"rewrote 4 of 4", "model.onnx"}, files: []string{"model.onnx"},
			check: func(t *testing.T, dir, _ string) {
				orig := filepath.Join(testutil.RepoRoot(t), "testdata", "models", "convmixer_digits_d64_l4_k9.onnx")
				checkWholeModel(t, orig, filepath.Join(dir, "model.onnx"), []target{
					{tensor: "3.0.fn.0.weight"}, {tensor: "4.0.fn.0.weight"}, {tensor: "5.0.fn.0.weight"}, {tensor: "6.0.fn.0.weight"},
				})
			},
		},

		// verify --bank.
		{
			name: "verify --bank", args: []string{"verify", "$T/models/fixtures/13a_convmixer_d8_k9.onnx", "$D/o.onnx", "--bank", "$D/bank.npz", "--no-run"},
			stdout: []string{"fidelity against the bank", "PASS"}, files: []string{"o.onnx"},
		},
		{
			name: "verify --bank, other options", args: []string{"verify", "$T/models/fixtures/13a_convmixer_d8_k9.onnx", "$D/o.onnx", "--bank", "$D/bank.npz", "--kronecker", "--no-run"},
			code: 1, stdout: []string{"MISMATCH", "FAIL"}, files: []string{"o.onnx"},
		},
		{name: "verify --with-mean alone", args: []string{"verify", convmixer, convmixer, "--with-mean"}, code: 2, stderr: []string{"--bank"}},
		{name: "verify --bank --preset", args: []string{"verify", convmixer, convmixer, "--bank", "$D/bank.npz", "--preset", "fig6"}, code: 2, stderr: []string{"--preset"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			prepare(t, dir, tt.name)
			args := make([]string, len(tt.args))
			for k, a := range tt.args {
				a = strings.ReplaceAll(a, "$D/", dir+string(filepath.Separator))
				args[k] = strings.ReplaceAll(a, "$T/", testdata+string(filepath.Separator))
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
			// Nothing else is left in the folder: no partial output after a failure.
			entries, _ := os.ReadDir(dir)
			var got []string
			for _, e := range entries {
				if e.Name() != "bank.npz" {
					got = append(got, e.Name())
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.files, " ") {
				t.Errorf("files left: %q, want %q", got, tt.files)
			}
			if tt.check != nil {
				tt.check(t, dir, stdout)
			}
		})
	}
}

// prepare makes the files a case of TestHarvestTransferCommands starts from.
func prepare(t *testing.T, dir, name string) {
	t.Helper()
	testdata := filepath.Join(testutil.RepoRoot(t), "testdata")
	convmixer := filepath.Join(testdata, "models", "convmixer_digits_d64_l4_k9.onnx")
	harvest := func(out string, models ...string) {
		args := append([]string{"harvest", "-o", filepath.Join(dir, out)}, models...)
		if code, _, stderr := runCLI(t, args...); code != 0 {
			t.Fatalf("harvest %v: exit %d: %s", models, code, stderr)
		}
	}
	harvest("bank.npz", convmixer)
	switch name {
	case "merge halves":
		fp16 := filepath.Join(testdata, "cases", "11_fp16_storage.onnx")
		harvest("half.npz", fp16)
		harvest("whole.npz", convmixer, fp16)
	case "transfer --in-place":
		b, err := os.ReadFile(convmixer)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	case "an empty bank":
		harvest("empty.npz", filepath.Join(testdata, "cases", "21b_no_depthwise.onnx"))
	case "verify --bank", "verify --bank, other options":
		args := []string{"transfer", "--bank", filepath.Join(dir, "bank.npz"), filepath.Join(testdata, "models", "fixtures", "13a_convmixer_d8_k9.onnx"),
			"-o", filepath.Join(dir, "o.onnx")}
		if code, _, stderr := runCLI(t, args...); code != 0 {
			t.Fatalf("transfer: exit %d: %s", code, stderr)
		}
	}
}

// TestTransferSeed: transfer is deterministic; another seed gives other filters.
func TestTransferSeed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prepare(t, dir, "")
	model := filepath.Join(testutil.RepoRoot(t), "testdata", "models", "face_detection_front_128x128_barracuda.onnx")
	out := func(name, seed string) []byte {
		path := filepath.Join(dir, name)
		if code, _, stderr := runCLI(t, "transfer", "--bank", filepath.Join(dir, "bank.npz"), model, "-o", path, "--seed", seed); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b, c := out("a.onnx", "7"), out("b.onnx", "7"), out("c.onnx", "8")
	if !bytes.Equal(a, b) {
		t.Error("the same seed gave other bytes")
	}
	if bytes.Equal(a, c) {
		t.Error("seeds 7 and 8 gave the same bytes")
	}
}
