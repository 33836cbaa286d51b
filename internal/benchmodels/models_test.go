package benchmodels

import (
	"path/filepath"
	"testing"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/onnxio"
)

// TestWrite generates a small model of each architecture, as a single file and with
// external data, and checks that the scan finds the depthwise convolutions it counted.
func TestWrite(t *testing.T) {
	t.Parallel()
	specs := []Spec{
		{Arch: "convmixer", Width: 16, Depth: 3, Patch: 4, Kernel: 9},
		{Arch: "replknet", Widths: []int{8, 16}, Depths: []int{1, 2}, Kernel: 7},
		{Arch: "convnext", Widths: []int{8, 16}, Depths: []int{2, 1}, Kernel: 5},
	}
	for _, s := range specs {
		for _, external := range []bool{false, true} {
			path := filepath.Join(t.TempDir(), s.Arch+".onnx")
			stats, err := Write(path, s, external)
			if err != nil {
				t.Fatal(err)
			}
			m, err := onnxio.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if m.HasExternalData() != external {
				t.Errorf("%s: external data = %v, want %v", s.Arch, m.HasExternalData(), external)
			}
			res, err := graphscan.Scan(m)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Layers) != stats.Depthwise {
				t.Errorf("%s: scan found %d depthwise convolutions, the generator made %d", s.Arch, len(res.Layers), stats.Depthwise)
			}
			for _, l := range res.Layers {
				if !l.Rewritable() {
					t.Errorf("%s: %s skipped: %s", s.Arch, l.Label(), l.Skip)
				}
			}
		}
	}
}
