package onnxio

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// Broken and crafted input: each kind of issue 5 that onnxio answers, with the answer.

// oneTensorModel encodes a model whose graph holds the initializer x.
func oneTensorModel(t *testing.T, x *onnxpb.TensorProto) []byte {
	t.Helper()
	b, err := proto.Marshal(&onnxpb.ModelProto{
		IrVersion: proto.Int64(8),
		Graph:     &onnxpb.GraphProto{Name: proto.String("g"), Initializer: []*onnxpb.TensorProto{x}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNotAModel feeds Load files that are not ONNX models. Each is refused with
// ErrMalformed, an error that names the file and says what to do.
func TestNotAModel(t *testing.T) {
	t.Parallel()
	good, err := os.ReadFile("../testdata/cases/21_single_depthwise.onnx")
	if err != nil {
		t.Fatal(err)
	}
	tensorFile, err := proto.Marshal(&onnxpb.TensorProto{
		Name: proto.String("w"), Dims: []int64{2}, DataType: proto.Int32(Float), RawData: make([]byte, 8),
	})
	if err != nil {
		t.Fatal(err)
	}
	unnamedTensor, err := proto.Marshal(&onnxpb.TensorProto{Dims: []int64{2}, DataType: proto.Int32(Float), RawData: make([]byte, 8)})
	if err != nil {
		t.Fatal(err)
	}
	// A graph (field 7) given as a varint: protobuf would take it as an unknown field.
	graphAsVarint := protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 1)
	// Singular graph given twice: protobuf would merge the two.
	graph := protowire.AppendBytes(protowire.AppendTag(nil, 7, protowire.BytesType), nil)
	twoGraphs := append(append([]byte{}, graph...), graph...)
	// Graphs nested in If branches deeper than the walker follows.
	deep := &onnxpb.GraphProto{Name: proto.String("g")}
	for range 60 {
		deep = &onnxpb.GraphProto{Node: []*onnxpb.NodeProto{{OpType: proto.String("If"), Attribute: []*onnxpb.AttributeProto{
			{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: deep},
		}}}}
	}
	deepModel, err := proto.Marshal(&onnxpb.ModelProto{Graph: deep})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		data []byte
		want string // in the error, besides the file's name
	}{
		{"empty", nil, "empty"},
		{"text", []byte("this is not a model\n"), "byte"},
		{"text that decodes as protobuf", []byte("hehe"), "no graph"},
		{"text of fixed64 records", []byte("a12345678"), "no graph"},
		{"JSON", []byte(`{"graph": {}}`), "byte"},
		{"a TensorProto, not a model", tensorFile, "not a valid ONNX protobuf"},
		{"an unnamed TensorProto", unnamedTensor, "no graph"},
		{"truncated", good[:len(good)/2], "byte"},
		{"one byte short", good[:len(good)-1], "byte"},
		{"bad tag", []byte{0x00, 0x01}, "byte"},
		{"wire type 7", []byte{0x3f, 0x01}, "byte"},
		{"graph as a varint", graphAsVarint, "no graph"},
		{"graph twice", twoGraphs, "more than once"},
		{"length past the end", []byte{0x3a, 0xff, 0xff, 0xff, 0x0f, 0x01}, "byte"},
		{"length past the end inside a tensor", cutShort(oneTensorModel(t, &onnxpb.TensorProto{Name: proto.String("w"), RawData: []byte{1, 2, 3}})), "byte"},
		{"nested too deep", deepModel, "nested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "bad.onnx")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Load: got %v, want ErrMalformed", err)
			}
			for _, want := range []string{path, tt.want, "export or copy it again"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// cutShort drops the last byte of b.
func cutShort(b []byte) []byte { return b[:len(b)-1] }

// TestTensorDataRefused checks the tensors whose stored data does not match their dims and
// type: Check, Values and SetValues refuse them with ErrTensorData, naming the tensor.
func TestTensorDataRefused(t *testing.T) {
	t.Parallel()
	float := proto.Int32(Float)
	tests := []struct {
		name   string
		tensor *onnxpb.TensorProto
		want   string
	}{
		{"dims overflow int64", &onnxpb.TensorProto{Dims: []int64{1 << 32, 1 << 32}, DataType: float, RawData: make([]byte, 4)}, "overflow"},
		{"bytes overflow int64", &onnxpb.TensorProto{Dims: []int64{1 << 31, 1 << 31}, DataType: float, RawData: make([]byte, 4)}, "overflow"},
		{"negative dim", &onnxpb.TensorProto{Dims: []int64{-1, 4}, DataType: float, RawData: make([]byte, 16)}, "negative"},
		{"raw_data too short", &onnxpb.TensorProto{Dims: []int64{8, 1, 3, 3}, DataType: float, RawData: make([]byte, 287)}, "287 bytes"},
		{"raw_data too long", &onnxpb.TensorProto{Dims: []int64{8, 1, 3, 3}, DataType: float, RawData: make([]byte, 292)}, "292 bytes"},
		{"float16 raw_data of an odd length", &onnxpb.TensorProto{Dims: []int64{3}, DataType: proto.Int32(Float16), RawData: make([]byte, 5)}, "5 bytes"},
		{"float_data too short", &onnxpb.TensorProto{Dims: []int64{2, 3}, DataType: float, FloatData: make([]float32, 5)}, "5 elements"},
		{"no data at all", &onnxpb.TensorProto{Dims: []int64{2, 3}, DataType: float}, "0 elements"},
		{"raw_data and float_data", &onnxpb.TensorProto{Dims: []int64{2}, DataType: float, RawData: make([]byte, 8), FloatData: []float32{1, 2}}, "both"},
		{"raw_data and int32_data", &onnxpb.TensorProto{Dims: []int64{2}, DataType: proto.Int32(Float16), RawData: make([]byte, 4), Int32Data: []int32{1, 2}}, "both"},
		{"int8", &onnxpb.TensorProto{Dims: []int64{8, 1, 3, 3}, DataType: proto.Int32(int32(onnxpb.TensorProto_INT8)), RawData: make([]byte, 72)}, "INT8"},
		{"string", &onnxpb.TensorProto{Dims: []int64{2}, DataType: proto.Int32(int32(onnxpb.TensorProto_STRING)), StringData: [][]byte{[]byte("a"), []byte("b")}}, "STRING"},
		{"unknown type", &onnxpb.TensorProto{Dims: []int64{2}, DataType: proto.Int32(99), RawData: make([]byte, 8)}, "type 99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.tensor.Name = proto.String("W")
			m, err := Decode(oneTensorModel(t, tt.tensor))
			if err != nil {
				t.Fatalf("Decode: %v (a bad tensor is refused when read, not when loaded)", err)
			}
			x := m.Tensors()[0]
			errs := map[string]error{"Check": m.Check(x), "SetValues": m.SetValues(x, make([]float64, 2))}
			_, errs["Values"] = m.Values(x)
			for op, err := range errs {
				if !errors.Is(err, ErrTensorData) {
					t.Errorf("%s: got %v, want ErrTensorData", op, err)
					continue
				}
				if !strings.Contains(err.Error(), `tensor "W"`) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: error %q does not name the tensor and say %q", op, err, tt.want)
				}
			}
			if m.Changed(x) {
				t.Errorf("a refused SetValues changed the tensor")
			}
		})
	}
}

// allocated returns the bytes the process allocated while f ran. Tests that call it must
// not be parallel, so that no other test allocates meanwhile.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHugeDeclaredTensor loads files of about 100 bytes that declare a tensor of 10 GB,
// stored in each way a tensor can be, and reads it. Nothing may allocate memory in
// proportion to the declared size: the data is checked against the dims before a buffer
// is made. Not parallel: it measures the process's allocations.
func TestHugeDeclaredTensor(t *testing.T) {
	dims := []int64{1 << 20, 1, 50, 50} // 2,621,440,000 FLOAT elements: 10 GiB
	float := proto.Int32(Float)
	tests := []struct {
		name   string
		tensor *onnxpb.TensorProto
		data   int // bytes of the external data file, when there is one
	}{
		{"raw_data", &onnxpb.TensorProto{Dims: dims, DataType: float, RawData: make([]byte, 16)}, 0},
		{"float_data", &onnxpb.TensorProto{Dims: dims, DataType: float, FloatData: make([]float32, 4)}, 0},
		{"double_data", &onnxpb.TensorProto{Dims: dims, DataType: proto.Int32(Double), DoubleData: make([]float64, 2)}, 0},
		{"int32_data", &onnxpb.TensorProto{Dims: dims, DataType: proto.Int32(Float16), Int32Data: make([]int32, 4)}, 0},
		{"external data without a length", externalTensor(dims, "w.bin"), 64},
		{"external data with the length of the dims", externalTensor(dims, "w.bin", "length", "10485760000"), 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "huge.onnx")
			tt.tensor.Name = proto.String("W")
			b := oneTensorModel(t, tt.tensor)
			if len(b) > 120 {
				t.Fatalf("the model has %d bytes, want about 100", len(b))
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.data > 0 {
				if err := os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, tt.data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var errs []error
			n := allocated(func() {
				m, err := Load(path)
				if err != nil {
					errs = append(errs, err)
					return
				}
				x := m.Tensors()[0]
				errs = append(errs, m.Check(x))
				_, err = m.Values(x)
				errs = append(errs, err)
				_, err = m.RawData(x)
				errs = append(errs, err)
			})
			if n > 8<<20 {
				t.Errorf("reading a %d-byte model that declares 10 GiB allocated %d MiB", len(b), n>>20)
			}
			for _, err := range errs[:min(len(errs), 2)] { // RawData does not check dims
				if !errors.Is(err, ErrTensorData) && !errors.Is(err, ErrExternalData) {
					t.Errorf("got %v, want ErrTensorData or ErrExternalData", err)
				}
			}
		})
	}
}

// externalTensor is a FLOAT tensor whose data is in the file location, with more external
// data entries kv (key, value pairs).
func externalTensor(dims []int64, location string, kv ...string) *onnxpb.TensorProto {
	x := &onnxpb.TensorProto{
		Name: proto.String("W"), Dims: dims, DataType: proto.Int32(Float),
		DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
		ExternalData: []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String(location)}},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		x.ExternalData = append(x.ExternalData, &onnxpb.StringStringEntryProto{Key: proto.String(kv[i]), Value: proto.String(kv[i+1])})
	}
	return x
}

// TestExternalRefusedBeforeRead gives Load a model whose first external tensor is fine and
// whose second is refused, for each reason of DESIGN.md. Load must refuse the model naming
// the second tensor without opening any data file: every read of external data goes
// through openData, which the test counts. Not parallel: it replaces openData.
func TestExternalRefusedBeforeRead(t *testing.T) {
	var opens atomic.Int64
	defer func(open func(string) (*os.File, error)) { openData = open }(openData)
	openData = func(name string) (*os.File, error) {
		opens.Add(1)
		return os.Open(name)
	}

	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		kv    []string // external data entries of the second tensor
		want  string
	}{
		{"absolute", nil, []string{"location", "/etc/hostname"}, "absolute"},
		{"dot dot", nil, []string{"location", "sub/../../w.bin"}, `".."`},
		{"symbolic link out of the folder", func(t *testing.T, dir string) {
			if err := os.Symlink(filepath.Join(filepath.Dir(dir), "outside.bin"), filepath.Join(dir, "link.bin")); err != nil {
				t.Fatal(err)
			}
		}, []string{"location", "link.bin"}, "symbolic link"},
		{"missing file", nil, []string{"location", "gone.bin"}, "gone.bin"},
		{"offset and length past the end", nil, []string{"location", "w.bin", "offset", "60", "length", "16"}, "past the end"},
		{"length given twice", nil, []string{"location", "w.bin", "length", "16", "length", "16"}, "twice"},
		{"location given twice", nil, []string{"location", "w.bin", "location", "w.bin"}, "twice"},
		{"NUL in the location", nil, []string{"location", "w.bin\x00.txt"}, "NUL"},
		{"offset that is not a number", nil, []string{"location", "w.bin", "offset", "0x10"}, `offset "0x10"`},
		{"length that is not a number", nil, []string{"location", "w.bin", "length", "sixteen"}, `length "sixteen"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "model")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{filepath.Join(dir, "w.bin"), filepath.Join(base, "outside.bin")} {
				if err := os.WriteFile(f, make([]byte, 64), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			first := externalTensor([]int64{4}, "w.bin", "offset", "0", "length", "16")
			first.Name = proto.String("W_fine")
			second := externalTensor([]int64{4}, "", tt.kv...)
			second.ExternalData = second.ExternalData[1:] // the location comes from kv
			second.Name = proto.String("W_refused")
			b, err := proto.Marshal(&onnxpb.ModelProto{Graph: &onnxpb.GraphProto{Initializer: []*onnxpb.TensorProto{first, second}}})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "model.onnx")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}

			opens.Store(0)
			_, err = Load(path)
			if !errors.Is(err, ErrExternalData) {
				t.Fatalf("Load: got %v, want ErrExternalData", err)
			}
			if !strings.Contains(err.Error(), `tensor "W_refused"`) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name tensor W_refused and say %q", err, tt.want)
			}
			if n := opens.Load(); n != 0 {
				t.Errorf("Load opened external data %d times before refusing the model", n)
			}
		})
	}

	// The count sees reads: the same model with a sound second tensor reads once per Values.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, 64), 0o644); err != nil {
		t.Fatal(err)
	}
	b := oneTensorModel(t, externalTensor([]int64{4}, "w.bin", "offset", "16"))
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	opens.Store(0)
	m, err := Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n != 0 {
		t.Errorf("Load opened external data %d times; it only checks", n)
	}
	if _, err := m.Values(m.Tensors()[0]); err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("Values opened external data %d times, want 1", n)
	}
}

// TestDecodeManyTensors is the regression test for a decoder that took time quadratic in
// the number of tensors of a graph: a 700 KB file of 100,000 one-byte initializers took
// 27 s, so a crafted file of a few MB would hang the program. It now takes well under a
// second.
func TestDecodeManyTensors(t *testing.T) {
	t.Parallel()
	g := &onnxpb.GraphProto{}
	for range 100000 {
		g.Initializer = append(g.Initializer, &onnxpb.TensorProto{DataType: proto.Int32(Float16), RawData: []byte{1}})
	}
	b, err := proto.Marshal(&onnxpb.ModelProto{Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("decoding %d tensors took %v", len(m.Tensors()), d)
	}
}

// TestSaveUnwritable saves where no file can be written. Tests run as root here, where a
// read-only folder is writable, so the folders are ones that no user can write into: a
// path under a regular file, a missing folder, and a target that is itself a folder. Each
// save fails naming the target and leaves nothing behind.
func TestSaveUnwritable(t *testing.T) {
	t.Parallel()
	m, err := Load("../testdata/cases/21_single_depthwise.onnx")
	if err != nil {
		t.Fatal(err)
	}
	x := m.Tensors()[0]
	n, _ := Len(x)
	if err := m.SetValues(x, pattern(int(n))); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "folder.onnx"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := treeSums(t, dir)
	for _, target := range []string{"file.txt/out.onnx", "missing/out.onnx", "folder.onnx"} {
		err := m.Save(filepath.Join(dir, target))
		if err == nil {
			t.Errorf("Save(%s): no error", target)
			continue
		}
		if !strings.Contains(err.Error(), target) {
			t.Errorf("Save(%s): error %q does not name the target", target, err)
		}
	}
	after := treeSums(t, dir)
	if len(after) != len(before) {
		t.Errorf("failed saves left files: got %d files, want %d", len(after), len(before))
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "folder.onnx")); len(entries) > 0 {
		t.Errorf("a failed save left %s in the target folder", entries[0].Name())
	}
}
