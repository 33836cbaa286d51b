package graphscan_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/onnxio"
)

// FuzzScan feeds arbitrary bytes to Decode and Scan. Scan must accept or refuse every model
// that decodes, never panic, refuse only with the errors it documents, and promise nothing
// that inject.Apply could trip on: a rewritable layer's tensor holds exactly
// Channels·Multiplier filters of the kernel's size, with stored data that agrees. The seeds
// are the small models of testdata.
func FuzzScan(f *testing.F) {
	for _, pattern := range []string{"../testdata/cases/*.onnx", "../testdata/models/fixtures/*.onnx",
		"../testdata/models/fixtures/*/*.onnx", "../testdata/models/debian/*/model.onnx"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil && len(b) <= 64<<10 {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := onnxio.Decode(data)
		if err != nil {
			return
		}
		res, err := graphscan.Scan(m)
		if err != nil {
			if !errors.Is(err, graphscan.ErrInvalidGraph) && !errors.Is(err, onnxio.ErrTensorData) &&
				!errors.Is(err, onnxio.ErrExternalData) {
				t.Fatalf("Scan refused with an undocumented error: %v", err)
			}
			return
		}
		checkFuzzResult(t, m, res)

		// Scan is a function of the model: a second scan finds the same layers, and the
		// model still writes back byte for byte.
		again, err := graphscan.Scan(m)
		if err != nil {
			t.Fatalf("a second Scan failed: %v", err)
		}
		if summary(again) != summary(res) {
			t.Fatalf("two scans of one model differ:\n%s\n%s", summary(res), summary(again))
		}
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err == nil && !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("Scan changed the model's encoding")
		}
	})
}

func checkFuzzResult(t *testing.T, m *onnxio.Model, res *graphscan.Result) {
	tensors := map[any]bool{}
	for _, x := range m.Tensors() {
		tensors[x] = true
	}
	D := len(res.Layers)
	for k := range res.Layers {
		l := &res.Layers[k]
		if l.Index != k+1 || !l.Counted() {
			t.Fatalf("layer %d has Index %d", k, l.Index)
		}
		want := 0.0
		if D > 1 {
			want = float64(k) / float64(D-1)
		}
		if math.IsNaN(l.Depth) || math.Abs(l.Depth-want) > 1e-12 || l.Depth < 0 || l.Depth > 1 {
			t.Fatalf("layer %d of %d has depth %v", l.Index, D, l.Depth)
		}
		if l.Stage < 0 || l.StageIndex < 1 || l.StageIndex > l.StageSize {
			t.Fatalf("layer %d: stage %d, %d of %d", l.Index, l.Stage, l.StageIndex, l.StageSize)
		}
		if l.Channels < 2 {
			t.Fatalf("layer %d: %d channels", l.Index, l.Channels)
		}
		if !l.Rewritable() {
			if l.Skip == "" && l.Tensor != nil {
				t.Fatalf("layer %d: not rewritable, but no reason", l.Index)
			}
			continue
		}
		if !tensors[l.Tensor] {
			t.Fatalf("layer %d: its tensor %q is not one of the model's", l.Index, l.TensorName)
		}
		if l.Multiplier < 1 || len(l.Kernel) == 0 || slices.ContainsFunc(l.Kernel, func(k int64) bool { return k < 1 }) {
			t.Fatalf("layer %d: multiplier %d, kernel %v", l.Index, l.Multiplier, l.Kernel)
		}
		if err := m.Check(l.Tensor); err != nil {
			t.Fatalf("layer %d is rewritable, but its data fails Check: %v", l.Index, err)
		}
		n, err := onnxio.Len(l.Tensor)
		if err != nil {
			t.Fatalf("layer %d: %v", l.Index, err)
		}
		size := l.Channels // Channels·Multiplier·taps, which Apply allocates
		for _, k := range append([]int64{l.Multiplier}, l.Kernel...) {
			if size > math.MaxInt64/k {
				t.Fatalf("layer %d: %d×%d filters of kernel %v overflow", l.Index, l.Channels, l.Multiplier, l.Kernel)
			}
			size *= k
		}
		if size != n {
			t.Fatalf("layer %d: tensor of %d elements for %d×%d filters of kernel %v", l.Index, n, l.Channels, l.Multiplier, l.Kernel)
		}
		v, err := m.Values(l.Tensor)
		switch {
		case errors.Is(err, onnxio.ErrExternalData): // decoded from memory: no data file to read
		case err != nil:
			t.Fatalf("layer %d passes Check, but Values fails: %v", l.Index, err)
		case int64(len(v)) != n:
			t.Fatalf("layer %d: %d values for %d elements", l.Index, len(v), n)
		}
	}
	for k := range res.Outside {
		l := &res.Outside[k]
		if l.Counted() || l.Rewritable() || l.Skip == "" || l.Tensor != nil {
			t.Fatalf("layer %s outside the main graph: index %d, skip %q", l.Label(), l.Index, l.Skip)
		}
	}
}

// summary is what two scans of one model must agree on.
func summary(res *graphscan.Result) string {
	var b bytes.Buffer
	for _, ls := range [][]graphscan.Layer{res.Layers, res.Outside} {
		for _, l := range ls {
			b.WriteString(l.Label() + "|" + l.Scope + "|" + l.Weight + "|" + l.TensorName + "|" + l.Skip + "\n")
		}
	}
	for _, w := range res.Warnings {
		b.WriteString(w + "\n")
	}
	return b.String()
}
