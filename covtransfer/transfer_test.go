package covtransfer

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/verify"
)

// target is the distribution a Source gives each layer, as verify's Expectation.
type target struct{ src *Source }

func (t target) Target(l *graphscan.Layer) (*verify.Target, error) {
	d, err := t.src.Distribution(l)
	if err != nil {
		return nil, err
	}
	return verify.TargetOf(d.Projection.Cov, d.Projection.Factor, d.Mean, 1), nil
}

// transferFile transfers bank into the model at in and writes it to out.
func transferFile(t *testing.T, bank *Bank, in, out string, opts Options) (*Source, *inject.Report) {
	t.Helper()
	m, err := onnxio.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	scan, err := graphscan.Scan(m)
	if err != nil {
		t.Fatal(err)
	}
	opts.Layers = len(scan.Layers)
	src, err := NewSource(bank, opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := inject.Apply(m, scan, src, inject.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(out); err != nil {
		t.Fatal(err)
	}
	return src, rep
}

// TestTransferBack: a bank harvested from the trained ConvMixer, transferred back into the
// same model, gives filters whose empirical covariance matches the bank's, as
// verify.CheckFidelity judges it at the level verify uses for a model of 4 layers.
func TestTransferBack(t *testing.T) {
	t.Parallel()
	in := modelPath(t, "models/convmixer_digits_d64_l4_k9.onnx")
	bank, _ := harvestFile(t, in, "convmixer")
	for _, opts := range []Options{{}, {WithMean: true}} {
		out := filepath.Join(t.TempDir(), "back.onnx")
		_, rep := transferFile(t, bank, in, out, opts)
		if rep.Rewritten != 4 {
			t.Fatalf("rewrote %d layers, want 4", rep.Rewritten)
		}
		back, _ := harvestFile(t, out, "back")
		for j, e := range back.Entries {
			src := bank.Entries[j]
			if want := "bank: depth interpolation of 4 layers (9x9)"; !strings.HasPrefix(rep.Layers[j].Note, want) {
				t.Errorf("layer %d: note %q, want %q", j+1, rep.Layers[j].Note, want)
			}
			// Each layer sits on a bank layer's depth: its target is that layer's covariance.
			p, err := inject.Project(src.Cov())
			if err != nil {
				t.Fatal(err)
			}
			var mean []float64
			if opts.WithMean {
				mean = src.Mean()
			}
			f, err := verify.CheckFidelity(e.Filters, e.Count, verify.TargetOf(p.Cov, p.Factor, mean, 1), verify.Roundoff(onnxio.Float), verify.DefaultLevel/4)
			if err != nil {
				t.Fatal(err)
			}
			if !f.OK {
				t.Errorf("with mean %v, layer %d: %s (error %.3g, expected %.3g)", opts.WithMean, j+1, f.Problem, f.RelFrobenius, f.Expected)
			}
		}
	}
}

// openORT skips the test when ONNX Runtime is missing, except under CI=true.
func openORT(t *testing.T) {
	t.Helper()
	rt, err := verify.Open(verify.Options{})
	if errors.Is(err, verify.ErrNoRuntime) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true, but ONNX Runtime is not available (run make ort first): %v", err)
		}
		t.Skipf("ONNX Runtime not available, run make ort: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	rt.Close()
}

// TestRealUse harvests the trained ConvMixer (4 layers, 9x9) and transfers it into a deeper
// ConvMixer with 9x9 kernels (depth interpolation 4 to 8), one with 7x7 kernels (4.4 as
// well), and the real BlazeFace detector (3x3); each result passes verify.Check: structure,
// fidelity against the bank's distribution, and a run in ONNX Runtime.
func TestRealUse(t *testing.T) {
	t.Parallel()
	openORT(t)
	bank, _ := harvestFile(t, modelPath(t, "models/convmixer_digits_d64_l4_k9.onnx"), "convmixer")
	tests := []struct {
		name, model string
		opts        Options
		layers      int
		note        *regexp.Regexp
	}{
		{"deeper 9x9", "models/fixtures/13a_convmixer_d8_k9.onnx", Options{}, 8, regexp.MustCompile(`^bank: depth interpolation of 4 layers \(9x9\)$`)},
		{"7x7", "models/fixtures/13b_convmixer_d12_k7.onnx", Options{}, 12, regexp.MustCompile(`^bank: 9x9 to 7x7 filter-size transfer`)},
		{"BlazeFace 3x3", "models/face_detection_front_128x128_barracuda.onnx", Options{}, 16, regexp.MustCompile(`^bank: 9x9 to 3x3 filter-size transfer`)},
		{"7x7 Kronecker, centres, mean", "models/fixtures/13b_convmixer_d12_k7.onnx",
			Options{Kronecker: true, Align: AlignCentres, WithMean: true}, 12, regexp.MustCompile(`Kronecker factor A⊗A, with mean$`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := modelPath(t, tc.model)
			out := filepath.Join(t.TempDir(), "out.onnx")
			src, rep := transferFile(t, bank, in, out, tc.opts)
			if rep.Rewritten != tc.layers {
				t.Errorf("rewrote %d layers, want %d", rep.Rewritten, tc.layers)
			}
			for _, lr := range rep.Layers {
				if !tc.note.MatchString(lr.Note) {
					t.Errorf("node %s: note %q, want %v", lr.Layer.Label(), lr.Note, tc.note)
				}
			}
			vr, err := verify.Check(in, out, verify.CheckOptions{Run: true, Expectation: target{src}})
			if err != nil {
				t.Fatal(err)
			}
			if !vr.OK() {
				t.Errorf("verify: %q", vr.Problems)
			}
			for _, lc := range vr.Layers {
				if !lc.Rewritten || lc.Fidelity == nil {
					t.Errorf("node %s: rewritten %v, fidelity %v", lc.Layer.Label(), lc.Rewritten, lc.Fidelity)
				}
			}
		})
	}
}

// TestDirect copies filters into the same architecture and refuses others.
func TestDirect(t *testing.T) {
	t.Parallel()
	in := modelPath(t, "models/convmixer_digits_d64_l4_k9.onnx")
	bank, _ := harvestFile(t, in, "convmixer")
	load := func(path string) (*onnxio.Model, *graphscan.Result) {
		m, err := onnxio.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		scan, err := graphscan.Scan(m)
		if err != nil {
			t.Fatal(err)
		}
		return m, scan
	}

	m, scan := load(in)
	rep, entries, err := Direct(m, scan, bank, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rewritten != 4 || entries[3] != bank.Entries[3] {
		t.Errorf("rewrote %d layers, want 4 from the bank's entries", rep.Rewritten)
	}
	for k := range scan.Layers {
		got, err := m.Values(scan.Layers[k].Tensor)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != bank.Entries[k].Filters[i] {
				t.Fatalf("layer %d: value %d is %g, want the source's %g", k+1, i, v, bank.Entries[k].Filters[i])
			}
		}
	}

	for _, tc := range []struct{ model, want string }{
		{"models/fixtures/13a_convmixer_d8_k9.onnx", "4 depthwise layers, the target has 8"},
		{"cases/01_mobilenet_baseline.onnx", "4 depthwise layers, the target has 3"},
	} {
		m, scan := load(modelPath(t, tc.model))
		_, _, err := Direct(m, scan, bank, nil)
		if !errors.Is(err, ErrArchitecture) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrArchitecture saying %q", tc.model, err, tc.want)
		}
	}
	// Same depth and kernels, other filter counts.
	other, _ := harvestFile(t, modelPath(t, "models/fixtures/13a_convmixer_d8_k9.onnx"), "13a")
	m, scan = load(in)
	shrunk := &Bank{Models: []Model{{Source: "13a", Layers: 4}}}
	for i, e := range other.Entries[:4] {
		c := e.clone()
		c.Index, c.Layers = i+1, 4
		shrunk.Entries = append(shrunk.Entries, c)
	}
	if _, _, err := Direct(m, scan, shrunk, nil); !errors.Is(err, ErrArchitecture) || !strings.Contains(err.Error(), "8 filters in the bank, target node /3/3.0/fn/fn.0/Conv has 64") {
		t.Errorf("other filter counts: got %v", err)
	}
	// Two models that both match: refused, naming them.
	twice, err := Merge(bank, renamed(bank, "copy"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Direct(m, scan, twice, nil); !errors.Is(err, ErrArchitecture) || !strings.Contains(err.Error(), "2 models of the bank match") {
		t.Errorf("two matching models: got %v", err)
	}
}

// renamed returns a copy of b with every source renamed.
func renamed(b *Bank, source string) *Bank {
	out := &Bank{}
	for _, m := range b.Models {
		out.Models = append(out.Models, Model{Source: source, Layers: m.Layers})
	}
	for _, e := range b.Entries {
		c := e.clone()
		c.Source = source
		out.Entries = append(out.Entries, c)
	}
	return out
}
