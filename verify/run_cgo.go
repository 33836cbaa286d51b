//go:build cgo

package verify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// Run runs the model file at path on inputs and returns all of its outputs, in the order
// the model lists them, widened to float64. The model is opened by path, so external data
// files resolve relative to its folder. Inputs are matched to the model's inputs by name,
// and each is converted to the element type the model declares for it; a missing or unknown
// input is an error. When ONNX Runtime cannot load or run the model (an operator without a
// kernel, such as Conv on float64 for the CPU), the error names the file and carries ONNX
// Runtime's message. Run reads the model's inputs and outputs with onnxio.Load, which holds
// about one copy of the file while it does; Check reuses the models it has read instead.
func (r *Runtime) Run(path string, inputs []Tensor) ([]Tensor, error) {
	sig, err := readSignature(path)
	if err != nil {
		return nil, err
	}
	return r.run(sig, inputs)
}

// run runs the model of signature sig on inputs; see Run.
func (r *Runtime) run(sig *signature, inputs []Tensor) ([]Tensor, error) {
	path := sig.path
	ordered, err := orderInputs(sig, inputs)
	if err != nil {
		return nil, err
	}
	if len(sig.outputs) == 0 {
		return nil, fmt.Errorf("verify: model %s has no outputs", path)
	}

	// Load the model.
	so, err := r.sessionOptions()
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	inNames := make([]string, len(sig.inputs))
	for i, vi := range sig.inputs {
		inNames[i] = vi.GetName()
	}
	outNames := make([]string, len(sig.outputs))
	for i, vi := range sig.outputs {
		outNames[i] = vi.GetName()
	}
	sess, err := ort.NewDynamicAdvancedSession(path, inNames, outNames, so)
	if err != nil {
		return nil, fmt.Errorf("verify: model %s: onnx runtime cannot load it: %w", path, ortCause(err))
	}
	defer sess.Destroy()

	// Make the input values, and the outputs that the binding cannot allocate by itself.
	in := make([]ort.Value, len(ordered))
	defer destroyAll(in)
	for i, t := range ordered {
		typ := onnxpb.TensorProto_DataType(sig.inputs[i].GetType().GetTensorType().GetElemType())
		if in[i], err = newValue(typ, t.Shape, t.Values); err != nil {
			return nil, fmt.Errorf("verify: model %s: input %q: %w", path, t.Name, err)
		}
	}
	bound := boundDims(sig, ordered, r.opts.Dims)
	out := make([]ort.Value, len(sig.outputs))
	defer destroyAll(out)
	for i, vi := range sig.outputs {
		if out[i], err = newOutput(vi, bound); err != nil {
			return nil, fmt.Errorf("verify: model %s: output %q: %w", path, vi.GetName(), err)
		}
	}

	// Run and read the outputs.
	if err := sess.Run(in, out); err != nil {
		return nil, fmt.Errorf("verify: model %s: onnx runtime cannot run it: %w", path, ortCause(err))
	}
	result := make([]Tensor, len(out))
	for i, v := range out {
		typ := onnxpb.TensorProto_DataType(sig.outputs[i].GetType().GetTensorType().GetElemType())
		if result[i], err = readValue(outNames[i], typ, v); err != nil {
			return nil, fmt.Errorf("verify: model %s: output %q: %w", path, outNames[i], err)
		}
	}
	return result, nil
}

// orderInputs returns the given inputs in the model's order, after checking that they match
// the model's inputs one for one and that each fills its shape.
func orderInputs(sig *signature, inputs []Tensor) ([]*Tensor, error) {
	path := sig.path
	if len(sig.inputs) == 0 {
		return nil, fmt.Errorf("verify: model %s has no inputs; verify runs models on inputs", path)
	}
	byName := make(map[string]*Tensor, len(inputs))
	for i := range inputs {
		t := &inputs[i]
		if byName[t.Name] != nil {
			return nil, fmt.Errorf("verify: model %s: input %q given twice", path, t.Name)
		}
		byName[t.Name] = t
	}
	ordered := make([]*Tensor, len(sig.inputs))
	for i, vi := range sig.inputs {
		t := byName[vi.GetName()]
		switch {
		case t == nil:
			return nil, fmt.Errorf("verify: model %s: no value given for input %q", path, vi.GetName())
		case vi.GetType().GetTensorType() == nil:
			return nil, fmt.Errorf("verify: model %s: input %q is not a tensor; "+
				"verify can only feed tensor inputs", path, vi.GetName())
		}
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("verify: model %s: input %q: %w", path, t.Name, err)
		}
		ordered[i] = t
		delete(byName, vi.GetName())
	}
	for name := range byName {
		return nil, fmt.Errorf("verify: model %s has no input %q", path, name)
	}
	return ordered, nil
}

// boundDims returns the values of symbolic dimensions: those the given inputs fix, then those
// in dims.
func boundDims(sig *signature, inputs []*Tensor, dims map[string]int64) map[string]int64 {
	bound := make(map[string]int64, len(dims))
	for k, v := range dims {
		bound[k] = v
	}
	for i, vi := range sig.inputs {
		shape := vi.GetType().GetTensorType().GetShape().GetDim()
		if len(shape) != len(inputs[i].Shape) {
			continue
		}
		for j, d := range shape {
			if p := d.GetDimParam(); p != "" {
				bound[p] = inputs[i].Shape[j]
			}
		}
	}
	return bound
}

// ortCause strips the Go binding's wrapping from err, leaving ONNX Runtime's own message,
// with its lines joined so that it reads as one line.
func ortCause(err error) error {
	for inner := errors.Unwrap(err); inner != nil; inner = errors.Unwrap(err) {
		err = inner
	}
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return errors.New(strings.Join(lines, "; "))
}

func destroyAll(values []ort.Value) {
	for _, v := range values {
		if v != nil {
			v.Destroy()
		}
	}
}

// newValue makes an ONNX Runtime tensor of element type typ from values.
func newValue(typ onnxpb.TensorProto_DataType, shape []int64, values []float64) (ort.Value, error) {
	switch typ {
	case onnxpb.TensorProto_FLOAT:
		return newNumeric[float32](shape, values)
	case onnxpb.TensorProto_DOUBLE:
		return newNumeric[float64](shape, values)
	case onnxpb.TensorProto_INT8:
		return newNumeric[int8](shape, values)
	case onnxpb.TensorProto_UINT8:
		return newNumeric[uint8](shape, values)
	case onnxpb.TensorProto_INT16:
		return newNumeric[int16](shape, values)
	case onnxpb.TensorProto_UINT16:
		return newNumeric[uint16](shape, values)
	case onnxpb.TensorProto_INT32:
		return newNumeric[int32](shape, values)
	case onnxpb.TensorProto_UINT32:
		return newNumeric[uint32](shape, values)
	case onnxpb.TensorProto_INT64:
		return newNumeric[int64](shape, values)
	case onnxpb.TensorProto_UINT64:
		return newNumeric[uint64](shape, values)
	case onnxpb.TensorProto_BOOL:
		data := make([]bool, len(values))
		for i, x := range values {
			data[i] = x != 0
		}
		if len(shape) == 0 {
			return ort.NewScalar(data[0])
		}
		return ort.NewTensor(ort.NewShape(shape...), data)
	case onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16:
		if len(shape) == 0 || len(values) == 0 {
			return nil, fmt.Errorf("%v scalars and empty %v tensors are not supported "+
				"by the ONNX Runtime Go binding", typ, typ)
		}
		round := onnxio.Float16Bits
		if typ == onnxpb.TensorProto_BFLOAT16 {
			round = onnxio.BFloat16Bits
		}
		data := make([]byte, 2*len(values))
		for i, x := range values {
			binary.LittleEndian.PutUint16(data[2*i:], round(x))
		}
		return ort.NewCustomDataTensor(ort.NewShape(shape...), data, ortType(typ))
	}
	return nil, fmt.Errorf("element type %v is not supported", typ)
}

// ortType returns the binding's code for the 2-byte float types, whose codes are ONNX's.
func ortType(typ onnxpb.TensorProto_DataType) ort.TensorElementDataType {
	if typ == onnxpb.TensorProto_BFLOAT16 {
		return ort.TensorElementDataTypeBFloat16
	}
	return ort.TensorElementDataTypeFloat16
}

type numeric interface {
	ort.FloatData | ort.IntData
}

func newNumeric[T numeric](shape []int64, values []float64) (ort.Value, error) {
	data := make([]T, len(values))
	for i, x := range values {
		data[i] = T(x)
	}
	if len(shape) == 0 {
		return ort.NewScalar(data[0])
	}
	return ort.NewTensor(ort.NewShape(shape...), data)
}

// newOutput returns a value for ONNX Runtime to write the output vi into, or nil to let the
// binding allocate it. The binding allocates most outputs itself, but cannot return scalars
// (it rejects empty shapes) nor 2-byte float types (it copies one byte per element), so
// those are allocated here from the declared shape, with symbolic dimensions from bound.
func newOutput(vi *onnxpb.ValueInfoProto, bound map[string]int64) (ort.Value, error) {
	tt := vi.GetType().GetTensorType()
	typ := onnxpb.TensorProto_DataType(tt.GetElemType())
	half := typ == onnxpb.TensorProto_FLOAT16 || typ == onnxpb.TensorProto_BFLOAT16
	if tt == nil || tt.GetShape() == nil || (!half && len(tt.GetShape().GetDim()) > 0) {
		if half {
			return nil, fmt.Errorf("%v output without a declared shape; the ONNX Runtime Go "+
				"binding can only return %v outputs whose shape verify can work out", typ, typ)
		}
		return nil, nil
	}

	shape := make([]int64, 0, len(tt.GetShape().GetDim()))
	n := int64(1)
	for _, d := range tt.GetShape().GetDim() {
		v := d.GetDimValue()
		if p := d.GetDimParam(); p != "" {
			v = bound[p]
		}
		if v < 1 {
			return nil, fmt.Errorf("%v output of shape %v with a dimension that only "+
				"running the model tells (%q); the ONNX Runtime Go binding can only return "+
				"%v outputs whose shape verify can work out", typ, tt.GetShape(), d.GetDimParam(), typ)
		}
		shape = append(shape, v)
		n *= v
	}
	if half {
		if len(shape) == 0 {
			return nil, fmt.Errorf("%v scalar outputs are not supported by the ONNX Runtime "+
				"Go binding", typ)
		}
		return ort.NewCustomDataTensor(ort.NewShape(shape...), make([]byte, 2*n), ortType(typ))
	}

	// A scalar of a type the binding knows.
	switch typ {
	case onnxpb.TensorProto_FLOAT:
		return ort.NewEmptyScalar[float32]()
	case onnxpb.TensorProto_DOUBLE:
		return ort.NewEmptyScalar[float64]()
	case onnxpb.TensorProto_INT8:
		return ort.NewEmptyScalar[int8]()
	case onnxpb.TensorProto_UINT8:
		return ort.NewEmptyScalar[uint8]()
	case onnxpb.TensorProto_INT16:
		return ort.NewEmptyScalar[int16]()
	case onnxpb.TensorProto_UINT16:
		return ort.NewEmptyScalar[uint16]()
	case onnxpb.TensorProto_INT32:
		return ort.NewEmptyScalar[int32]()
	case onnxpb.TensorProto_UINT32:
		return ort.NewEmptyScalar[uint32]()
	case onnxpb.TensorProto_INT64:
		return ort.NewEmptyScalar[int64]()
	case onnxpb.TensorProto_UINT64:
		return ort.NewEmptyScalar[uint64]()
	case onnxpb.TensorProto_BOOL:
		return ort.NewEmptyScalar[bool]()
	}
	return nil, fmt.Errorf("scalar output of element type %v is not supported", typ)
}

// readValue converts an output value to a Tensor. typ is the declared element type, which
// the 2-byte float types need since their values come back as bytes.
func readValue(name string, typ onnxpb.TensorProto_DataType, v ort.Value) (Tensor, error) {
	t := Tensor{Name: name}
	var ok bool
	for _, read := range readers {
		if t.Type, t.Shape, t.Values, ok = read(v); ok {
			return t, nil
		}
	}
	switch v := v.(type) {
	case *ort.CustomDataTensor:
		if typ != onnxpb.TensorProto_FLOAT16 && typ != onnxpb.TensorProto_BFLOAT16 {
			break
		}
		decode := onnxio.Float16Value
		if typ == onnxpb.TensorProto_BFLOAT16 {
			decode = onnxio.BFloat16Value
		}
		b := v.GetData()
		t.Type, t.Shape, t.Values = typ, v.GetShape(), make([]float64, len(b)/2)
		for i := range t.Values {
			t.Values[i] = decode(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return t, nil
	case *ort.StringTensor:
		return t, errors.New("string outputs are not supported; verify compares numbers")
	}
	if v.GetONNXType() != ort.ONNXTypeTensor {
		return t, fmt.Errorf("%v outputs are not supported; verify compares tensors", v.GetONNXType())
	}
	return t, fmt.Errorf("element type %v is not supported", typ)
}

// readers convert the output values of each numeric type the binding knows.
var readers = []func(ort.Value) (onnxpb.TensorProto_DataType, []int64, []float64, bool){
	readNumeric[float32](onnxpb.TensorProto_FLOAT),
	readNumeric[float64](onnxpb.TensorProto_DOUBLE),
	readNumeric[int8](onnxpb.TensorProto_INT8),
	readNumeric[uint8](onnxpb.TensorProto_UINT8),
	readNumeric[int16](onnxpb.TensorProto_INT16),
	readNumeric[uint16](onnxpb.TensorProto_UINT16),
	readNumeric[int32](onnxpb.TensorProto_INT32),
	readNumeric[uint32](onnxpb.TensorProto_UINT32),
	readNumeric[int64](onnxpb.TensorProto_INT64),
	readNumeric[uint64](onnxpb.TensorProto_UINT64),
	readBool,
}

func readNumeric[T numeric](typ onnxpb.TensorProto_DataType) func(ort.Value) (onnxpb.TensorProto_DataType, []int64, []float64, bool) {
	return func(v ort.Value) (onnxpb.TensorProto_DataType, []int64, []float64, bool) {
		switch v := v.(type) {
		case *ort.Tensor[T]:
			data := v.GetData()
			values := make([]float64, len(data))
			for i, x := range data {
				values[i] = float64(x)
			}
			return typ, v.GetShape(), values, true
		case *ort.Scalar[T]:
			return typ, []int64{}, []float64{float64(v.GetData())}, true
		}
		return 0, nil, nil, false
	}
}

func readBool(v ort.Value) (onnxpb.TensorProto_DataType, []int64, []float64, bool) {
	var data []bool
	var shape []int64
	switch v := v.(type) {
	case *ort.Tensor[bool]:
		data, shape = v.GetData(), v.GetShape()
	case *ort.Scalar[bool]:
		data, shape = []bool{v.GetData()}, []int64{}
	default:
		return 0, nil, nil, false
	}
	values := make([]float64, len(data))
	for i, x := range data {
		if x {
			values[i] = 1
		}
	}
	return onnxpb.TensorProto_BOOL, shape, values, true
}
