package onnxio

import (
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/internal/benchmodels"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// The benchmarks run on a ConvMixer-768/20 with 9x9 kernels (about 50 MB), as one file and
// with external data, and compare each operation with a plain file copy of the same bytes
// measured in the same run (BenchmarkCopy*): read the MB/s columns side by side. make bench
// times the command on a 1 GB model.
var benchFiles struct {
	once       sync.Once
	dir        string
	single     string // one file
	external   string // model with external data
	externalDW []string
	err        error
}

func benchModels(b *testing.B) (single, external string) {
	b.Helper()
	benchFiles.once.Do(func() {
		dir, err := os.MkdirTemp("", "onnxio-bench-")
		if err != nil {
			benchFiles.err = err
			return
		}
		benchFiles.dir = dir
		spec := benchmodels.Spec{Arch: "convmixer", Width: 768, Depth: 20, Patch: 7, Kernel: 9}
		benchFiles.single = filepath.Join(dir, "single.onnx")
		if _, err := benchmodels.Write(benchFiles.single, spec, false); err != nil {
			benchFiles.err = err
			return
		}
		if err := os.Mkdir(filepath.Join(dir, "ext"), 0o755); err != nil {
			benchFiles.err = err
			return
		}
		benchFiles.external = filepath.Join(dir, "ext", "model.onnx")
		_, benchFiles.err = benchmodels.Write(benchFiles.external, spec, true)
	})
	if benchFiles.err != nil {
		b.Fatal(benchFiles.err)
	}
	return benchFiles.single, benchFiles.external
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchFiles.dir != "" {
		os.RemoveAll(benchFiles.dir)
	}
	os.Exit(code)
}

func size(b *testing.B, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// copyFile copies a file the way cp does: the system copies it file to file.
func copyFile(b *testing.B, from, to string) {
	src, err := os.Open(from)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		b.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCopy is the baseline of BenchmarkLoad and BenchmarkSaveRewrite.
func BenchmarkCopy(b *testing.B) {
	single, _ := benchModels(b)
	b.SetBytes(size(b, single))
	out := filepath.Join(b.TempDir(), "copy.onnx")
	for b.Loop() {
		copyFile(b, single, out)
	}
}

// BenchmarkLoad maps the model, indexes its tensors and decodes its skeleton.
func BenchmarkLoad(b *testing.B) {
	single, _ := benchModels(b)
	b.SetBytes(size(b, single))
	for b.Loop() {
		m, err := Load(single)
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
}

// BenchmarkFullDecode is what Load avoids: proto.Unmarshal of the whole file.
func BenchmarkFullDecode(b *testing.B) {
	single, _ := benchModels(b)
	data, err := os.ReadFile(single)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := proto.Unmarshal(data, &onnxpb.ModelProto{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFullEncode is what Save avoids: proto.Marshal of the whole model.
func BenchmarkFullEncode(b *testing.B) {
	single, _ := benchModels(b)
	data, err := os.ReadFile(single)
	if err != nil {
		b.Fatal(err)
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(data, mp); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := (proto.MarshalOptions{Deterministic: true}).Marshal(mp); err != nil {
			b.Fatal(err)
		}
	}
}

// rewriteDepthwise gives every 4-D weight with one input channel new values.
func rewriteDepthwise(b *testing.B, m *Model) {
	for _, t := range m.Tensors() {
		if d := t.GetDims(); len(d) == 4 && d[1] == 1 {
			n, _ := Len(t)
			if err := m.SetValues(t, make([]float64, n)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkSaveRewrite loads the model, rewrites its depthwise weights and saves it to a new
// file: the I/O of init without the sampling.
func BenchmarkSaveRewrite(b *testing.B) {
	single, _ := benchModels(b)
	b.SetBytes(size(b, single))
	out := filepath.Join(b.TempDir(), "out.onnx")
	for b.Loop() {
		m, err := Load(single)
		if err != nil {
			b.Fatal(err)
		}
		rewriteDepthwise(b, m)
		if err := m.Save(out); err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
}

// BenchmarkCopyData is the baseline of BenchmarkPatchInPlace: copying the data file.
func BenchmarkCopyData(b *testing.B) {
	_, external := benchModels(b)
	b.SetBytes(size(b, external+".data"))
	out := filepath.Join(b.TempDir(), "copy.data")
	for b.Loop() {
		copyFile(b, external+".data", out)
	}
}

// BenchmarkPatchInPlace rewrites the depthwise weights of a model with external data in
// place: only their regions of the data file are written.
func BenchmarkPatchInPlace(b *testing.B) {
	_, external := benchModels(b)
	b.SetBytes(size(b, external+".data"))
	for b.Loop() {
		m, err := Load(external)
		if err != nil {
			b.Fatal(err)
		}
		rewriteDepthwise(b, m)
		if err := m.Save(external); err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
}
