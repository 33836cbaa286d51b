package onnxio

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// addSeeds adds the small models of testdata to a fuzz corpus.
func addSeeds(f *testing.F) {
	for _, pattern := range []string{"../testdata/cases/*.onnx", "../testdata/models/fixtures/*.onnx",
		"../testdata/models/fixtures/*/*.onnx", "../testdata/models/debian/*/model.onnx"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil && len(b) <= 64<<10 {
				f.Add(b)
			}
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder. Whatever it accepts must write back
// byte for byte, and every float tensor must either decode or fail cleanly, agree with
// Check, hold as many values as its dims say, and survive a rewrite with its own values.
func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err == nil && !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("an unchanged model does not write back byte for byte")
		}
		for _, tensor := range m.Tensors() {
			checkErr := m.Check(tensor)
			v, err := m.Values(tensor)
			if checkErr == nil && err != nil && m.Storage(tensor) != "external" {
				t.Fatalf("tensor %q passes Check, but Values fails: %v", tensor.GetName(), err)
			}
			if err != nil {
				continue
			}
			if checkErr != nil {
				t.Fatalf("tensor %q fails Check (%v), but Values reads it", tensor.GetName(), checkErr)
			}
			if n, _ := Len(tensor); int64(len(v)) != n {
				t.Fatalf("tensor %q: %d values for %d elements", tensor.GetName(), len(v), n)
			}
			if err := m.SetValues(tensor, v); err != nil {
				t.Fatalf("SetValues with the tensor's own values: %v", err)
			}
			got, err := m.Values(tensor)
			if err != nil || !sameBits(got, v) {
				t.Fatalf("values changed by a rewrite with themselves: %v", err)
			}
		}
		if m.HasExternalData() {
			return
		}
		buf.Reset()
		if _, err := m.WriteTo(&buf); err != nil {
			t.Fatalf("WriteTo after rewrites: %v", err)
		}
		if _, err := Decode(buf.Bytes()); err != nil {
			t.Fatalf("the rewritten model no longer decodes: %v", err)
		}
	})
}

// sameBits compares values, with NaN equal to NaN.
func sameBits(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(math.IsNaN(a[i]) && math.IsNaN(b[i])) {
			return false
		}
	}
	return true
}

// FuzzCodec checks the 16-bit encoders on arbitrary float64 values: the result decodes to a
// neighbour of x, no farther than the other neighbour.
func FuzzCodec(f *testing.F) {
	for _, x := range []float64{0, 1, -1, 65504, 65520, 1e-8, math.Ldexp(1, -25), 3.3895313892515355e38, math.Inf(1)} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x float64) {
		for _, c := range []struct {
			name   string
			encode func(float64) uint16
			decode func(uint16) float64
		}{{"float16", Float16Bits, Float16Value}, {"bfloat16", BFloat16Bits, BFloat16Value}} {
			b := c.encode(x)
			y := c.decode(b)
			if math.IsNaN(x) {
				if !math.IsNaN(y) {
					t.Fatalf("%s: NaN encodes to %#04x", c.name, b)
				}
				continue
			}
			if math.IsInf(y, 0) || math.IsInf(x, 0) {
				continue
			}
			// Neither neighbour of b may be strictly closer to x.
			for _, nb := range []uint16{b - 1, b + 1} {
				z := c.decode(nb)
				if !math.IsNaN(z) && !math.IsInf(z, 0) && math.Signbit(z) == math.Signbit(y) && math.Abs(z-x) < math.Abs(y-x) {
					t.Fatalf("%s: %g encodes to %g, but %g is closer", c.name, x, y, z)
				}
			}
		}
	})
}
