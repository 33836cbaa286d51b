package onnxio

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// fileSizeLimit is small enough that every save below fails partway through its first
// file, and large enough for the bytes before it.
const fileSizeLimit = 64 << 10

// TestSaveDiskFull saves models where the disk fills up halfway through a file. A full
// disk is emulated without root: a child process (this test binary again) lowers its
// RLIMIT_FSIZE, so that a write past 64 KiB of any file fails with EFBIG, as one past the
// end of a full disk fails with ENOSPC. Each save must fail, leave no file behind (not even
// a temporary one), and leave its input as it was: a new output, an in-place save of a
// model with inline weights, and a new output with external data, whose data file is
// written before the model.
func TestSaveDiskFull(t *testing.T) {
	if dir := os.Getenv("ONNXIO_DISKFULL_DIR"); dir != "" {
		saveOnFullDisk(t, dir)
		return
	}
	t.Parallel()
	dir := t.TempDir()
	for _, sub := range []string{"in", "inplace", "out", "ext", "extout"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	model, err := os.ReadFile("../testdata/models/convmixer_digits_d64_l4_k9.onnx")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"in/model.onnx", "inplace/model.onnx"} {
		if err := os.WriteFile(filepath.Join(dir, path), model, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// An external tensor at the end of a data file larger than the limit.
	const offset = 3 * fileSizeLimit
	x := &onnxpb.TensorProto{
		Name: proto.String("W"), Dims: []int64{64, 1, 9, 9}, DataType: proto.Int32(Float),
		DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
		ExternalData: []*onnxpb.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String("w.bin")},
			{Key: proto.String("offset"), Value: proto.String(strconv.Itoa(offset))},
		},
	}
	if err := os.WriteFile(filepath.Join(dir, "ext", "model.onnx"), oneTensorModel(t, x), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ext", "w.bin"), make([]byte, offset+64*81*4), 0o644); err != nil {
		t.Fatal(err)
	}
	before := treeSums(t, dir)

	cmd := exec.Command(os.Args[0], "-test.run=^TestSaveDiskFull$", "-test.v")
	cmd.Env = append(os.Environ(), "ONNXIO_DISKFULL_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the saves on a full disk: %v\n%s", err, out)
	}
	t.Logf("the child process:\n%s", out)
	if !strings.Contains(string(out), "--- PASS: TestSaveDiskFull") {
		t.Fatalf("the child process did not run the saves:\n%s", out)
	}

	// Every file as it was, and no other.
	after := treeSums(t, dir)
	for name, sum := range before {
		if after[name] != sum {
			t.Errorf("%s changed", name)
		}
		delete(after, name)
	}
	for name := range after {
		t.Errorf("a failed save left %s", name)
	}
}

// saveOnFullDisk runs in the child process: it lowers the file size limit and saves.
func saveOnFullDisk(t *testing.T, dir string) {
	lim := syscall.Rlimit{Cur: fileSizeLimit, Max: fileSizeLimit}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	tests := []struct{ in, out string }{
		{"in/model.onnx", "out/model.onnx"},
		{"inplace/model.onnx", "inplace/model.onnx"},
		{"ext/model.onnx", "extout/model.onnx"},
	}
	for _, tt := range tests {
		m, err := Load(filepath.Join(dir, tt.in))
		if err != nil {
			t.Fatal(err)
		}
		// Change the last float tensor, so that an in-place save must write the model.
		tensors := slices.Clone(m.Tensors())
		slices.Reverse(tensors)
		i := slices.IndexFunc(tensors, func(x *onnxpb.TensorProto) bool { return x.GetDataType() == Float })
		n, _ := Len(tensors[i])
		if err := m.SetValues(tensors[i], pattern(int(n))); err != nil {
			t.Fatal(err)
		}
		err = m.Save(filepath.Join(dir, tt.out))
		t.Logf("Save(%s): %v", tt.out, err)
		if err == nil {
			t.Errorf("Save(%s) on a full disk: no error", tt.out)
		} else if !strings.Contains(err.Error(), tt.out) || !strings.Contains(err.Error(), "file too large") {
			t.Errorf("Save(%s) on a full disk: error %q, want one naming the file and the cause", tt.out, err)
		}
	}
}

// treeSums returns the sha256 of every file under dir, by path relative to dir.
func treeSums(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		sums[rel] = sha(t, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}
