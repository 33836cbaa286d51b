//go:build cgo

package verify

import (
	"errors"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/internal/testutil"
	"github.com/convcov/convcov-onnx/onnxio"
)

// closedFormExpectation is the distribution rewriteModel draws from, for Check.
type closedFormExpectation struct {
	src *inject.ClosedFormSource
}

func (e closedFormExpectation) Target(l *graphscan.Layer) (*Target, error) {
	d, err := e.src.Distribution(l)
	if err != nil {
		return nil, err
	}
	return TargetOf(d.Projection.Cov, d.Projection.Factor, d.Mean, 1), nil
}

// realModelDims are the symbolic dimensions the real models need to run on inputs of a
// sensible size, by file name. Models not listed run with every symbolic dimension 1.
var realModelDims = map[string]map[string]int64{
	// [N, 3, H, W]
	"ch_ppocr_mobile_v2.0_cls_infer.onnx": {"p2o.DynamicDimension.1": 48, "p2o.DynamicDimension.2": 192},
	"ch_PP-OCRv4_det_infer.onnx":          {"p2o.DynamicDimension.1": 64, "p2o.DynamicDimension.2": 64},
	// [N, 3, 48, W]
	"ch_PP-OCRv4_rec_infer.onnx": {"p2o.DynamicDimension.1": 160},
	// The STFT inside needs at least 256 samples.
	"silero_vad_legacy.onnx": {"sequence": 512},
}

// checkRewrite rewrites the model at in as init does and runs Check on the result, with
// ONNX Runtime and the closed form as the expectation.
func checkRewrite(t *testing.T, in string, dims map[string]int64) (*Report, string) {
	t.Helper()
	openRuntime(t, Options{}) // skip without the library
	out := filepath.Join(t.TempDir(), "out.onnx")
	src := closedForm(t)
	rewriteModel(t, in, out, src)
	rep, err := Check(in, out, CheckOptions{Run: true, Runtime: Options{Dims: dims},
		Expectation: closedFormExpectation{src}})
	if err != nil {
		t.Fatal(err)
	}
	return rep, out
}

// TestCheckRealModels runs init, then Check, on every real model: the repository's and,
// when the shared folder is there, every model under its models folder, which adds M-LSD
// and PP-OCRv4's detector and recognizer.
func TestCheckRealModels(t *testing.T) {
	t.Parallel()
	models, err := filepath.Glob(filepath.Join(modelsDir, "*.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if shared := testutil.SharedDir(t); shared != "" {
		err := filepath.WalkDir(filepath.Join(shared, "models"), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".onnx") {
				models = append(models, path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	} else {
		t.Run("shared", func(t *testing.T) {
			t.Skip("no shared folder (set CONVCOV_SHARED, or put it at ../shared next to the " +
				"repository): M-LSD and PP-OCRv4 det and rec are not checked")
		})
	}
	for _, model := range models {
		name := filepath.Base(filepath.Dir(model)) + "/" + filepath.Base(model)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := loadModel(t, model)
			rewritable := 0
			for _, l := range scanModel(t, m).Layers {
				if l.Tensor != nil {
					rewritable++
				}
			}
			var rep *Report
			if rewritable == 0 {
				// Nothing to rewrite (silero's convolutions are inside If branches; the
				// grouped convolutions are not depthwise): the model against itself.
				openRuntime(t, Options{})
				var err error
				rep, err = Check(model, model, CheckOptions{Run: true,
					Runtime: Options{Dims: realModelDims[filepath.Base(model)]}})
				if err != nil {
					t.Fatal(err)
				}
			} else {
				rep, _ = checkRewrite(t, model, realModelDims[filepath.Base(model)])
			}
			if !rep.OK() {
				t.Fatalf("Check failed:\n%s", strings.Join(rep.Problems, "\n"))
			}
			if len(rep.Structure.Changed) != rewritable {
				t.Errorf("%d weights changed, want the %d rewritable ones", len(rep.Structure.Changed), rewritable)
			}
			judged := 0
			for _, lc := range rep.Layers {
				switch {
				case lc.Rewritten && lc.Fidelity == nil:
					t.Errorf("node %s: rewritten, but no fidelity measured", lc.Layer.Label())
				case lc.Fidelity != nil && !math.IsNaN(lc.Fidelity.MaxZ):
					judged++
				}
			}
			if len(rep.Outputs) == 0 || rep.Runtime == "" {
				t.Errorf("outputs %v, runtime %q: want the models run", rep.Outputs, rep.Runtime)
			}
			for _, d := range rep.Outputs {
				if !d.OK() {
					t.Errorf("output %q: %+v, want OK", d.Name, d)
				}
			}
			t.Logf("%d layers rewritten (%d with z scores), %d outputs",
				len(rep.Structure.Changed), judged, len(rep.Outputs))
		})
	}
}

// breakRewrite rewrites the model at in, then changes its tensor called name with
// edit, and writes the result; it returns the path written.
func breakRewrite(t *testing.T, in, name string, edit func(v []float64, rng *rand.Rand)) string {
	t.Helper()
	openRuntime(t, Options{}) // skip without the library
	dir := t.TempDir()
	good := filepath.Join(dir, "good.onnx")
	rewriteModel(t, in, good, closedForm(t))
	m := loadModel(t, good)
	tp := tensorNamed(t, m, name)
	v, err := m.Values(tp)
	if err != nil {
		t.Fatal(err)
	}
	edit(v, rand.New(rand.NewPCG(3, 4)))
	if err := m.SetValues(tp, v); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "broken.onnx")
	if err := m.Save(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCheckFailures breaks rewrites in ways Check must catch, and expects a problem that
// names what broke.
func TestCheckFailures(t *testing.T) {
	t.Parallel()
	mobilenet := casesDir + "/01_mobilenet_baseline.onnx"
	convmixer := modelsDir + "/convmixer_digits_d64_l4_k9.onnx"
	const dw = "4.0.fn.0.weight" // layer 2 of 4: 64 filters 9x9 at σ = 0.29
	const mismatch = `node /4/4.0/fn/fn.0/Conv: weight "4.0.fn.0.weight" does not follow the target distribution`
	tests := []struct {
		name     string
		model    string
		tensor   string
		edit     func(v []float64, rng *rand.Rand)
		problems []string // each must be in some problem
		outputs  bool     // the models still ran
	}{
		{
			name: "pointwise weight altered", model: mobilenet, tensor: "pw2.weight",
			edit:     func(v []float64, _ *rand.Rand) { v[10] *= 2 },
			problems: []string{`graph.initializer["pw2.weight"] (data) differs`},
			outputs:  true,
		},
		{
			name: "depthwise filters all zero", model: convmixer, tensor: dw,
			edit:     func(v []float64, _ *rand.Rand) { clear(v) },
			problems: []string{mismatch},
			outputs:  true,
		},
		{
			// PyTorch's default initialization of a 9x9 depthwise filter.
			name: "depthwise filters uniform noise", model: convmixer, tensor: dw,
			edit: func(v []float64, rng *rand.Rand) {
				for i := range v {
					v[i] = (2*rng.Float64() - 1) / 9
				}
			},
			problems: []string{mismatch},
			outputs:  true,
		},
		{
			name: "depthwise filters NaN", model: convmixer, tensor: dw,
			edit: func(v []float64, _ *rand.Rand) { v[5] = math.NaN() },
			problems: []string{mismatch + ": filters hold NaN or Inf",
				`output "logits" of the rewritten model holds NaN or Inf`},
			outputs: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := breakRewrite(t, tt.model, tt.tensor, tt.edit)
			opts := CheckOptions{Run: true, Expectation: closedFormExpectation{closedForm(t)}}
			rep, err := Check(tt.model, out, opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatalf("Check passed, want it to fail")
			}
			all := strings.Join(rep.Problems, "\n")
			t.Logf("problems:\n%s", all)
			for _, p := range tt.problems {
				if !strings.Contains(all, p) {
					t.Errorf("no problem says %q", p)
				}
			}
			if tt.outputs && len(rep.Outputs) == 0 {
				t.Errorf("no outputs compared, want the models run")
			}
		})
	}
}

// TestCheckCannotRun checks a rewrite of a float64 model, which ONNX Runtime has no CPU Conv
// kernel for: the report says so, naming the model and the operator, and the rewritten
// file is left alone.
func TestCheckCannotRun(t *testing.T) {
	t.Parallel()
	model := modelsDir + "/fixtures/03b_storage_double.onnx"
	rep, out := checkRewrite(t, model, nil)
	sum := testutil.SHA256(t, out)
	if rep.OK() {
		t.Fatal("Check passed, want a problem: ONNX Runtime cannot run the model")
	}
	if len(rep.Problems) != 1 {
		t.Errorf("problems %q, want one", rep.Problems)
	}
	p := rep.Problems[0]
	t.Log(p)
	for _, want := range []string{"cannot run the original model", "03b_storage_double.onnx", "Conv"} {
		if !strings.Contains(p, want) {
			t.Errorf("problem %q does not say %q", p, want)
		}
	}
	if len(rep.Structure.Differences) != 0 || len(rep.Structure.Changed) != 2 {
		t.Errorf("structure: differences %v, %d changed; want none and 2",
			rep.Structure.Differences, len(rep.Structure.Changed))
	}
	if got := testutil.SHA256(t, out); got != sum {
		t.Errorf("the rewritten file changed during Check")
	}
}

// TestCheckWithoutRuntime asks for a library that is not there: the report says the models
// were not run, so that a rewrite never passes unproven.
func TestCheckWithoutRuntime(t *testing.T) {
	t.Parallel()
	model := casesDir + "/01_mobilenet_baseline.onnx"
	openRuntime(t, Options{}) // skip without the library
	out := filepath.Join(t.TempDir(), "out.onnx")
	rewriteModel(t, model, out, closedForm(t))
	rep, err := Check(model, out, CheckOptions{Run: true, Runtime: Options{Lib: "/nonexistent/" + LibraryName}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "not run") ||
		!strings.Contains(rep.Problems[0], "make ort") {
		t.Errorf("problems %q, want one that says the models were not run and how to get ONNX Runtime", rep.Problems)
	}

	// Without Run, the structure and fidelity alone decide.
	rep, err = Check(model, out, CheckOptions{Expectation: closedFormExpectation{closedForm(t)}})
	if err != nil || !rep.OK() || rep.Outputs != nil || rep.Runtime != "" {
		t.Errorf("Check without Run: %+v, %v; want OK, with nothing run", rep, err)
	}
}

func TestCheckErrors(t *testing.T) {
	t.Parallel()
	model := casesDir + "/01_mobilenet_baseline.onnx"
	dir := t.TempDir()
	text := filepath.Join(dir, "text.onnx")
	if err := os.WriteFile(text, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                string
		original, rewritten string
		wantErr             string
		malformed           bool // wraps onnxio.ErrMalformed
	}{
		{
			name: "original missing", original: filepath.Join(dir, "nope.onnx"), rewritten: model,
			wantErr: "nope.onnx",
		},
		{
			name: "rewritten missing", original: model, rewritten: filepath.Join(dir, "gone.onnx"),
			wantErr: "gone.onnx",
		},
		{
			name: "rewritten not a model", original: model, rewritten: text,
			wantErr: "text.onnx", malformed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep, err := Check(tt.original, tt.rewritten, CheckOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check = %v, %v; want an error naming %s", rep, err, tt.wantErr)
			}
			if tt.malformed && !errors.Is(err, onnxio.ErrMalformed) {
				t.Errorf("error %q does not wrap onnxio.ErrMalformed", err)
			}
		})
	}
}
