//go:build cgo

package verify

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// These tests run real models in ONNX Runtime. Without the library (make ort) they skip on a
// developer's machine, and fail under CI=true, where the library must be there.

// openRuntime opens a Runtime with opts, or skips the test when ONNX Runtime is missing.
func openRuntime(t *testing.T, opts Options) *Runtime {
	t.Helper()
	r, err := Open(opts)
	if errors.Is(err, ErrNoRuntime) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true, but ONNX Runtime is not available (run make ort first): %v", err)
		}
		t.Skipf("ONNX Runtime not available, run make ort: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// readRaw reads a file of little-endian numbers; T is float32 or int64.
func readRaw[T float32 | int64](t *testing.T, name string, count int) []float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(modelsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var zero T
	size := binary.Size(zero)
	if len(b) != count*size {
		t.Fatalf("%s: %d bytes, want %d values of %d bytes", name, len(b), count, size)
	}
	v := make([]float64, count)
	for i := range v {
		switch any(zero).(type) {
		case float32:
			v[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		case int64:
			v[i] = float64(int64(binary.LittleEndian.Uint64(b[8*i:])))
		}
	}
	return v
}

// TestDigitsLogits proves that inputs go in and outputs come out in the right order: the
// trained ConvMixer, run in ONNX Runtime on the 297 digits test images, gives torch's logits.
func TestDigitsLogits(t *testing.T) {
	t.Parallel()
	const n, classes = 297, 10
	r := openRuntime(t, Options{})
	model := filepath.Join(modelsDir, "convmixer_digits_d64_l4_k9.onnx")
	inputs, err := r.Inputs(model)
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) != 1 {
		t.Fatalf("%d inputs, want 1", len(inputs))
	}
	inputs[0].Shape = []int64{n, 1, 8, 8}
	inputs[0].Values = readRaw[float32](t, "digits_test_X_297x1x8x8.f32", n*64)
	want := readRaw[float32](t, "convmixer_digits_d64_l4_k9_logits_297x10.f32", n*classes)
	labels := readRaw[int64](t, "digits_test_y_297.i64", n)

	out, err := r.Run(model, inputs)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || !slices.Equal(out[0].Shape, []int64{n, classes}) {
		t.Fatalf("outputs %v, want one of shape [%d %d]", out, n, classes)
	}
	logits := out[0].Values

	// torch and ONNX Runtime sum in different orders; float32 logits of size ~10 agree to
	// about 1e-4, so 1e-3 leaves room without hiding a misplaced element.
	const tol = 1e-3
	maxDiff := 0.0
	for i := range want {
		maxDiff = max(maxDiff, math.Abs(logits[i]-want[i]))
	}
	if maxDiff > tol {
		t.Errorf("largest |onnx runtime - torch| logit difference %g, want <= %g", maxDiff, tol)
	}
	correct := 0
	for i := range n {
		row := logits[i*classes : (i+1)*classes]
		if float64(slices.Index(row, slices.Max(row))) == labels[i] {
			correct++
		}
	}
	if acc := float64(correct) / n; acc < 0.99 {
		t.Errorf("accuracy %d/%d = %.4f, want >= 0.99", correct, n, acc)
	}
	t.Logf("max |diff| %.2g, accuracy %d/%d", maxDiff, correct, n)
}

// TestRealModels runs every real model on random inputs: all outputs come back with their
// declared shapes and finite values.
func TestRealModels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		model string
		dims  map[string]int64
		want  map[string][]int64 // output name -> shape
	}{
		{
			model: "face_detection_front_128x128_barracuda.onnx",
			want: map[string][]int64{"Identity:0": {1, 512, 1}, "Identity_1:0": {1, 384, 1},
				"Identity_2:0": {1, 512, 16}, "Identity_3:0": {1, 384, 16}},
		},
		{
			model: "face_detection_back_256x256_barracuda.onnx",
			want: map[string][]int64{"Identity:0": {1, 512, 1}, "Identity_1:0": {1, 384, 1},
				"Identity_2:0": {1, 512, 16}, "Identity_3:0": {1, 384, 16}},
		},
		{
			model: "ch_ppocr_mobile_v2.0_cls_infer.onnx",
			dims: map[string]int64{"p2o.DynamicDimension.0": 2, "p2o.DynamicDimension.1": 48,
				"p2o.DynamicDimension.2": 192},
			want: map[string][]int64{"softmax_0.tmp_0": {2, 2}},
		},
		{
			// The STFT inside needs at least 256 samples; sr is an int64 scalar.
			model: "silero_vad_legacy.onnx",
			dims:  map[string]int64{"batch": 2, "sequence": 512},
			want:  map[string][]int64{"output": {2, 1}, "hn": {2, 2, 64}, "cn": {2, 2, 64}},
		},
		{
			model: "convmixer_digits_d64_l4_k9.onnx",
			dims:  map[string]int64{"N": 3},
			want:  map[string][]int64{"logits": {3, 10}},
		},
		{
			model: "convmixer_digits_k9_fp16weights.onnx",
			dims:  map[string]int64{"N": 3},
			want:  map[string][]int64{"logits": {3, 10}},
		},
		{
			// float16 input and output.
			model: "convmixer_digits_k9_fp16.onnx",
			dims:  map[string]int64{"N": 3},
			want:  map[string][]int64{"logits": {3, 10}},
		},
		{
			// Weights in an external data file next to the model.
			model: "../cases/10_external_data/model.onnx",
			want:  map[string][]int64{"y": {1, 8, 16, 16}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			t.Parallel()
			r := openRuntime(t, Options{Dims: tt.dims, Seed: 1})
			model := filepath.Join(modelsDir, tt.model)
			inputs, err := r.Inputs(model)
			if err != nil {
				t.Fatal(err)
			}
			out, err := r.Run(model, inputs)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(tt.want) {
				t.Fatalf("%d outputs, want %d", len(out), len(tt.want))
			}
			for _, o := range out {
				if want := tt.want[o.Name]; !slices.Equal(o.Shape, want) {
					t.Errorf("output %q: shape %v, want %v", o.Name, o.Shape, want)
				}
				if err := o.check(); err != nil {
					t.Errorf("output %q: %v", o.Name, err)
				}
				if !allFinite(o.Values) {
					t.Errorf("output %q has values that are not finite", o.Name)
				}
			}
		})
	}
}

// TestDebianConv runs Debian's converted PyTorch Conv tests (depthwise and grouped) and
// compares with their recorded outputs.
func TestDebianConv(t *testing.T) {
	t.Parallel()
	dirs, err := filepath.Glob(filepath.Join(modelsDir, "debian", "test_*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no Debian test cases found: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			r := openRuntime(t, Options{})
			model := filepath.Join(dir, "model.onnx")
			inputs, err := r.Inputs(model)
			if err != nil {
				t.Fatal(err)
			}
			in := readTensorProto(t, filepath.Join(dir, "test_data_set_0", "input_0.pb"))
			want := readTensorProto(t, filepath.Join(dir, "test_data_set_0", "output_0.pb"))
			if len(inputs) != 1 || !slices.Equal(inputs[0].Shape, in.Shape) {
				t.Fatalf("model inputs %v, want one of shape %v", inputs, in.Shape)
			}
			inputs[0].Values = in.Values
			out, err := r.Run(model, inputs)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 1 || !slices.Equal(out[0].Shape, want.Shape) {
				t.Fatalf("outputs %v, want one of shape %v", out, want.Shape)
			}
			// Recorded in float32 by PyTorch; a small convolution agrees to a few ulps.
			const tol = 1e-5
			d := Compare([]Tensor{want}, []Tensor{{Name: want.Name, Shape: out[0].Shape,
				Values: out[0].Values}})
			if d[0].MaxAbs > tol || !d[0].Finite {
				t.Errorf("largest difference from output_0.pb %g, want <= %g", d[0].MaxAbs, tol)
			}
		})
	}
}

// readTensorProto reads a float32 TensorProto file of the ONNX backend tests.
func readTensorProto(t *testing.T, path string) Tensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tp onnxpb.TensorProto
	if err := proto.Unmarshal(b, &tp); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if tp.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
		t.Fatalf("%s: data type %d, want FLOAT", path, tp.GetDataType())
	}
	out := Tensor{Name: tp.GetName(), Type: onnxpb.TensorProto_FLOAT, Shape: tp.GetDims()}
	if raw := tp.GetRawData(); len(raw) > 0 {
		for i := 0; i+4 <= len(raw); i += 4 {
			out.Values = append(out.Values, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[i:]))))
		}
	} else {
		for _, x := range tp.GetFloatData() {
			out.Values = append(out.Values, float64(x))
		}
	}
	if err := out.check(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// TestCompareModels runs the ConvMixer and its float16 twins on the same inputs: same shapes,
// finite, and close, since only the precision changed. This also checks that float16 inputs
// are written and float16 outputs read correctly.
func TestCompareModels(t *testing.T) {
	t.Parallel()
	r := openRuntime(t, Options{Dims: map[string]int64{"N": 4}})
	original := filepath.Join(modelsDir, "convmixer_digits_d64_l4_k9.onnx")
	inputs, err := r.Inputs(original)
	if err != nil {
		t.Fatal(err)
	}
	want, err := r.Run(original, inputs)
	if err != nil {
		t.Fatal(err)
	}
	if d := Compare(want, want); len(d) != 1 || !d[0].OK() || d[0].MaxAbs != 0 {
		t.Errorf("model against itself: %+v, want OK with no difference", d)
	}

	tests := []struct {
		model  string
		maxAbs float64
	}{
		// Rounding the weights to float16 moves logits of size ~10 by about 1e-2, and
		// computing in float16 as well by about as much (measured: 0.013 and 0.009).
		{model: "convmixer_digits_k9_fp16weights.onnx", maxAbs: 0.05},
		{model: "convmixer_digits_k9_fp16.onnx", maxAbs: 0.05},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			t.Parallel()
			got, err := r.Run(filepath.Join(modelsDir, tt.model), inputs)
			if err != nil {
				t.Fatal(err)
			}
			d := Compare(want, got)
			if len(d) != 1 || !d[0].OK() || d[0].MaxAbs == 0 || d[0].MaxAbs > tt.maxAbs {
				t.Errorf("against the float32 model: %+v, want OK with 0 < MaxAbs <= %g", d, tt.maxAbs)
			}
			t.Logf("max |diff| %.3g, max rel %.3g", d[0].MaxAbs, d[0].MaxRel)
		})
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	r := openRuntime(t, Options{})
	dir := t.TempDir()
	digits := filepath.Join(modelsDir, "convmixer_digits_d64_l4_k9.onnx")
	good, err := r.Inputs(digits)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, m *onnxpb.ModelProto) string {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	conv64 := write("conv64.onnx", convModel(onnxpb.TensorProto_DOUBLE))
	unknown := convModel(onnxpb.TensorProto_FLOAT)
	unknown.Graph.Node[0].OpType = proto.String("NoSuchOp")
	unknownOp := write("unknown_op.onnx", unknown)
	conv64Inputs := []Tensor{{Name: "x", Shape: []int64{1, 2, 4, 4}, Values: make([]float64, 32)}}

	tests := []struct {
		name    string
		model   string
		inputs  []Tensor
		wantErr []string
	}{
		{name: "float64 Conv has no CPU kernel", model: conv64, inputs: conv64Inputs,
			wantErr: []string{"conv64.onnx", "cannot load", "Conv"}},
		{name: "unknown operator", model: unknownOp, inputs: conv64Inputs,
			wantErr: []string{"unknown_op.onnx", "cannot load", "NoSuchOp"}},
		{name: "not a model", model: "../go.mod", inputs: good,
			wantErr: []string{"go.mod", "not a valid ONNX"}},
		{name: "missing input", model: digits, inputs: nil,
			wantErr: []string{"convmixer_digits_d64_l4_k9.onnx", `input "input"`}},
		{name: "unknown input", model: digits,
			inputs:  append(slices.Clone(good), Tensor{Name: "extra", Shape: []int64{1}, Values: []float64{0}}),
			wantErr: []string{`no input "extra"`}},
		{name: "values do not fill the shape", model: digits,
			inputs:  []Tensor{{Name: "input", Shape: []int64{2, 1, 8, 8}, Values: good[0].Values}},
			wantErr: []string{`input "input"`, "needs 128 values, have 64"}},
		{name: "shape the model rejects", model: digits,
			inputs:  []Tensor{{Name: "input", Shape: []int64{1, 1, 4, 16}, Values: good[0].Values}},
			wantErr: []string{"convmixer_digits_d64_l4_k9.onnx", "cannot run", "input"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := r.Run(tt.model, tt.inputs)
			t.Log(err)
			if err == nil {
				t.Fatalf("Run(%s) succeeded, want an error", tt.model)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
			if errors.Is(err, ErrNoRuntime) {
				t.Errorf("error %q wraps ErrNoRuntime; the runtime is there", err)
			}
		})
	}
}

// convModel returns a model with one depthwise 3x3 Conv of element type typ on a
// [1, 2, 4, 4] input "x".
func convModel(typ onnxpb.TensorProto_DataType) *onnxpb.ModelProto {
	size := 4
	if typ == onnxpb.TensorProto_DOUBLE {
		size = 8
	}
	m := modelWithInput(tensorInput("x", typ, 1, 2, 4, 4))
	m.Graph.Output = []*onnxpb.ValueInfoProto{tensorInput("y", typ, 1, 2, 2, 2)}
	m.Graph.Initializer = []*onnxpb.TensorProto{{Name: proto.String("w"), Dims: []int64{2, 1, 3, 3},
		DataType: proto.Int32(int32(typ)), RawData: make([]byte, 18*size)}}
	m.Graph.Node = []*onnxpb.NodeProto{{
		OpType: proto.String("Conv"), Input: []string{"x", "w"}, Output: []string{"y"},
		Attribute: []*onnxpb.AttributeProto{{Name: proto.String("group"), I: proto.Int64(2),
			Type: onnxpb.AttributeProto_INT.Enum()}},
	}}
	return m
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	openRuntime(t, Options{}) // skip without the library

	tests := []struct {
		name    string
		opts    Options
		wantErr []string
		noRT    bool // wraps ErrNoRuntime
	}{
		{name: "unknown provider", opts: Options{EP: "rocm"}, wantErr: []string{`"rocm"`, "cpu"}},
		{name: "missing library", opts: Options{Lib: "/nonexistent/" + LibraryName},
			wantErr: []string{"/nonexistent/" + LibraryName, "make ort"}, noRT: true},
		{name: "another library in the same process", opts: Options{Lib: "../go.mod"},
			wantErr: []string{"already loaded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Open(tt.opts)
			t.Log(err)
			if err == nil {
				t.Fatalf("Open(%+v) succeeded, want an error", tt.opts)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
			if errors.Is(err, ErrNoRuntime) != tt.noRT {
				t.Errorf("errors.Is(%q, ErrNoRuntime) = %v, want %v", err, !tt.noRT, tt.noRT)
			}
		})
	}
}

// TestGPUProviders asks for CUDA and TensorRT. The library from make ort has neither, so
// Open must say so instead of running on the CPU; a library that has them must open.
func TestGPUProviders(t *testing.T) {
	t.Parallel()
	openRuntime(t, Options{}) // skip without the library
	for _, ep := range []string{EPCUDA, EPTensorRT} {
		t.Run(ep, func(t *testing.T) {
			r, err := Open(Options{EP: ep})
			if err == nil {
				if r.EP() != ep {
					t.Errorf("EP() = %q, want %q", r.EP(), ep)
				}
				t.Logf("%s is available in %s", ep, r.Lib())
				return
			}
			if !strings.Contains(err.Error(), "execution provider "+ep) || errors.Is(err, ErrNoRuntime) {
				t.Errorf("Open(EP: %s) = %v, want an error naming the provider", ep, err)
			}
		})
	}
}

// TestBadLibrary loads a file that is not a library. The environment can be made only once
// per process, so the test runs itself again in a child process that has not loaded ONNX
// Runtime yet.
func TestBadLibrary(t *testing.T) {
	t.Parallel()
	if os.Getenv("VERIFY_TEST_BAD_LIBRARY") == "1" {
		_, err := Open(Options{Lib: "../go.mod"})
		if !errors.Is(err, ErrNoRuntime) || !strings.Contains(err.Error(), "go.mod") ||
			!strings.Contains(err.Error(), "make ort") {
			t.Fatalf("Open(Lib: go.mod) = %v, want an error wrapping ErrNoRuntime that names "+
				"the file and says to run make ort", err)
		}
		t.Log(err)
		return
	}
	openRuntime(t, Options{}) // skip without the library
	cmd := exec.Command(os.Args[0], "-test.run=^TestBadLibrary$", "-test.v")
	cmd.Env = append(os.Environ(), "VERIFY_TEST_BAD_LIBRARY=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
}
