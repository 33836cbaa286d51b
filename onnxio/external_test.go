package onnxio

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// externalModel writes into dir a model with one FLOAT tensor "W" of 4 elements whose
// external data entries are kv (key, value pairs).
func externalModel(t *testing.T, dir string, kv ...string) string {
	t.Helper()
	tensor := &onnxpb.TensorProto{
		Name:         proto.String("W"),
		Dims:         []int64{4},
		DataType:     proto.Int32(Float),
		DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
	}
	for i := 0; i+1 < len(kv); i += 2 {
		tensor.ExternalData = append(tensor.ExternalData, &onnxpb.StringStringEntryProto{Key: proto.String(kv[i]), Value: proto.String(kv[i+1])})
	}
	mp := &onnxpb.ModelProto{
		IrVersion: proto.Int64(8),
		Graph:     &onnxpb.GraphProto{Name: proto.String("g"), Initializer: []*onnxpb.TensorProto{tensor}},
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExternalRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(dir string) // makes files beside the model
		kv    []string
		want  string // in the error
	}{
		{"absolute", nil, []string{"location", "/etc/passwd"}, "absolute"},
		{"dot dot", nil, []string{"location", "../secret.bin"}, `".."`},
		{"dot dot inside", nil, []string{"location", "sub/../../secret.bin"}, `".."`},
		{"backslash dot dot", nil, []string{"location", `sub\..\..\secret.bin`}, `".."`},
		{"missing file", nil, []string{"location", "nothere.bin"}, "nothere.bin"},
		{"past the end", func(dir string) { os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, 10), 0o644) },
			[]string{"location", "w.bin", "offset", "0", "length", "16"}, "past the end"},
		{"offset past the end", func(dir string) { os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, 16), 0o644) },
			[]string{"location", "w.bin", "offset", "17"}, "past the end"},
		{"key given twice", func(dir string) { os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, 16), 0o644) },
			[]string{"location", "w.bin", "location", "w.bin"}, "twice"},
		{"negative offset", func(dir string) { os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, 16), 0o644) },
			[]string{"location", "w.bin", "offset", "-4"}, "non-negative"},
		{"no location", nil, []string{"offset", "0"}, "without a location"},
		{"symbolic link out of the folder", func(dir string) {
			outside := filepath.Join(filepath.Dir(dir), "outside.bin")
			os.WriteFile(outside, make([]byte, 16), 0o644)
			os.Symlink(outside, filepath.Join(dir, "link.bin"))
		}, []string{"location", "link.bin"}, "symbolic link"},
		{"a folder", func(dir string) { os.Mkdir(filepath.Join(dir, "sub"), 0o755) }, []string{"location", "sub"}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "model")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(dir)
			}
			_, err := Load(externalModel(t, dir, tt.kv...))
			if !errors.Is(err, ErrExternalData) {
				t.Fatalf("Load: %v, want ErrExternalData", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `tensor "W"`) {
				t.Errorf("error %q does not contain %q and the tensor name", err, tt.want)
			}
		})
	}
}

func TestExternalAccepted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	data := make([]byte, 32)
	data[8+3] = 0x3f // 1.0 as little-endian float32 at offset 8... bytes 8..11 = 00 00 80 3f
	data[8+2] = 0x80
	os.WriteFile(filepath.Join(dir, "sub", "w.bin"), data, 0o644)
	os.Symlink(filepath.Join("sub", "w.bin"), filepath.Join(dir, "inside.bin"))
	for _, loc := range []string{"sub/w.bin", "./sub/w.bin", "inside.bin"} {
		m, err := Load(externalModel(t, dir, "location", loc, "offset", "8", "length", "16"))
		if err != nil {
			t.Errorf("location %q: %v", loc, err)
			continue
		}
		v, err := m.Values(m.Tensors()[0])
		if err != nil || !slices.Equal(v, []float64{1, 0, 0, 0}) {
			t.Errorf("location %q: values %v, %v; want [1 0 0 0]", loc, v, err)
		}
	}
}

// TestSaveExternal rewrites one tensor of external-data models, to a new folder and in
// place.
func TestSaveExternal(t *testing.T) {
	t.Parallel()
	tests := []struct{ dir, model, tensor string }{
		{"../testdata/cases/10_external_data", "model.onnx", "W_dw2"},
		{"../testdata/models/fixtures/14a_external_one_file", "model.onnx", ""},
		{"../testdata/models/fixtures/14b_external_two_files", "model.onnx", ""},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			t.Parallel()
			in := filepath.Join(tt.dir, tt.model)
			files, _ := filepath.Glob(filepath.Join(tt.dir, "*"))
			sub, _ := filepath.Glob(filepath.Join(tt.dir, "*", "*"))
			before := map[string][32]byte{}
			for _, f := range append(files, sub...) {
				if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
					before[f] = sha(t, f)
				}
			}
			m, err := Load(in)
			if err != nil {
				t.Fatal(err)
			}
			if !m.HasExternalData() {
				t.Fatalf("%s has no external data", in)
			}
			target := pickExternal(t, m, tt.tensor)
			n, _ := Len(target)
			want := pattern(int(n))
			old := map[string][]float64{}
			for _, x := range m.Tensors() {
				if IsFloat(x.GetDataType()) {
					old[x.GetName()], _ = m.Values(x)
				}
			}
			if err := m.SetValues(target, want); err != nil {
				t.Fatal(err)
			}

			// To another folder: the model and its own data file.
			out := filepath.Join(t.TempDir(), "out.onnx")
			if err := m.Save(out); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(out + ".data"); err != nil {
				t.Errorf("no data file beside the output: %v", err)
			}
			for f, h := range before {
				if sha(t, f) != h {
					t.Errorf("saving to another folder changed the input file %s", f)
				}
			}
			checkValues(t, out, target.GetName(), want, old)

			// In place, on a copy: only the data file changes, and only in the tensor.
			cp := t.TempDir()
			copyTree(t, tt.dir, cp)
			inCopy := filepath.Join(cp, tt.model)
			modelBefore := sha(t, inCopy)
			mc, err := Load(inCopy)
			if err != nil {
				t.Fatal(err)
			}
			if err := mc.SetValues(pickExternal(t, mc, target.GetName()), want); err != nil {
				t.Fatal(err)
			}
			if err := mc.Save(inCopy); err != nil {
				t.Fatal(err)
			}
			if sha(t, inCopy) != modelBefore {
				t.Errorf("an in-place rewrite of external tensors changed the model file")
			}
			checkValues(t, inCopy, target.GetName(), want, old)
		})
	}
}

// pickExternal returns the named external tensor, or the first external float tensor
// with at least 9 elements when name is "".
func pickExternal(t *testing.T, m *Model, name string) *onnxpb.TensorProto {
	t.Helper()
	for _, x := range m.Tensors() {
		n, _ := Len(x)
		if m.Storage(x) == "external" && IsFloat(x.GetDataType()) && (x.GetName() == name || name == "" && n >= 9) {
			return x
		}
	}
	t.Fatalf("no external tensor %q", name)
	return nil
}

// checkValues loads path and checks that tensor has want and every other float tensor its
// old values.
func checkValues(t *testing.T, path, tensor string, want []float64, old map[string][]float64) {
	t.Helper()
	m, err := Load(path)
	if err != nil {
		t.Fatalf("reloading %s: %v", path, err)
	}
	for _, x := range m.Tensors() {
		if !IsFloat(x.GetDataType()) {
			continue
		}
		got, err := m.Values(x)
		if err != nil {
			t.Fatalf("%s: %v", x.GetName(), err)
		}
		expect := old[x.GetName()]
		if x.GetName() == tensor {
			expect = want
		}
		if !slices.Equal(got, expect) {
			t.Errorf("%s: tensor %q has other values than expected", path, x.GetName())
		}
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSaveOverDataFile is the regression test for a save whose target is the input's own
// external data file: it was replaced by the model, leaving the input without its weights.
func TestSaveOverDataFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyTree(t, "../testdata/models/fixtures/14a_external_one_file", dir)
	data := filepath.Join(dir, "weights.bin")
	before := sha(t, data)
	m, err := Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(data); err == nil || !strings.Contains(err.Error(), "weights.bin") {
		t.Errorf("Save over the input's data file: %v, want an error naming weights.bin", err)
	}
	if sha(t, data) != before {
		t.Errorf("the input's data file was changed")
	}
}
