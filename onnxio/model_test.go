package onnxio

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// modelFiles lists the .onnx files under testdata, and under the shared model folder when
// it is there ($CONVCOV_SHARED, or ../shared beside the repository).
func modelFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	roots := []string{"../testdata"}
	if shared := sharedDir(); shared != "" {
		roots = append(roots, filepath.Join(shared, "models"), filepath.Join(shared, "cases"))
	}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".onnx") {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) < 20 {
		t.Fatalf("found %d models under %v, want the test models", len(files), roots)
	}
	return files
}

func sharedDir() string {
	for _, dir := range []string{os.Getenv("CONVCOV_SHARED"), "../../shared"} {
		if fi, err := os.Stat(filepath.Join(dir, "models")); dir != "" && err == nil && fi.IsDir() {
			return dir
		}
	}
	return ""
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestRoundTrip checks that a model saved without changes is its input byte for byte, and
// that the decoded skeleton plus the raw_data the index points at is the full decoding.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, path := range modelFiles(t) {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if m.HasExternalData() {
				// Saving in place without changes writes nothing at all.
				before := sha(t, path)
				if err := m.Save(path); err != nil {
					t.Fatalf("Save in place: %v", err)
				}
				if sha(t, path) != before {
					t.Errorf("saving unchanged in place rewrote %s", path)
				}
				return
			}
			var buf bytes.Buffer
			if _, err := m.WriteTo(&buf); err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			if !bytes.Equal(buf.Bytes(), src) {
				t.Errorf("WriteTo of an unchanged model: %d bytes differ from the %d-byte input", len(buf.Bytes()), len(src))
			}
			out := filepath.Join(t.TempDir(), "out.onnx")
			if err := m.Save(out); err != nil {
				t.Fatalf("Save: %v", err)
			}
			if sha(t, out) != sha256.Sum256(src) {
				t.Errorf("Save of an unchanged model differs from the input")
			}

			full := &onnxpb.ModelProto{}
			if err := proto.Unmarshal(src, full); err != nil {
				t.Fatalf("proto.Unmarshal: %v", err)
			}
			for _, tensor := range m.Tensors() {
				if r, ok := m.locs[tensor].raw(); ok {
					tensor.RawData = src[r.payload:r.end]
				}
			}
			if !proto.Equal(full, m.Proto) {
				t.Errorf("skeleton decoding with raw_data restored differs from proto.Unmarshal")
			}
		})
	}
}

// fixtureTensor is a tensor entry of testdata/models/fixtures/expect.json.
type fixtureTensor struct {
	Name     string    `json:"name"`
	Dims     []int64   `json:"dims"`
	DataType int32     `json:"data_type"`
	Storage  any       `json:"storage"`
	Sum      float64   `json:"sum"`
	SumSq    float64   `json:"sum_sq"`
	First3   []float64 `json:"first3"`
}

type valueCase struct {
	file, tensor, storage string
	sum, sumSq            float64
	first3                []float64
	tol                   float64
}

func valueCases(t *testing.T) []valueCase {
	t.Helper()
	var expect struct {
		Models []struct {
			File    string          `json:"file"`
			Tensors []fixtureTensor `json:"tensors"`
		} `json:"models"`
	}
	b, err := os.ReadFile("../testdata/models/fixtures/expect.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &expect); err != nil {
		t.Fatal(err)
	}
	var cases []valueCase
	for _, m := range expect.Models {
		for _, tt := range m.Tensors {
			storage, _ := tt.Storage.(string)
			if sm, ok := tt.Storage.(map[string]any); ok {
				storage, _ = sm["kind"].(string)
			}
			if !IsFloat(tt.DataType) || storage == "sparse_initializer" {
				continue
			}
			// The sums are exactly rounded (math.fsum); ours add up to 3000 elements in
			// order, whose rounding error stays below 1e-12 relative.
			cases = append(cases, valueCase{m.File, tt.Name, storage, tt.Sum, tt.SumSq, tt.First3, 1e-12})
		}
	}
	// The shared cases' table (testdata/cases/EXPECT.md) gives 9 significant digits.
	for _, c := range []valueCase{
		{"../../cases/10_external_data/model.onnx", "W_dw1", "external", -2.23634705, 4.44292972, []float64{-0.424675047, 0.134499252, -0.0564034991}, 1e-8},
		{"../../cases/10_external_data/model.onnx", "W_dw2", "external", 1.16578026, 3.75279979, []float64{0.242071435, 0.26743716, -0.277995497}, 1e-8},
		{"../../cases/10_external_data/model.onnx", "W_pw", "external", 0.801485969, 5.30545368, []float64{0.27245, 0.352142572, -0.336033195}, 1e-8},
		{"../../cases/11_fp16_storage.onnx", "W_dw1_fp16_raw", "raw_data", 2.55491638, 3.74039743, []float64{0.352294922, 0.11730957, -0.413574219}, 1e-8},
		{"../../cases/11_fp16_storage.onnx", "W_dw2_fp16_int32data", "int32_data", -2.53303528, 5.38326595, []float64{-0.0716552734, 0.197265625, -0.071472168}, 1e-8},
		{"../../cases/12_float_data_vs_raw.onnx", "W_dw1_float_data", "float_data", -0.803800229, 4.1816212, []float64{-0.11765755, 0.0206793454, -0.230093554}, 1e-8},
		{"../../cases/12_float_data_vs_raw.onnx", "W_dw2_raw", "raw_data", -2.69054451, 5.53346401, []float64{0.353053242, 0.0464035682, 0.0749399215}, 1e-8},
	} {
		cases = append(cases, c)
	}
	return cases
}

// TestValues decodes every float tensor the fixtures and cases record statistics for.
func TestValues(t *testing.T) {
	t.Parallel()
	cases := valueCases(t)
	if len(cases) < 20 {
		t.Fatalf("only %d tensors with recorded values", len(cases))
	}
	storages := map[string]bool{}
	for _, c := range cases {
		storages[c.storage] = true
		t.Run(c.file+"/"+c.tensor, func(t *testing.T) {
			t.Parallel()
			m, err := Load(filepath.Join("../testdata/models/fixtures", c.file))
			if err != nil {
				t.Fatal(err)
			}
			tensor := findTensor(t, m, c.tensor)
			if got := m.Storage(tensor); got != c.storage {
				t.Errorf("Storage = %q, want %q", got, c.storage)
			}
			v, err := m.Values(tensor)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := Len(tensor)
			if int64(len(v)) != n {
				t.Fatalf("got %d values, want %d", len(v), n)
			}
			var sum, sumSq float64
			for _, x := range v {
				sum += x
				sumSq += x * x
			}
			close := func(got, want float64) bool { return math.Abs(got-want) <= c.tol*max(1, math.Abs(want)) }
			if !close(sum, c.sum) || !close(sumSq, c.sumSq) {
				t.Errorf("sum, sum of squares = %.12g, %.12g, want %.12g, %.12g", sum, sumSq, c.sum, c.sumSq)
			}
			for i, want := range c.first3 {
				if !close(v[i], want) {
					t.Errorf("value %d = %.12g, want %.12g", i, v[i], want)
				}
			}
		})
	}
	for _, s := range []string{"raw_data", "float_data", "int32_data", "double_data", "external"} {
		if !storages[s] {
			t.Errorf("no test tensor is stored in %s", s)
		}
	}
}

func findTensor(t *testing.T, m *Model, name string) *onnxpb.TensorProto {
	t.Helper()
	for _, tensor := range m.Tensors() {
		if tensor.GetName() == name {
			return tensor
		}
	}
	t.Fatalf("no tensor %q", name)
	return nil
}

// pattern returns n distinct values that every float type holds exactly.
func pattern(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(i%64-32) / 64
	}
	return v
}

// TestSetValues rewrites one tensor of each storage kind, saves, reloads, and checks that
// the tensor has the new values in its old storage and that nothing else changed.
func TestSetValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, tensor string
		sameSize     bool // the rewrite keeps every length
	}{
		{"03a_storage_float_types.onnx", "W_f32_raw", true},
		{"03a_storage_float_types.onnx", "W_f32_float_data", true},
		{"03a_storage_float_types.onnx", "W_f16_raw", true},
		{"03a_storage_float_types.onnx", "W_f16_int32_data", false},
		{"03a_storage_float_types.onnx", "W_bf16_raw", true},
		{"03a_storage_float_types.onnx", "W_bf16_int32_data", false},
		{"03b_storage_double.onnx", "W_f64_raw", true},
		{"03b_storage_double.onnx", "W_f64_double_data", true},
		{"../../cases/12_float_data_vs_raw.onnx", "W_dw1_float_data", true},
		{"../../cases/11_fp16_storage.onnx", "W_dw2_fp16_int32data", false},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.tensor, func(t *testing.T) {
			t.Parallel()
			in := filepath.Join("../testdata/models/fixtures", tt.file)
			m, err := Load(in)
			if err != nil {
				t.Fatal(err)
			}
			tensor := findTensor(t, m, tt.tensor)
			storage := m.Storage(tensor)
			n, _ := Len(tensor)
			want := pattern(int(n))
			if err := m.SetValues(tensor, want); err != nil {
				t.Fatal(err)
			}
			if got, _ := m.Values(tensor); !slices.Equal(got, want) {
				t.Errorf("Values after SetValues = %v, want %v", got[:3], want[:3])
			}
			out := filepath.Join(t.TempDir(), "out.onnx")
			if err := m.Save(out); err != nil {
				t.Fatal(err)
			}
			inSize, outSize := fileSize(t, in), fileSize(t, out)
			if tt.sameSize && inSize != outSize {
				t.Errorf("output has %d bytes, input %d; a same-length rewrite must keep the size", outSize, inSize)
			}

			// Reload: the tensor has the new values in the same storage.
			m2, err := Load(out)
			if err != nil {
				t.Fatal(err)
			}
			t2 := findTensor(t, m2, tt.tensor)
			if got := m2.Storage(t2); got != storage {
				t.Errorf("storage after save = %q, want %q", got, storage)
			}
			if got, err := m2.Values(t2); err != nil || !slices.Equal(got, want) {
				t.Errorf("values after save = %v (%v), want %v", got[:3], err, want[:3])
			}

			// Everything else is as it was: the full decodings are equal once the
			// rewritten tensor is copied over.
			a, b := unmarshalFile(t, in), unmarshalFile(t, out)
			ta, tb := findProto(a, tt.tensor), findProto(b, tt.tensor)
			if len(tb.GetRawData()) > 0 && (len(tb.GetFloatData()) > 0 || len(tb.GetInt32Data()) > 0 || len(tb.GetDoubleData()) > 0) {
				t.Errorf("rewritten tensor has raw_data and a typed field")
			}
			proto.Reset(ta)
			proto.Merge(ta, tb)
			if !proto.Equal(a, b) {
				t.Errorf("output differs from the input beyond tensor %q", tt.tensor)
			}
		})
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func unmarshalFile(t *testing.T, path string) *onnxpb.ModelProto {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(b, mp); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return mp
}

func findProto(mp *onnxpb.ModelProto, name string) *onnxpb.TensorProto {
	for _, tensor := range mp.GetGraph().GetInitializer() {
		if tensor.GetName() == name {
			return tensor
		}
	}
	return nil
}

// TestSetValuesErrors checks the refusals of SetValues.
func TestSetValuesErrors(t *testing.T) {
	t.Parallel()
	m, err := Load("../testdata/cases/12_float_data_vs_raw.onnx")
	if err != nil {
		t.Fatal(err)
	}
	tensor := findTensor(t, m, "W_dw2_raw")
	if err := m.SetValues(tensor, make([]float64, 3)); err == nil {
		t.Errorf("SetValues with 3 values for 72 elements succeeded")
	}
	if err := m.SetValues(&onnxpb.TensorProto{Name: proto.String("stranger")}, nil); err == nil {
		t.Errorf("SetValues on a tensor of another model succeeded")
	}
}

// failWriter fails once more than limit bytes were written.
type failWriter struct{ limit, n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.limit {
		return 0, errors.New("disk full")
	}
	w.n += len(p)
	return len(p), nil
}

func TestWriteFailure(t *testing.T) {
	t.Parallel()
	m, err := Load("../testdata/models/convmixer_digits_d64_l4_k9.onnx")
	if err != nil {
		t.Fatal(err)
	}
	tensor := findTensor(t, m, "4.0.fn.0.weight")
	if err := m.SetValues(tensor, pattern(64*81)); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{0, 1000, 100000} {
		if _, err := m.WriteTo(&failWriter{limit: limit}); err == nil {
			t.Errorf("WriteTo with a writer that fails after %d bytes: no error", limit)
		}
	}

	// A folder that cannot be written: an error, and no file is left behind.
	if os.Geteuid() == 0 {
		t.Log("running as root: a read-only folder is writable, checking a missing folder instead")
		if err := m.Save(filepath.Join(t.TempDir(), "missing", "out.onnx")); err == nil {
			t.Errorf("Save into a missing folder succeeded")
		}
		return
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o755)
	if err := m.Save(filepath.Join(dir, "out.onnx")); err == nil {
		t.Errorf("Save into a read-only folder succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("a failed save left %v", entries)
	}
}

func TestDecodeMalformed(t *testing.T) {
	t.Parallel()
	good, err := os.ReadFile("../testdata/cases/21_single_depthwise.onnx")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"text", []byte("this is not a model\n")},
		{"truncated", good[:len(good)/2]},
		{"one byte short", good[:len(good)-1]},
		{"bad tag", []byte{0x00, 0x01}},
		{"length past the end", []byte{0x3a, 0xff, 0xff, 0xff, 0x0f, 0x01}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.data)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Decode: %v, want ErrMalformed", err)
			}
		})
	}
}
