package inject_test

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
)

const convmixer = "../testdata/models/convmixer_digits_d64_l4_k9.onnx"

// applyValues runs Apply on a fresh load of path and returns every rewritten tensor's values
// by tensor name.
func applyValues(t *testing.T, path string, src inject.Source, opts inject.Options) (map[string][]float64, *inject.Report) {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	scan, err := graphscan.Scan(m)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := inject.Apply(m, scan, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float64{}
	for _, lr := range rep.Layers {
		if lr.Action == inject.ActionRewrite {
			v, err := m.Values(lr.Layer.Tensor)
			if err != nil {
				t.Fatal(err)
			}
			out[lr.Layer.TensorName] = v
		}
	}
	return out, rep
}

func thawed() *inject.ClosedFormSource {
	s, _ := inject.Preset(inject.DefaultPreset)
	return &inject.ClosedFormSource{Schedule: s}
}

func TestApplyDeterministic(t *testing.T) {
	t.Parallel()
	one, _ := applyValues(t, convmixer, thawed(), inject.Options{Seed: 7, Workers: 1})
	four, _ := applyValues(t, convmixer, thawed(), inject.Options{Seed: 7, Workers: 4})
	other, _ := applyValues(t, convmixer, thawed(), inject.Options{Seed: 8})
	if len(one) != 4 {
		t.Fatalf("rewrote %d tensors, want 4", len(one))
	}
	for name, v := range one {
		if !slices.Equal(v, four[name]) {
			t.Errorf("%s: 1 and 4 workers give different values", name)
		}
		if slices.Equal(v, other[name]) {
			t.Errorf("%s: seeds 7 and 8 give the same values", name)
		}
	}
}

// TestApplyOnlyKeepsStreams checks that a layer's filters do not depend on which other
// layers are rewritten, and that --only leaves the others untouched.
func TestApplyOnlyKeepsStreams(t *testing.T) {
	t.Parallel()
	all, _ := applyValues(t, convmixer, thawed(), inject.Options{Seed: 3})
	only, rep := applyValues(t, convmixer, thawed(), inject.Options{Seed: 3, Only: regexp.MustCompile(`^5\.0\.fn`)})
	if len(only) != 1 || !slices.Equal(only["5.0.fn.0.weight"], all["5.0.fn.0.weight"]) {
		t.Errorf("--only rewrote %d tensors; want only 5.0.fn.0.weight with the values of the full run", len(only))
	}
	if rep.Rewritten != 1 {
		t.Errorf("Rewritten = %d, want 1", rep.Rewritten)
	}
	for _, lr := range rep.Layers {
		if lr.Action == inject.ActionSkip && !strings.Contains(lr.Reason, "--only") {
			t.Errorf("%s: skip reason %q does not mention --only", lr.Layer.Label(), lr.Reason)
		}
	}
}

func TestApplyScale(t *testing.T) {
	t.Parallel()
	base, _ := applyValues(t, convmixer, thawed(), inject.Options{Seed: 1})
	half, _ := applyValues(t, convmixer, thawed(), inject.Options{Seed: 1, Scale: 0.5})
	for name, v := range base {
		for i := range v {
			// Halving is exact in float32, so the stored values halve exactly, unless
			// they fall into the subnormal range (they do not here).
			if half[name][i] != v[i]/2 {
				t.Fatalf("%s[%d]: %g at scale 0.5, want %g", name, i, half[name][i], v[i]/2)
			}
		}
	}
}

// TestApplyFilterVariance checks the rewritten filters of a model against the closed form:
// the centre tap's variance over all layers' filters is near 0.5, as the paper's literal
// scale gives for every kernel and σ.
func TestApplyFilterVariance(t *testing.T) {
	t.Parallel()
	values, _ := applyValues(t, convmixer, thawed(), inject.Options{Seed: 11})
	var sum, sumSq float64
	n := 0
	for _, v := range values {
		for j := 0; j+81 <= len(v); j += 81 {
			x := v[j+40] // tap (4, 4), the centre of a 9x9 filter
			sum += x
			sumSq += x * x
			n++
		}
	}
	variance := sumSq/float64(n) - (sum/float64(n))*(sum/float64(n))
	// 256 draws: the variance's standard error is about 0.5·√(2/256) ≈ 0.044; allow 4 of them.
	if math.Abs(variance-0.5) > 0.18 {
		t.Errorf("centre-tap variance over %d filters = %.3f, want 0.5 within 0.18", n, variance)
	}
}

func TestApplyNonPositiveSigma(t *testing.T) {
	t.Parallel()
	m, err := onnxio.Load(convmixer)
	if err != nil {
		t.Fatal(err)
	}
	scan, err := graphscan.Scan(m)
	if err != nil {
		t.Fatal(err)
	}
	src := &inject.ClosedFormSource{Schedule: inject.Schedule{Sigma0: 0.5, V: -2}}
	_, err = inject.Apply(m, scan, src, inject.Options{})
	// σ(1/3) = 0.5 − 2/3 < 0: the second layer is the first whose σ is not positive.
	if err == nil || !strings.Contains(err.Error(), "/4/4.0/fn/fn.0/Conv") {
		t.Errorf("Apply with σ going negative: %v, want an error naming the first such node", err)
	}
	for _, tensor := range m.Tensors() {
		if m.Changed(tensor) {
			t.Errorf("tensor %q was changed by a failed Apply", tensor.GetName())
		}
	}
}

func ExampleApply() {
	m, err := onnxio.Load("../testdata/models/convmixer_digits_d64_l4_k9.onnx")
	if err != nil {
		fmt.Println(err)
		return
	}
	scan, err := graphscan.Scan(m)
	if err != nil {
		fmt.Println(err)
		return
	}
	schedule, _ := inject.Preset("imagenet-thawed")
	report, err := inject.Apply(m, scan, &inject.ClosedFormSource{Schedule: schedule}, inject.Options{Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, lr := range report.Layers {
		fmt.Printf("%s: %s %d filters at σ %.4f\n", lr.Layer.Label(), lr.Action, lr.Filters, lr.Sigma)
	}
	// Then: m.Save("model_init.onnx")

	// Output:
	// /3/3.0/fn/fn.0/Conv: rewrite 64 filters at σ 0.1500
	// /4/4.0/fn/fn.0/Conv: rewrite 64 filters at σ 0.2889
	// /5/5.0/fn/fn.0/Conv: rewrite 64 filters at σ 0.5389
	// /6/6.0/fn/fn.0/Conv: rewrite 64 filters at σ 0.9000
}
