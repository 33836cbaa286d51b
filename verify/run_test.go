package verify

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

const modelsDir = "../testdata/models"

func TestCompare(t *testing.T) {
	t.Parallel()
	inf, nan := math.Inf(1), math.NaN()
	tensor := func(name string, shape []int64, v ...float64) Tensor {
		return Tensor{Name: name, Type: onnxpb.TensorProto_FLOAT, Shape: shape, Values: v}
	}
	tests := []struct {
		name string
		a, b []Tensor
		want []OutputDiff
	}{
		{
			name: "equal",
			a:    []Tensor{tensor("y", []int64{2}, 1, -2)},
			b:    []Tensor{tensor("y", []int64{2}, 1, -2)},
			want: []OutputDiff{{Name: "y", ShapeA: []int64{2}, ShapeB: []int64{2},
				SameShape: true, Finite: true}},
		},
		{
			name: "differences",
			a:    []Tensor{tensor("y", []int64{2, 2}, 1, 2, 0, 4)},
			b:    []Tensor{tensor("y", []int64{2, 2}, 1.5, 2, 0, -4)},
			want: []OutputDiff{{Name: "y", ShapeA: []int64{2, 2}, ShapeB: []int64{2, 2},
				SameShape: true, MaxAbs: 8, MaxRel: 2, Finite: true}},
		},
		{
			name: "to zero",
			a:    []Tensor{tensor("y", []int64{1}, 0.25)},
			b:    []Tensor{tensor("y", []int64{1}, 0)},
			want: []OutputDiff{{Name: "y", ShapeA: []int64{1}, ShapeB: []int64{1},
				SameShape: true, MaxAbs: 0.25, MaxRel: 1, Finite: true}},
		},
		{
			name: "not finite",
			a:    []Tensor{tensor("y", []int64{3}, 1, inf, 2)},
			b:    []Tensor{tensor("y", []int64{3}, nan, inf, 2)},
			want: []OutputDiff{{Name: "y", ShapeA: []int64{3}, ShapeB: []int64{3},
				SameShape: true, MaxAbs: inf, MaxRel: inf}},
		},
		{
			name: "shapes differ",
			a:    []Tensor{tensor("y", []int64{2, 1}, 1, 2)},
			b:    []Tensor{tensor("y", []int64{1, 2}, 1, 2)},
			want: []OutputDiff{{Name: "y", ShapeA: []int64{2, 1}, ShapeB: []int64{1, 2},
				Finite: true}},
		},
		{
			name: "scalars",
			a:    []Tensor{tensor("s", []int64{}, 3)},
			b:    []Tensor{tensor("s", []int64{}, 3)},
			want: []OutputDiff{{Name: "s", ShapeA: []int64{}, ShapeB: []int64{},
				SameShape: true, Finite: true}},
		},
		{
			name: "matched by name, missing on either side",
			a:    []Tensor{tensor("p", []int64{1}, 1), tensor("q", []int64{1}, 2)},
			b:    []Tensor{tensor("r", []int64{1}, 3), tensor("p", []int64{1}, 1)},
			want: []OutputDiff{
				{Name: "p", ShapeA: []int64{1}, ShapeB: []int64{1}, SameShape: true, Finite: true},
				{Name: "q", ShapeA: []int64{1}, Missing: true},
				{Name: "r", ShapeB: []int64{1}, Missing: true, Finite: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Compare(tt.a, tt.b)
			if !slices.EqualFunc(got, tt.want, equalDiffs) {
				t.Errorf("Compare:\ngot  %+v\nwant %+v", got, tt.want)
			}
			for i := range got {
				wantOK := !tt.want[i].Missing && tt.want[i].SameShape && tt.want[i].Finite
				if got[i].OK() != wantOK {
					t.Errorf("output %q: OK() = %v, want %v", got[i].Name, got[i].OK(), wantOK)
				}
			}
		})
	}
}

func equalDiffs(a, b OutputDiff) bool {
	return a.Name == b.Name && slices.Equal(a.ShapeA, b.ShapeA) && slices.Equal(a.ShapeB, b.ShapeB) &&
		a.Missing == b.Missing && a.SameShape == b.SameShape && a.MaxAbs == b.MaxAbs &&
		a.MaxRel == b.MaxRel && a.Finite == b.Finite
}

func TestMakeInputs(t *testing.T) {
	t.Parallel()
	silero := filepath.Join(modelsDir, "silero_vad_legacy.onnx")
	tests := []struct {
		name  string
		model string
		dims  map[string]int64
		want  map[string][]int64 // input name -> shape
	}{
		{
			name:  "symbolic dims default to 1",
			model: silero,
			want: map[string][]int64{"input": {1, 1}, "sr": {}, "h": {2, 1, 64},
				"c": {2, 1, 64}},
		},
		{
			name:  "symbolic dims from Dims",
			model: silero,
			dims:  map[string]int64{"batch": 3, "sequence": 512},
			want: map[string][]int64{"input": {3, 512}, "sr": {}, "h": {2, 3, 64},
				"c": {2, 3, 64}},
		},
		{
			name:  "NHWC",
			model: filepath.Join(modelsDir, "face_detection_front_128x128_barracuda.onnx"),
			want:  map[string][]int64{"input:0": {1, 128, 128, 3}},
		},
		{
			name:  "float16",
			model: filepath.Join(modelsDir, "convmixer_digits_k9_fp16.onnx"),
			dims:  map[string]int64{"N": 5},
			want:  map[string][]int64{"input": {5, 1, 8, 8}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inputs, err := makeInputs(tt.model, tt.dims, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(inputs) != len(tt.want) {
				t.Fatalf("got %d inputs, want %d", len(inputs), len(tt.want))
			}
			for _, in := range inputs {
				want, ok := tt.want[in.Name]
				if !ok || !slices.Equal(in.Shape, want) {
					t.Errorf("input %q: shape %v, want %v", in.Name, in.Shape, want)
				}
				if err := in.check(); err != nil {
					t.Errorf("input %q: %v", in.Name, err)
				}
				checkRepresentable(t, in)
			}
		})
	}
}

// checkRepresentable checks that in's values are exact in its element type, and that integers
// are small and non-negative.
func checkRepresentable(t *testing.T, in Tensor) {
	t.Helper()
	for _, x := range in.Values {
		var ok bool
		switch in.Type {
		case onnxpb.TensorProto_FLOAT:
			ok = float64(float32(x)) == x
		case onnxpb.TensorProto_FLOAT16:
			ok = onnxio.Float16Value(onnxio.Float16Bits(x)) == x
		case onnxpb.TensorProto_BOOL:
			ok = x == 0 || x == 1
		default:
			ok = x == math.Trunc(x) && x >= 0 && x < maxRandomInt
		}
		if !ok {
			t.Fatalf("input %q (%v): value %v is not a value verify should make", in.Name, in.Type, x)
		}
	}
}

func TestMakeInputsSeeded(t *testing.T) {
	t.Parallel()
	model := filepath.Join(modelsDir, "silero_vad_legacy.onnx")
	dims := map[string]int64{"sequence": 64}
	a, err := makeInputs(model, dims, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := makeInputs(model, dims, 7)
	c, _ := makeInputs(model, dims, 8)
	for i := range a {
		if !slices.Equal(a[i].Values, b[i].Values) {
			t.Errorf("input %q: same seed, different values", a[i].Name)
		}
		if len(a[i].Values) > 1 && slices.Equal(a[i].Values, c[i].Values) {
			t.Errorf("input %q: seeds 7 and 8 gave the same values", a[i].Name)
		}
	}
}

func TestMakeInputsErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
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
	stringInput := write("string.onnx", modelWithInput(tensorInput("text", onnxpb.TensorProto_STRING, 1)))
	noShape := write("noshape.onnx", modelWithInput(&onnxpb.ValueInfoProto{
		Name: proto.String("x"),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
		}}},
	}))
	sequence := write("sequence.onnx", modelWithInput(&onnxpb.ValueInfoProto{
		Name: proto.String("seq"),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_SequenceType{}},
	}))
	noGraph := write("nograph.onnx", &onnxpb.ModelProto{IrVersion: proto.Int64(8)})
	empty := filepath.Join(dir, "empty.onnx")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		model   string
		dims    map[string]int64
		wantErr []string
		notGo   bool // wraps onnxio.ErrMalformed
	}{
		{name: "string input", model: stringInput, wantErr: []string{"string.onnx", `"text"`, "STRING"}},
		{name: "no shape", model: noShape, wantErr: []string{`"x"`, "no shape"}},
		{name: "sequence input", model: sequence, wantErr: []string{`"seq"`, "not a tensor"}},
		{name: "unknown dim name", model: filepath.Join(modelsDir, "convmixer_digits_d64_l4_k9.onnx"),
			dims: map[string]int64{"batch": 2}, wantErr: []string{`"batch"`, `"N"`}},
		{name: "missing file", model: filepath.Join(dir, "nope.onnx"), wantErr: []string{"nope.onnx", "no such file"}},
		{name: "text file", model: "../go.mod", wantErr: []string{"go.mod", "not a valid ONNX"}, notGo: true},
		{name: "empty file", model: empty, wantErr: []string{"empty.onnx", "empty"}, notGo: true},
		{name: "no graph", model: noGraph, wantErr: []string{"nograph.onnx", "no graph"}},
		{name: "folder", model: dir, wantErr: []string{"not a regular file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := makeInputs(tt.model, tt.dims, 0)
			t.Log(err)
			if err == nil {
				t.Fatalf("makeInputs(%s) succeeded, want an error", tt.model)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
			if tt.notGo && !errors.Is(err, onnxio.ErrMalformed) {
				t.Errorf("error %q does not wrap onnxio.ErrMalformed", err)
			}
			if n := strings.Count(err.Error(), filepath.Base(tt.model)); n != 1 {
				t.Errorf("error %q names the model %d times, want once", err, n)
			}
		})
	}
}

func TestReadSignatureSkipsInitializers(t *testing.T) {
	t.Parallel()
	// Older exporters list initializers among the graph inputs; those are not inputs to feed.
	m := modelWithInput(tensorInput("x", onnxpb.TensorProto_FLOAT, 1, 4))
	m.Graph.Input = append(m.Graph.Input, tensorInput("w", onnxpb.TensorProto_FLOAT, 4),
		tensorInput("s", onnxpb.TensorProto_FLOAT, 4))
	m.Graph.Initializer = []*onnxpb.TensorProto{{Name: proto.String("w"), Dims: []int64{4},
		DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), RawData: make([]byte, 16)}}
	m.Graph.SparseInitializer = []*onnxpb.SparseTensorProto{{Values: &onnxpb.TensorProto{
		Name: proto.String("s")}}}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sig, err := readSignature(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, vi := range sig.inputs {
		names = append(names, vi.GetName())
	}
	if !slices.Equal(names, []string{"x"}) {
		t.Errorf("inputs %q, want [x]", names)
	}
	if len(sig.outputs) != 1 || sig.outputs[0].GetName() != "y" {
		t.Errorf("outputs %v, want [y]", sig.outputs)
	}
}

// modelWithInput returns a model whose graph has input in and one float output "y"; it has no
// nodes, which is enough for reading signatures.
func modelWithInput(in *onnxpb.ValueInfoProto) *onnxpb.ModelProto {
	return &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name:   proto.String("g"),
			Input:  []*onnxpb.ValueInfoProto{in},
			Output: []*onnxpb.ValueInfoProto{tensorInput("y", onnxpb.TensorProto_FLOAT, 1)},
		},
	}
}

// tensorInput returns the ValueInfoProto of a tensor with fixed dims.
func tensorInput(name string, typ onnxpb.TensorProto_DataType, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{
			Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(typ)),
			Shape:    shape,
		}}},
	}
}
