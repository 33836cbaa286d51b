package main

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/internal/testutil"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// Broken and crafted input through the command line (issue 5): each kind gets exit status
// 1 (2 for wrong usage), a message on stderr that names the file, node or tensor, and no
// file written or changed, or, for what is skipped, a line that says why.

// dwModel is a model of one depthwise Conv "dw" on x [1, 8, 8, 8] with the weight w,
// plus the extra nodes, initializers and value_info.
func dwModel(w *onnxpb.TensorProto, nodes []*onnxpb.NodeProto, inits []*onnxpb.TensorProto, vi ...*onnxpb.ValueInfoProto) *onnxpb.ModelProto {
	dw := &onnxpb.NodeProto{
		Name: proto.String("dw"), OpType: proto.String("Conv"), Input: []string{"x", "w"}, Output: []string{"y"},
		Attribute: []*onnxpb.AttributeProto{{Name: proto.String("group"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(8)}},
	}
	if w != nil {
		w.Name = proto.String("w")
		inits = append(inits, w)
	}
	return &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name:        proto.String("g"),
			Node:        append(nodes, dw),
			Initializer: inits,
			Input:       []*onnxpb.ValueInfoProto{shaped("x", 1, 8, 8, 8)},
			Output:      []*onnxpb.ValueInfoProto{{Name: proto.String("y")}},
			ValueInfo:   vi,
		},
	}
}

// shaped is a FLOAT value of the given shape.
func shaped(name string, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Shape: shape},
	}}}
}

// floatWeight is a FLOAT tensor of the given dims with raw_data of n bytes (-1: the
// right length).
func floatWeight(n int, dims ...int64) *onnxpb.TensorProto {
	if n < 0 {
		n = 4
		for _, d := range dims {
			n *= int(d)
		}
	}
	return &onnxpb.TensorProto{Dims: dims, DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), RawData: make([]byte, n)}
}

func opNode(name, op string, in, out []string) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{Name: proto.String(name), OpType: proto.String(op), Input: in, Output: out}
}

// writeFile writes b, or the encoding of a model, to dir/name.
func writeFile(t *testing.T, dir, name string, content any) {
	t.Helper()
	var b []byte
	switch c := content.(type) {
	case []byte:
		b = c
	case string:
		b = []byte(c)
	case *onnxpb.ModelProto:
		var err error
		if b, err = proto.Marshal(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// externalTwice writes fixture 14a into dir/m with the entry key of tensor W_dw2 given a
// second time.
func externalTwice(key string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		externalModel(t, dir, func(*onnxpb.StringStringEntryProto) {})
		path := filepath.Join(dir, "m", "model.onnx")
		mp := &onnxpb.ModelProto{}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(b, mp); err != nil {
			t.Fatal(err)
		}
		for _, x := range mp.GetGraph().GetInitializer() {
			if x.GetName() != "W_dw2" {
				continue
			}
			for _, kv := range x.GetExternalData() {
				if kv.GetKey() == key {
					x.ExternalData = append(x.ExternalData, proto.Clone(kv).(*onnxpb.StringStringEntryProto))
					break
				}
			}
		}
		writeFile(t, dir, "m/model.onnx", mp)
	}
}

// TestHostileInputs runs scan and init on broken and crafted input. The folder holds
// afterwards what it held before, plus the files a case names.
func TestHostileInputs(t *testing.T) {
	t.Parallel()
	good, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "testdata", "cases", "21_single_depthwise.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	model := func(content any) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { writeFile(t, dir, "m.onnx", content) }
	}
	refused := []string{"nothing was written"}
	int8 := &onnxpb.TensorProto{Dims: []int64{8, 1, 3, 3}, DataType: proto.Int32(int32(onnxpb.TensorProto_INT8)), RawData: make([]byte, 72)}
	str := &onnxpb.TensorProto{Dims: []int64{8, 1, 3, 3}, DataType: proto.Int32(int32(onnxpb.TensorProto_STRING)), StringData: make([][]byte, 72)}
	both := floatWeight(-1, 8, 1, 3, 3)
	both.FloatData = make([]float32, 72)
	graphAsVarint := protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 3)
	tests := []struct {
		name     string
		setup    func(t *testing.T, dir string)
		args     []string // "$D/" is replaced by the case's folder
		code     int
		stderr   []string // keywords, as in expect.json
		stdout   []string
		newFiles []string
	}{
		// Not a model.
		{name: "scan an empty file", setup: model(""), args: []string{"scan", "$D/m.onnx"},
			code: 1, stderr: []string{"m.onnx", "empty", "export or copy it again"}},
		{name: "scan a folder", setup: model(good), args: []string{"scan", "$D/"},
			code: 1, stderr: []string{"is a folder", ".onnx file"}},
		{name: "init an empty file", setup: model(""), args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"},
			code: 1, stderr: []string{"m.onnx", "empty"}},
		{name: "init a text file", setup: model("# A model\n\nThis file is not one.\n"), args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"},
			code: 1, stderr: []string{"m.onnx", "not a valid ONNX protobuf", "byte"}},
		{name: "init a text that decodes as protobuf", setup: model("hehe"), args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"},
			code: 1, stderr: []string{"m.onnx", "no graph"}},
		{name: "init a truncated model", setup: model(good[:len(good)/2]), args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"},
			code: 1, stderr: []string{"m.onnx", "byte", "cut short"}},
		{name: "init a graph of the wrong wire type", setup: model(graphAsVarint), args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"},
			code: 1, stderr: []string{"m.onnx", "no graph"}},
		{name: "init a length past the end", setup: model([]byte{0x3a, 0xff, 0xff, 0xff, 0x0f, 0x01}), args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"},
			code: 1, stderr: []string{"m.onnx", "byte"}},

		// Tensors whose data does not match their dims and type.
		{name: "init a weight whose dims overflow", setup: model(dwModel(floatWeight(8, 8, 1, 1<<40, 1<<40), nil, nil)),
			args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1, stderr: append([]string{`"dw"`, `"w"`, "overflow"}, refused...)},
		{name: "init a short raw_data", setup: model(dwModel(floatWeight(100, 8, 1, 3, 3), nil, nil)),
			args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1, stderr: append([]string{`"dw"`, `"w"`, "100 bytes", "288", "export it again"}, refused...)},
		{name: "scan a short raw_data", setup: model(dwModel(floatWeight(100, 8, 1, 3, 3), nil, nil)),
			args: []string{"scan", "$D/m.onnx"}, code: 1, stderr: []string{`"dw"`, `"w"`, "100 bytes"}},
		{name: "init raw_data and float_data", setup: model(dwModel(both, nil, nil)),
			args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1, stderr: append([]string{`"w"`, "both"}, refused...)},
		{name: "init a 10 GiB weight in 120 bytes", setup: model(dwModel(floatWeight(16, 1<<20, 1, 50, 50), nil, nil)),
			args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1, stderr: append([]string{`"w"`, "16 bytes"}, refused...)},
		{name: "init an INT8 weight", setup: model(dwModel(int8, nil, nil)),
			args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 0, stdout: []string{"skipped dw", "INT8", "rewrote 0"}, newFiles: []string{"out.onnx"}},
		{name: "scan a STRING weight", setup: model(dwModel(str, nil, nil)),
			args: []string{"scan", "$D/m.onnx"}, code: 0, stdout: []string{"skipped dw", "STRING"}},

		// External data.
		{name: "init a location given twice", setup: externalTwice("location"),
			args: []string{"init", "$D/m/model.onnx", "-o", "$D/out.onnx"}, code: 1, stderr: []string{"model.onnx", `"W_dw2"`, "location", "twice"}},
		{name: "scan a length given twice", setup: externalTwice("length"),
			args: []string{"scan", "$D/m/model.onnx"}, code: 1, stderr: []string{"model.onnx", `"W_dw2"`, "length", "twice"}},
		{name: "init external data into a missing folder", setup: func(t *testing.T, dir string) { externalModel(t, dir, func(*onnxpb.StringStringEntryProto) {}) },
			args: []string{"init", "$D/m/model.onnx", "-o", "$D/missing/out.onnx"}, code: 1, stderr: []string{"missing/out.onnx", "folder"}},

		// Graphs DESIGN.md calls broken.
		{name: "init a cycle", args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1,
			setup: model(dwModel(floatWeight(-1, 8, 1, 3, 3), []*onnxpb.NodeProto{
				opNode("a", "Add", []string{"x", "b_out"}, []string{"a_out"}),
				opNode("b", "Relu", []string{"a_out"}, []string{"b_out"}),
			}, nil)),
			stderr: append([]string{"m.onnx", "cycle", `"a"`}, refused...)},
		{name: "scan a cycle", args: []string{"scan", "$D/m.onnx"}, code: 1,
			setup: model(dwModel(floatWeight(-1, 8, 1, 3, 3), []*onnxpb.NodeProto{
				opNode("a", "Add", []string{"x", "b_out"}, []string{"a_out"}),
				opNode("b", "Relu", []string{"a_out"}, []string{"b_out"}),
			}, nil)),
			stderr: []string{"m.onnx", "cycle"}},
		{name: "init a read of a value nobody produces", args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1,
			setup:  model(dwModel(floatWeight(-1, 8, 1, 3, 3), []*onnxpb.NodeProto{opNode("r", "Relu", []string{"nowhere"}, []string{"h"})}, nil)),
			stderr: append([]string{`"r"`, `"nowhere"`}, refused...)},
		{name: "init two producers of a value", args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1,
			setup: model(dwModel(floatWeight(-1, 8, 1, 3, 3), []*onnxpb.NodeProto{
				opNode("r1", "Relu", []string{"x"}, []string{"h"}),
				opNode("r2", "Relu", []string{"x"}, []string{"h"}),
			}, nil)),
			stderr: append([]string{`"r1"`, `"r2"`, `"h"`}, refused...)},
		{name: "init a group that contradicts the channels", args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1,
			setup: func(t *testing.T, dir string) {
				mp := dwModel(floatWeight(-1, 8, 1, 3, 3), nil, nil)
				mp.Graph.Input[0] = shaped("x", 1, 16, 8, 8)
				writeFile(t, dir, "m.onnx", mp)
			},
			stderr: append([]string{`"dw"`, "group 8", "16", "broken"}, refused...)},
		{name: "init a grouped Conv with a weight of rank 2", setup: model(dwModel(floatWeight(-1, 8, 9), nil, nil)),
			args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1, stderr: append([]string{`"dw"`, `"w"`, "[8 9]"}, refused...)},
		{name: "init a scalar weight", setup: model(dwModel(floatWeight(-1), nil, nil)),
			args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1, stderr: append([]string{`"dw"`, `"w"`, "[]"}, refused...)},
		{name: "init a weight with an empty dim", setup: model(dwModel(floatWeight(-1, 8, 1, 0, 3), nil, nil)),
			args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1, stderr: append([]string{`"dw"`, `"w"`, "positive"}, refused...)},
		{name: "init a weight through Transpose", args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 0,
			setup: model(dwModel(nil, []*onnxpb.NodeProto{opNode("transpose_w", "Transpose", []string{"w_hwio"}, []string{"w"})},
				[]*onnxpb.TensorProto{func() *onnxpb.TensorProto {
					w := floatWeight(-1, 3, 3, 1, 8)
					w.Name = proto.String("w_hwio")
					return w
				}()}, shaped("w", 8, 1, 3, 3))),
			stdout: []string{"skipped dw", "Transpose", "transpose_w"}, newFiles: []string{"out.onnx"}},

		// Where the output goes.
		{name: "init -o under a regular file", setup: func(t *testing.T, dir string) {
			writeFile(t, dir, "m.onnx", good)
			writeFile(t, dir, "file.txt", "x")
		}, args: []string{"init", "$D/m.onnx", "-o", "$D/file.txt/out.onnx"}, code: 1, stderr: []string{"file.txt/out.onnx", "folder"}},
		{name: "init -o in a missing folder", setup: model(good),
			args: []string{"init", "$D/m.onnx", "-o", "$D/missing/out.onnx"}, code: 1, stderr: []string{"missing/out.onnx", "folder"}},
		{name: "init -o an existing folder", setup: func(t *testing.T, dir string) {
			writeFile(t, dir, "m.onnx", good)
			writeFile(t, dir, "out.onnx/keep", "x")
		}, args: []string{"init", "$D/m.onnx", "-o", "$D/out.onnx"}, code: 1, stderr: []string{"out.onnx", "is a folder"}},
		{name: "init -o the input", setup: model(good),
			args: []string{"init", "$D/m.onnx", "-o", "$D/m.onnx"}, code: 2, stderr: []string{"m.onnx", "in-place"}},
		{name: "init -o the input through ./", setup: model(good),
			args: []string{"init", "$D/m.onnx", "-o", "$D/./m.onnx"}, code: 2, stderr: []string{"in-place"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tt.setup(t, dir)
			before := listFiles(t, dir)
			args := make([]string, len(tt.args))
			for k, a := range tt.args {
				args[k] = strings.ReplaceAll(a, "$D/", dir+string(filepath.Separator))
			}
			code, stdout, stderr := runCLI(t, args...)
			if code != tt.code {
				t.Errorf("got exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			if missing := testutil.MissingKeywords(stderr, tt.stderr); len(missing) > 0 {
				t.Errorf("stderr lacks %q:\n%s", missing, stderr)
			}
			if missing := testutil.MissingKeywords(stdout, tt.stdout); len(missing) > 0 {
				t.Errorf("stdout lacks %q:\n%s", missing, stdout)
			}
			if code != 0 && !strings.HasPrefix(stderr, "convcov-onnx: ") {
				t.Errorf("stderr %q: want it to start with \"convcov-onnx: \"", stderr)
			}
			if strings.Contains(stderr, "internal error") || strings.Contains(stderr, "goroutine") {
				t.Errorf("a panic reached the user:\n%s", stderr)
			}

			after := listFiles(t, dir)
			for _, name := range tt.newFiles {
				if _, ok := after[name]; !ok {
					t.Errorf("no %s written", name)
				}
				delete(after, name)
			}
			if got, want := keys(after), keys(before); !slices.Equal(got, want) {
				t.Errorf("files in the folder: got %q, want %q plus %q", got, want, tt.newFiles)
			}
			for name, sum := range before {
				if after[name] != sum {
					t.Errorf("%s changed", name)
				}
			}
		})
	}
}

// TestScanCases runs scan on every model of the expectation files: a refused model exits
// 1 with its keywords on stderr; any other exits 0 and prints a line for every skipped
// node that names it and says why.
func TestScanCases(t *testing.T) {
	t.Parallel()
	for _, m := range testutil.Expectations(t) {
		t.Run(m.Name(), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, "scan", m.Path)
			if m.Outcome == testutil.OutcomeRefuse {
				checkRefusedRun(t, m, t.TempDir(), code, stderr)
				return
			}
			if code != 0 {
				t.Fatalf("scan: got exit status %d, want 0\nstderr:\n%s", code, stderr)
			}
			checkMessages(t, m, stdout, stderr)
		})
	}
}

// TestHugeDeclaredTensorCLI runs scan and init on a 120-byte model whose depthwise weight
// declares 10 GiB. Both refuse it without allocating anything near that: before the fix,
// init allocated 20 GB to draw the filters. Not parallel: it measures the process's
// allocations.
func TestHugeDeclaredTensorCLI(t *testing.T) {
	dir := t.TempDir()
	mp := dwModel(floatWeight(16, 1<<20, 1, 50, 50), nil, nil)
	mp.Graph.Node[0].Attribute[0].I = proto.Int64(1 << 20)
	mp.Graph.Input[0] = &onnxpb.ValueInfoProto{Name: proto.String("x")}
	mp.Graph.Output = nil
	mp.OpsetImport = nil
	writeFile(t, dir, "m.onnx", mp)
	if fi, err := os.Stat(filepath.Join(dir, "m.onnx")); err != nil || fi.Size() > 120 {
		t.Fatalf("the model: %v, %d bytes; want about 100", err, fi.Size())
	}
	for _, args := range [][]string{
		{"scan", filepath.Join(dir, "m.onnx")},
		{"init", filepath.Join(dir, "m.onnx"), "-o", filepath.Join(dir, "out.onnx")},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		code, _, stderr := runCLI(t, args...)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 32<<20 {
			t.Errorf("%s allocated %d MiB", args[0], n>>20)
		}
		if code != 1 || !strings.Contains(stderr, `"w"`) || !strings.Contains(stderr, "16 bytes") {
			t.Errorf("%s: exit status %d, stderr %q; want 1 and an error naming the weight", args[0], code, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out.onnx")); err == nil {
		t.Errorf("init wrote an output")
	}
}

// offsetBy returns an edit that moves every external tensor n bytes later in its file.
func offsetBy(n int) func(kv *onnxpb.StringStringEntryProto) {
	return func(kv *onnxpb.StringStringEntryProto) {
		if kv.GetKey() == "offset" {
			v, _ := strconv.Atoi(kv.GetValue())
			kv.Value = proto.String(strconv.Itoa(v + n))
		}
	}
}
