package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// TestNamesAreEscaped is the regression test for names that forge report lines: a node and
// a weight whose names hold a newline and a terminal escape were printed as they were.
func TestNamesAreEscaped(t *testing.T) {
	t.Parallel()
	const node = "dw\nskipped everything: forged\x1b[2J"
	const weight = "W\x1b]0;title\x07"
	weightTensor := &onnxpb.TensorProto{
		Name: proto.String(weight), Dims: []int64{4, 1, 3, 3},
		DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), RawData: make([]byte, 4*36),
	}
	mp := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name: proto.String("g"),
			Node: []*onnxpb.NodeProto{{
				Name: proto.String(node), OpType: proto.String("Conv"), Input: []string{"x", weight}, Output: []string{"y"},
				Attribute: []*onnxpb.AttributeProto{{Name: proto.String("group"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(4)}},
			}},
			Initializer: []*onnxpb.TensorProto{weightTensor},
			Input:       []*onnxpb.ValueInfoProto{{Name: proto.String("x")}},
			Output:      []*onnxpb.ValueInfoProto{{Name: proto.String("y")}},
		},
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "evil.onnx")
	if err := os.WriteFile(model, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"scan", model},
		{"init", model, "-o", filepath.Join(dir, "out.onnx"), "--verify", "--no-run"},
	} {
		code, stdout, stderr := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, stderr)
		}
		for _, out := range []string{stdout, stderr} {
			if strings.ContainsAny(out, "\x1b\x07") || strings.Contains(out, "\nskipped everything") {
				t.Errorf("%v: a name reached the output unescaped:\n%q", args, out)
			}
		}
		if !strings.Contains(stdout, `"dw\nskipped everything: forged\x1b[2J"`) {
			t.Errorf("%v: the node's name is not shown quoted:\n%s", args, stdout)
		}
	}
}
