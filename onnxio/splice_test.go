package onnxio

import (
	"bytes"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// nestedModel has a FLOAT16 tensor in int32_data, as a Constant's value inside the
// then_branch of an If node, so a rewrite that lengthens it changes three enclosing lengths.
func nestedModel(values []int32) *onnxpb.ModelProto {
	tensor := &onnxpb.TensorProto{
		Name:      proto.String("C"),
		Dims:      []int64{int64(len(values))},
		DataType:  proto.Int32(Float16),
		Int32Data: values,
		DocString: proto.String("kept"),
	}
	constant := &onnxpb.NodeProto{
		Name:   proto.String("const"),
		OpType: proto.String("Constant"),
		Output: []string{"c"},
		Attribute: []*onnxpb.AttributeProto{{
			Name: proto.String("value"),
			Type: onnxpb.AttributeProto_TENSOR.Enum(),
			T:    tensor,
		}},
	}
	branch := &onnxpb.GraphProto{Name: proto.String("then"), Node: []*onnxpb.NodeProto{constant}}
	return &onnxpb.ModelProto{
		IrVersion:    proto.Int64(8),
		ProducerName: proto.String("test"),
		Graph: &onnxpb.GraphProto{
			Name: proto.String("main"),
			Node: []*onnxpb.NodeProto{{
				Name:   proto.String("if"),
				OpType: proto.String("If"),
				Input:  []string{"cond"},
				Output: []string{"y"},
				Attribute: []*onnxpb.AttributeProto{
					{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: branch},
					{Name: proto.String("else_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: proto.Clone(branch).(*onnxpb.GraphProto)},
				},
			}},
			DocString: proto.String("after the nodes"),
		},
		DocString: proto.String("after the graph"),
	}
}

// TestSpliceGrowth rewrites a tensor whose encoding grows past a one-byte length prefix,
// and one whose encoding shrinks, and checks the decoding of the result.
func TestSpliceGrowth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		from, to float64 // every element before and after
	}{
		{"grows past 127 bytes", 0, 2},    // varint of 0 is one byte, of 0x4000 three
		{"shrinks below 128 bytes", 2, 0}, // and back
		{"same length", 1, -1},            // 0x3c00 and 0xbc00 take three bytes each
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const n = 100
			bits := make([]int32, n)
			for i := range bits {
				bits[i] = int32(Float16Bits(tt.from))
			}
			src, err := proto.Marshal(nestedModel(bits))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Decode(src)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Tensors()) != 2 {
				t.Fatalf("found %d tensors, want the 2 Constant values", len(m.Tensors()))
			}
			want := slices.Repeat([]float64{tt.to}, n)
			if err := m.SetValues(m.Tensors()[0], want); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := m.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}

			got := &onnxpb.ModelProto{}
			if err := proto.Unmarshal(buf.Bytes(), got); err != nil {
				t.Fatalf("the spliced model does not decode: %v", err)
			}
			wantBits := make([]int32, n)
			for i := range wantBits {
				wantBits[i] = int32(Float16Bits(tt.to))
			}
			expect := nestedModel(bits)
			expect.Graph.Node[0].Attribute[0].G.Node[0].Attribute[0].T.Int32Data = wantBits
			if !proto.Equal(got, expect) {
				t.Errorf("decoded model differs from the expected one")
			}
			m2, err := Decode(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if v, err := m2.Values(m2.Tensors()[0]); err != nil || !slices.Equal(v, want) {
				t.Errorf("values after the rewrite: %v, %v", v[:2], err)
			}
		})
	}
}

// TestUnknownFieldsSurvive adds fields this schema does not know (as a newer ONNX would
// write) to the model, the graph and a rewritten tensor, and checks that they survive.
func TestUnknownFieldsSurvive(t *testing.T) {
	t.Parallel()
	mp := nestedModel(make([]int32, 9))
	mp.Graph.Node[0].Attribute[0].G.Node[0].Attribute[0].T.ProtoReflect().SetUnknown([]byte{0xa8, 0x06, 0x2a}) // field 101, varint 42
	mp.Graph.ProtoReflect().SetUnknown([]byte{0xaa, 0x06, 0x03, 'n', 'e', 'w'})                                // field 101, bytes "new"
	mp.ProtoReflect().SetUnknown([]byte{0xa8, 0x06, 0x07})
	src, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetValues(m.Tensors()[0], slices.Repeat([]float64{0.5}, 9)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	for _, unknown := range [][]byte{{0xa8, 0x06, 0x2a}, {0xaa, 0x06, 0x03, 'n', 'e', 'w'}, {0xa8, 0x06, 0x07}} {
		if !bytes.Contains(buf.Bytes(), unknown) {
			t.Errorf("unknown field % x was lost", unknown)
		}
	}
}
