package verify

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// Tensor is a named tensor that a model takes or returns. Values hold its elements in
// row-major order, widened to float64 whatever Type is; integers beyond 2^53 lose precision.
// A scalar has an empty Shape and one value.
type Tensor struct {
	Name   string
	Type   onnxpb.TensorProto_DataType
	Shape  []int64
	Values []float64
}

// numel returns the element count that t.Shape implies, or -1 when a dimension is negative.
func (t *Tensor) numel() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return -1
		}
		n *= d
	}
	return n
}

// check reports a tensor whose values do not fill its shape.
func (t *Tensor) check() error {
	if n := t.numel(); n != int64(len(t.Values)) {
		return fmt.Errorf("shape %v needs %d values, have %d", t.Shape, n, len(t.Values))
	}
	return nil
}

// inputTypes are the element types that verify can feed to a model.
var inputTypes = map[onnxpb.TensorProto_DataType]bool{
	onnxpb.TensorProto_FLOAT:    true,
	onnxpb.TensorProto_FLOAT16:  true,
	onnxpb.TensorProto_BFLOAT16: true,
	onnxpb.TensorProto_DOUBLE:   true,
	onnxpb.TensorProto_INT8:     true,
	onnxpb.TensorProto_UINT8:    true,
	onnxpb.TensorProto_INT16:    true,
	onnxpb.TensorProto_UINT16:   true,
	onnxpb.TensorProto_INT32:    true,
	onnxpb.TensorProto_UINT32:   true,
	onnxpb.TensorProto_INT64:    true,
	onnxpb.TensorProto_UINT64:   true,
	onnxpb.TensorProto_BOOL:     true,
}

// maxRandomInt bounds the random integer inputs: values are drawn from [0, maxRandomInt), small
// enough to be valid indices, lengths or flags in most models.
const maxRandomInt = 4

// makeInputs returns seeded random values for every input of the model file at path, in the
// order the model lists them. Symbolic dimensions take their value from dims, else 1; a name in
// dims that no input uses is an error, since it is most likely a typo. Floating-point inputs
// are standard normal, rounded to the input's type; integer inputs are uniform in
// [0, maxRandomInt); bool inputs are fair coin flips. Each input draws from its own stream,
// derived from seed and the input's name, so adding an input does not change the others.
func makeInputs(path string, dims map[string]int64, seed uint64) ([]Tensor, error) {
	sig, err := readSignature(path)
	if err != nil {
		return nil, err
	}
	return sig.makeInputs(dims, seed)
}

// makeInputs is makeInputs for the model whose signature is sig.
func (sig *signature) makeInputs(dims map[string]int64, seed uint64) ([]Tensor, error) {
	path := sig.path
	used := map[string]bool{}
	var inputs []Tensor
	for _, vi := range sig.inputs {
		tt := vi.GetType().GetTensorType()
		if tt == nil {
			return nil, fmt.Errorf("verify: model %s: input %q is not a tensor; "+
				"verify can only feed tensor inputs", path, vi.GetName())
		}
		typ := onnxpb.TensorProto_DataType(tt.GetElemType())
		if !inputTypes[typ] {
			return nil, fmt.Errorf("verify: model %s: input %q has element type %v, "+
				"for which verify cannot make values", path, vi.GetName(), typ)
		}
		if tt.GetShape() == nil {
			return nil, fmt.Errorf("verify: model %s: input %q has no shape in the model, "+
				"so verify cannot size it", path, vi.GetName())
		}
		t := Tensor{Name: vi.GetName(), Type: typ, Shape: []int64{}}
		for _, d := range tt.GetShape().GetDim() {
			v := d.GetDimValue()
			if p := d.GetDimParam(); p != "" {
				v = 1
				if dv, ok := dims[p]; ok {
					v = dv
					used[p] = true
				}
			}
			if v < 1 {
				v = 1 // a dimension with neither value nor name
			}
			t.Shape = append(t.Shape, v)
		}
		n := t.numel()
		if n > math.MaxInt32 {
			return nil, fmt.Errorf("verify: model %s: input %q of shape %v is too large "+
				"to make; give smaller symbolic dimensions", path, t.Name, t.Shape)
		}
		t.Values = randomValues(typ, int(n), inputStream(seed, t.Name))
		inputs = append(inputs, t)
	}

	var unused []string
	for name := range dims {
		if !used[name] {
			unused = append(unused, name)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		return nil, fmt.Errorf("verify: model %s: no input has a dimension named %s (symbolic "+
			"dimensions: %s)", path, quoteAll(unused), quoteAll(sig.symbolicDims()))
	}
	return inputs, nil
}

// inputStream returns the random stream of the input called name.
func inputStream(seed uint64, name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// randomValues draws n values for an input of element type typ.
func randomValues(typ onnxpb.TensorProto_DataType, n int, rng *rand.Rand) []float64 {
	v := make([]float64, n)
	for i := range v {
		switch typ {
		case onnxpb.TensorProto_FLOAT:
			v[i] = float64(float32(rng.NormFloat64()))
		case onnxpb.TensorProto_FLOAT16:
			v[i] = onnxio.Float16Value(onnxio.Float16Bits(rng.NormFloat64()))
		case onnxpb.TensorProto_BFLOAT16:
			v[i] = onnxio.BFloat16Value(onnxio.BFloat16Bits(rng.NormFloat64()))
		case onnxpb.TensorProto_DOUBLE:
			v[i] = rng.NormFloat64()
		case onnxpb.TensorProto_BOOL:
			v[i] = float64(rng.IntN(2))
		default:
			v[i] = float64(rng.IntN(maxRandomInt))
		}
	}
	return v
}

// symbolicDims lists the names of the symbolic dimensions of the model's inputs.
func (sig *signature) symbolicDims() []string {
	seen := map[string]bool{}
	var names []string
	for _, vi := range sig.inputs {
		for _, d := range vi.GetType().GetTensorType().GetShape().GetDim() {
			if p := d.GetDimParam(); p != "" && !seen[p] {
				seen[p] = true
				names = append(names, p)
			}
		}
	}
	sort.Strings(names)
	return names
}

func quoteAll(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// OutputDiff compares one output of two runs of models on the same inputs.
type OutputDiff struct {
	// Name is the output's name.
	Name string

	// ShapeA and ShapeB are the output's shapes in the two runs; nil when the output is
	// missing from that run.
	ShapeA, ShapeB []int64

	// Missing reports that only one of the runs has this output.
	Missing bool

	// SameShape reports that both runs have the output with equal shapes. The differences
	// below are only computed when it holds.
	SameShape bool

	// MaxAbs is the largest |a-b| over the elements. A pair of which one is NaN or infinite
	// and the other is not the same value counts as +Inf.
	MaxAbs float64

	// MaxRel is the largest |a-b| / max(|a|, |b|) over the elements (0 where both are 0), so it
	// lies in [0, 2]: 1 means a value went to or came from zero, 2 that it changed sign
	// keeping its size. Non-finite pairs count as in MaxAbs.
	MaxRel float64

	// Finite reports that every value of the output in run b is finite.
	Finite bool
}

// OK reports that b has the output with a's shape and only finite values: the
// rewritten model computes, whatever its values.
func (d *OutputDiff) OK() bool {
	return !d.Missing && d.SameShape && d.Finite
}

// Compare matches the outputs of two runs by name and reports, for each, whether the shapes
// agree, how far apart the values are, and whether b's values are all finite. The result
// follows a's order, then lists outputs that only b has.
func Compare(a, b []Tensor) []OutputDiff {
	byName := make(map[string]*Tensor, len(b))
	for i := range b {
		byName[b[i].Name] = &b[i]
	}
	inA := make(map[string]bool, len(a))
	var diffs []OutputDiff
	for i := range a {
		ta := &a[i]
		inA[ta.Name] = true
		tb, ok := byName[ta.Name]
		if !ok {
			diffs = append(diffs, OutputDiff{Name: ta.Name, ShapeA: ta.Shape, Missing: true})
			continue
		}
		diffs = append(diffs, compareTensors(ta, tb))
	}
	for i := range b {
		if !inA[b[i].Name] {
			diffs = append(diffs, OutputDiff{Name: b[i].Name, ShapeB: b[i].Shape,
				Missing: true, Finite: allFinite(b[i].Values)})
		}
	}
	return diffs
}

func compareTensors(a, b *Tensor) OutputDiff {
	d := OutputDiff{
		Name:      a.Name,
		ShapeA:    a.Shape,
		ShapeB:    b.Shape,
		SameShape: equalShapes(a.Shape, b.Shape) && len(a.Values) == len(b.Values),
		Finite:    allFinite(b.Values),
	}
	if !d.SameShape {
		return d
	}
	for i, x := range a.Values {
		y := b.Values[i]
		if x == y {
			continue
		}
		abs, rel := math.Abs(x-y), 0.0
		if math.IsNaN(abs) || math.IsInf(abs, 0) {
			abs, rel = math.Inf(1), math.Inf(1)
		} else if m := max(math.Abs(x), math.Abs(y)); m > 0 {
			rel = abs / m
		}
		d.MaxAbs = max(d.MaxAbs, abs)
		d.MaxRel = max(d.MaxRel, rel)
	}
	return d
}

func equalShapes(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func allFinite(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}
