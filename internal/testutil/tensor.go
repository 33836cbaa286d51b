package testutil

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// This file reads tensors with code of its own, not onnxio's, so that tests of onnxio's
// output do not check it against itself.

// Storage names the field that holds the elements of t: "raw_data", "float_data",
// "int32_data", "double_data" or "external"; "" when none holds any. It fails when more
// than one is set.
func Storage(t *onnxpb.TensorProto) (string, error) {
	var set []string
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		set = append(set, "external")
	}
	if len(t.GetRawData()) > 0 {
		set = append(set, "raw_data")
	}
	if len(t.GetFloatData()) > 0 {
		set = append(set, "float_data")
	}
	if len(t.GetInt32Data()) > 0 {
		set = append(set, "int32_data")
	}
	if len(t.GetDoubleData()) > 0 {
		set = append(set, "double_data")
	}
	switch len(set) {
	case 0:
		return "", nil
	case 1:
		return set[0], nil
	}
	return "", fmt.Errorf("tensor %q: %s are all set", t.GetName(), strings.Join(set, " and "))
}

// NumElements returns the product of the dims of t.
func NumElements(t *onnxpb.TensorProto) int64 {
	n := int64(1)
	for _, d := range t.GetDims() {
		n *= d
	}
	return n
}

// Floats decodes the elements of a FLOAT, FLOAT16, BFLOAT16 or DOUBLE tensor held inline,
// in raw_data or the typed field, and checks their count against the dims.
func Floats(t *onnxpb.TensorProto) ([]float64, error) {
	storage, err := Storage(t)
	if err != nil {
		return nil, err
	}
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	var out []float64
	switch storage {
	case "external":
		return nil, fmt.Errorf("tensor %q: data is external; call InlineExternal first", t.GetName())
	case "raw_data":
		out, err = decodeRaw(t.GetRawData(), dt)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
		}
	case "float_data":
		for _, x := range t.GetFloatData() {
			out = append(out, float64(x))
		}
	case "double_data":
		out = append(out, t.GetDoubleData()...)
	case "int32_data":
		for _, x := range t.GetInt32Data() {
			if x < 0 || x > 0xffff {
				return nil, fmt.Errorf("tensor %q: int32_data element %d is not a 16-bit pattern", t.GetName(), x)
			}
			v, err := decode16(uint16(x), dt)
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
			}
			out = append(out, v)
		}
	}
	if want := typedFieldOf(dt); storage != "" && storage != "raw_data" && storage != want {
		return nil, fmt.Errorf("tensor %q: %s elements in %s, want raw_data or %s", t.GetName(), dt, storage, want)
	}
	if n := NumElements(t); int64(len(out)) != n {
		return nil, fmt.Errorf("tensor %q: %d elements stored, dims %v need %d", t.GetName(), len(out), t.GetDims(), n)
	}
	return out, nil
}

func typedFieldOf(dt onnxpb.TensorProto_DataType) string {
	switch dt {
	case onnxpb.TensorProto_FLOAT:
		return "float_data"
	case onnxpb.TensorProto_DOUBLE:
		return "double_data"
	}
	return "int32_data"
}

func decodeRaw(raw []byte, dt onnxpb.TensorProto_DataType) ([]float64, error) {
	size := map[onnxpb.TensorProto_DataType]int{
		onnxpb.TensorProto_FLOAT:    4,
		onnxpb.TensorProto_DOUBLE:   8,
		onnxpb.TensorProto_FLOAT16:  2,
		onnxpb.TensorProto_BFLOAT16: 2,
	}[dt]
	if size == 0 {
		return nil, fmt.Errorf("element type %s is not a float type", dt)
	}
	if len(raw)%size != 0 {
		return nil, fmt.Errorf("raw_data has %d bytes, not a multiple of %d", len(raw), size)
	}
	out := make([]float64, 0, len(raw)/size)
	for i := 0; i < len(raw); i += size {
		switch size {
		case 4:
			out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[i:]))))
		case 8:
			out = append(out, math.Float64frombits(binary.LittleEndian.Uint64(raw[i:])))
		default:
			v, err := decode16(binary.LittleEndian.Uint16(raw[i:]), dt)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// decode16 reads a FLOAT16 (IEEE binary16) or BFLOAT16 bit pattern.
func decode16(h uint16, dt onnxpb.TensorProto_DataType) (float64, error) {
	switch dt {
	case onnxpb.TensorProto_BFLOAT16:
		return float64(math.Float32frombits(uint32(h) << 16)), nil
	case onnxpb.TensorProto_FLOAT16:
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		exp, frac := int(h>>10&0x1f), float64(h&0x3ff)
		switch exp {
		case 0:
			return sign * math.Ldexp(frac, -24), nil
		case 0x1f:
			if frac != 0 {
				return math.NaN(), nil
			}
			return math.Inf(int(sign)), nil
		}
		return sign * math.Ldexp(1024+frac, exp-25), nil
	}
	return 0, fmt.Errorf("element type %s is not a 16-bit float type", dt)
}

// WalkTensors calls f for every TensorProto of mp: initializers, sparse initializers,
// attribute values, in the main graph, in subgraphs at any depth and in functions.
func WalkTensors(mp *onnxpb.ModelProto, f func(*onnxpb.TensorProto)) {
	sparse := func(s *onnxpb.SparseTensorProto) {
		if s.GetValues() != nil {
			f(s.GetValues())
		}
		if s.GetIndices() != nil {
			f(s.GetIndices())
		}
	}
	var nodes func([]*onnxpb.NodeProto)
	var graph func(*onnxpb.GraphProto)
	nodes = func(ns []*onnxpb.NodeProto) {
		for _, n := range ns {
			for _, a := range n.GetAttribute() {
				if a.GetT() != nil {
					f(a.GetT())
				}
				for _, t := range a.GetTensors() {
					f(t)
				}
				if a.GetSparseTensor() != nil {
					sparse(a.GetSparseTensor())
				}
				for _, s := range a.GetSparseTensors() {
					sparse(s)
				}
				if a.GetG() != nil {
					graph(a.GetG())
				}
				for _, g := range a.GetGraphs() {
					graph(g)
				}
			}
		}
	}
	graph = func(g *onnxpb.GraphProto) {
		for _, t := range g.GetInitializer() {
			f(t)
		}
		for _, s := range g.GetSparseInitializer() {
			sparse(s)
		}
		nodes(g.GetNode())
	}
	if mp.GetGraph() != nil {
		graph(mp.GetGraph())
	}
	for _, fn := range mp.GetFunctions() {
		nodes(fn.GetNode())
	}
}

// InlineExternal reads the external data of every tensor of mp from files relative to dir
// into raw_data and makes the tensor an ordinary inline one, as onnx.load does: two models
// that differ only in where their tensors' bytes are kept then compare equal.
func InlineExternal(mp *onnxpb.ModelProto, dir string) error {
	var err error
	WalkTensors(mp, func(t *onnxpb.TensorProto) {
		if err != nil || t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			return
		}
		var location string
		offset, length := int64(0), int64(-1)
		for _, kv := range t.GetExternalData() {
			switch kv.GetKey() {
			case "location":
				location = kv.GetValue()
			case "offset":
				offset, err = strconv.ParseInt(kv.GetValue(), 10, 64)
			case "length":
				length, err = strconv.ParseInt(kv.GetValue(), 10, 64)
			}
			if err != nil {
				err = fmt.Errorf("tensor %q: external data %s: %w", t.GetName(), kv.GetKey(), err)
				return
			}
		}
		var b []byte
		b, err = os.ReadFile(filepath.Join(dir, filepath.FromSlash(location)))
		if err != nil {
			err = fmt.Errorf("tensor %q: %w", t.GetName(), err)
			return
		}
		end := int64(len(b))
		if length >= 0 {
			end = offset + length
		}
		if offset > int64(len(b)) || end > int64(len(b)) {
			err = fmt.Errorf("tensor %q: bytes %d to %d of %s, which has %d", t.GetName(), offset, end, location, len(b))
			return
		}
		t.RawData = b[offset:end]
		t.ExternalData = nil
		t.DataLocation = nil
	})
	return err
}

// ReadModel decodes the ONNX file at path with proto.Unmarshal alone, its external data
// pulled inline.
func ReadModel(path string) (*onnxpb.ModelProto, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(b, mp); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := InlineExternal(mp, filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return mp, nil
}

// Diff describes where two messages differ: their text forms around the first line that
// differs, or "" when they print the same.
func Diff(got, want proto.Message) string {
	opts := prototext.MarshalOptions{Multiline: true, EmitUnknown: true}
	g := strings.Split(opts.Format(got), "\n")
	w := strings.Split(opts.Format(want), "\n")
	k := 0
	for k < len(g) && k < len(w) && g[k] == w[k] {
		k++
	}
	if k == len(g) && k == len(w) {
		return ""
	}
	window := func(lines []string) string {
		lo, hi := max(k-6, 0), min(k+6, len(lines))
		var b strings.Builder
		for i := lo; i < hi; i++ {
			mark := "  "
			if i == k {
				mark = "> "
			}
			line := lines[i]
			if len(line) > 160 {
				line = line[:160] + "..."
			}
			fmt.Fprintf(&b, "%s%s\n", mark, line)
		}
		return b.String()
	}
	return fmt.Sprintf("first difference at line %d of the text form\ngot:\n%swant:\n%s", k+1, window(g), window(w))
}
