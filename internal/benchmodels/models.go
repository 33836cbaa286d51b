// Package benchmodels writes large synthetic ONNX models with depthwise convolutions, for
// the benchmarks: a ConvMixer, a RepLKNet-like network (re-parameterised deploy form) and a
// ConvNeXt/SLaK-like one. Weights are random float32 in raw_data, as PyTorch's exporter
// writes them, from a fixed seed, so a model is the same bytes every time.
package benchmodels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// Spec describes a model to generate.
type Spec struct {
	Arch   string  // "convmixer", "replknet" or "convnext"
	Width  int     // convmixer: channels
	Depth  int     // convmixer: blocks
	Patch  int     // convmixer: patch size of the stem
	Widths []int   // replknet, convnext: channels per stage
	Depths []int   // replknet, convnext: blocks per stage
	Kernel int     // the large depthwise kernel
	Seed   uint64  // of the weights
	Scale  float32 // of the random weights; 0 means 0.05
}

// Stats says what a generated model holds.
type Stats struct {
	Bytes          int64 // model file plus data file
	Depthwise      int
	DepthwiseBytes int64
}

// builder accumulates a graph.
type builder struct {
	rng   *rand.Rand
	scale float32
	nodes []*onnxpb.NodeProto
	init  []*onnxpb.TensorProto
	n     int
	stats Stats
}

func (b *builder) name(prefix string) string {
	b.n++
	return prefix + "_" + strconv.Itoa(b.n)
}

// weight adds a random float32 initializer.
func (b *builder) weight(prefix string, dims ...int64) string {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	raw := make([]byte, 4*n)
	for i := int64(0); i+8 <= int64(len(raw)); i += 8 {
		// Two uniform values in (-scale, scale) per draw; the bench needs bytes, not a
		// particular distribution, and this keeps a gigabyte quick to make.
		u := b.rng.Uint64()
		binary.LittleEndian.PutUint32(raw[i:], math.Float32bits(b.scale*(float32(uint32(u)>>8)/(1<<23)-1)))
		binary.LittleEndian.PutUint32(raw[i+4:], math.Float32bits(b.scale*(float32(uint32(u>>32)>>8)/(1<<23)-1)))
	}
	if len(raw)%8 != 0 {
		binary.LittleEndian.PutUint32(raw[len(raw)-4:], math.Float32bits(b.scale))
	}
	name := b.name(prefix)
	b.init = append(b.init, &onnxpb.TensorProto{
		Name:     proto.String(name),
		Dims:     dims,
		DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
		RawData:  raw,
	})
	return name
}

func intsAttr(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func (b *builder) node(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	out := b.name(op)
	b.nodes = append(b.nodes, &onnxpb.NodeProto{
		Name: proto.String(out), OpType: proto.String(op), Input: inputs, Output: []string{out}, Attribute: attrs,
	})
	return out
}

// conv adds a Conv with a k×k kernel, its weight and bias.
func (b *builder) conv(x string, cin, cout, k, stride, group int) string {
	w := b.weight("w", int64(cout), int64(cin/group), int64(k), int64(k))
	bias := b.weight("b", int64(cout))
	pad := int64(k / 2)
	if stride > 1 {
		pad = 0
	}
	if group == cin && group == cout && cin > 1 {
		b.stats.Depthwise++
		b.stats.DepthwiseBytes += int64(cout * k * k * 4)
	}
	return b.node("Conv", []string{x, w, bias},
		intsAttr("kernel_shape", int64(k), int64(k)), intsAttr("strides", int64(stride), int64(stride)),
		intsAttr("pads", pad, pad, pad, pad), intAttr("group", int64(group)))
}

func (b *builder) dw(x string, c, k, stride int) string { return b.conv(x, c, c, k, stride, c) }

func (b *builder) bn(x string, c int) string {
	return b.node("BatchNormalization", []string{x, b.weight("bn_s", int64(c)), b.weight("bn_b", int64(c)),
		b.weight("bn_m", int64(c)), b.weight("bn_v", int64(c))})
}

func (b *builder) relu(x string) string { return b.node("Relu", []string{x}) }

func (b *builder) add(x, y string) string { return b.node("Add", []string{x, y}) }

func (b *builder) head(x string, c int) {
	g := b.node("GlobalAveragePool", []string{x})
	f := b.node("Flatten", []string{g})
	w := b.weight("fc_w", 1000, int64(c))
	bias := b.weight("fc_b", 1000)
	b.nodes = append(b.nodes, &onnxpb.NodeProto{
		Name: proto.String("head"), OpType: proto.String("Gemm"), Input: []string{f, w, bias},
		Output: []string{"logits"}, Attribute: []*onnxpb.AttributeProto{intAttr("transB", 1)},
	})
}

func (b *builder) convmixer(s Spec) {
	x := b.bn(b.relu(b.conv("input", 3, s.Width, s.Patch, s.Patch, 1)), s.Width)
	for range s.Depth {
		r := x
		x = b.add(b.bn(b.relu(b.dw(x, s.Width, s.Kernel, 1)), s.Width), r)
		x = b.bn(b.relu(b.conv(x, s.Width, s.Width, 1, 1, 1)), s.Width)
	}
	b.head(x, s.Width)
}

func (b *builder) replknet(s Spec) {
	c0 := s.Widths[0]
	x := b.relu(b.conv("input", 3, c0, 3, 2, 1))
	x = b.relu(b.dw(x, c0, 3, 1))
	x = b.relu(b.conv(x, c0, c0, 1, 1, 1))
	x = b.relu(b.dw(x, c0, 3, 2))
	for si, c := range s.Widths {
		for range s.Depths[si] {
			y := b.relu(b.conv(b.bn(x, c), c, c, 1, 1, 1))
			y = b.conv(b.relu(b.dw(y, c, s.Kernel, 1)), c, c, 1, 1, 1)
			x = b.add(y, x)
			y = b.relu(b.conv(b.bn(x, c), c, 4*c, 1, 1, 1))
			x = b.add(b.conv(y, 4*c, c, 1, 1, 1), x)
		}
		if si+1 < len(s.Widths) {
			next := s.Widths[si+1]
			x = b.relu(b.dw(b.relu(b.conv(x, c, next, 1, 1, 1)), next, 3, 2))
		}
	}
	b.head(x, s.Widths[len(s.Widths)-1])
}

func (b *builder) convnext(s Spec) {
	x := b.bn(b.conv("input", 3, s.Widths[0], 4, 4, 1), s.Widths[0])
	for si, c := range s.Widths {
		for range s.Depths[si] {
			y := b.bn(b.dw(x, c, s.Kernel, 1), c)
			y = b.conv(b.relu(b.conv(y, c, 4*c, 1, 1, 1)), 4*c, c, 1, 1, 1)
			x = b.add(y, x)
		}
		if si+1 < len(s.Widths) {
			x = b.conv(b.bn(x, c), c, s.Widths[si+1], 2, 2, 1)
		}
	}
	b.head(x, s.Widths[len(s.Widths)-1])
}

// Write generates the model of s at path. With external, every initializer of 1 KiB or more
// goes to path+".data" instead, as onnx's save_as_external_data writes it.
func Write(path string, s Spec, external bool) (Stats, error) {
	scale := s.Scale
	if scale == 0 {
		scale = 0.05
	}
	b := &builder{rng: rand.New(rand.NewPCG(s.Seed, 0x62656e6368)), scale: scale}
	switch s.Arch {
	case "convmixer":
		b.convmixer(s)
	case "replknet":
		b.replknet(s)
	case "convnext":
		b.convnext(s)
	default:
		return Stats{}, fmt.Errorf("benchmodels: unknown architecture %q", s.Arch)
	}
	graph := &onnxpb.GraphProto{
		Name:        proto.String(fmt.Sprintf("%s_k%d", s.Arch, s.Kernel)),
		Node:        b.nodes,
		Initializer: b.init,
		Input:       []*onnxpb.ValueInfoProto{valueInfo("input", 1, 3, 224, 224)},
		Output:      []*onnxpb.ValueInfoProto{valueInfo("logits", 1, 1000)},
	}
	model := &onnxpb.ModelProto{
		IrVersion:    proto.Int64(8),
		ProducerName: proto.String("convcov-onnx benchmodels"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph:        graph,
	}
	if external {
		if err := moveToDataFile(path, b.init); err != nil {
			return Stats{}, err
		}
	}
	data, err := proto.Marshal(model)
	if err != nil {
		return Stats{}, fmt.Errorf("benchmodels: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return Stats{}, err
	}
	b.stats.Bytes = int64(len(data))
	if fi, err := os.Stat(path + ".data"); err == nil && external {
		b.stats.Bytes += fi.Size()
	}
	return b.stats, nil
}

// moveToDataFile writes the raw data of the large initializers to path+".data" and points
// them at it.
func moveToDataFile(path string, init []*onnxpb.TensorProto) error {
	f, err := os.Create(path + ".data")
	if err != nil {
		return err
	}
	var offset int64
	for _, t := range init {
		if len(t.RawData) < 1024 {
			continue
		}
		if _, err := f.Write(t.RawData); err != nil {
			f.Close()
			return err
		}
		kv := func(k, v string) *onnxpb.StringStringEntryProto {
			return &onnxpb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(v)}
		}
		t.ExternalData = []*onnxpb.StringStringEntryProto{
			kv("location", filepath.Base(path)+".data"),
			kv("offset", strconv.FormatInt(offset, 10)),
			kv("length", strconv.Itoa(len(t.RawData))),
		}
		t.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
		offset += int64(len(t.RawData))
		t.RawData = nil
	}
	return f.Close()
}

func valueInfo(name string, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{
			Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d},
		})
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Shape: shape,
		}}},
	}
}
