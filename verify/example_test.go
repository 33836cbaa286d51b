package verify_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/verify"
)

// closedForm is the distribution init draws each layer from, as verify expects it.
type closedForm struct{ src *inject.ClosedFormSource }

func (c closedForm) Target(l *graphscan.Layer) (*verify.Target, error) {
	d, err := c.src.Distribution(l)
	if err != nil {
		return nil, err
	}
	return verify.TargetOf(d.Projection.Cov, d.Projection.Factor, d.Mean, 1), nil
}

func Example() {
	// Rewrite a model as init does: load, scan, draw from the closed form, save.
	const original = "../testdata/models/convmixer_digits_d64_l4_k9.onnx"
	m, err := onnxio.Load(original)
	if err != nil {
		log.Fatal(err)
	}
	scan, err := graphscan.Scan(m)
	if err != nil {
		log.Fatal(err)
	}
	sched, _ := inject.Preset(inject.DefaultPreset)
	src := &inject.ClosedFormSource{Schedule: sched}
	if _, err := inject.Apply(m, scan, src, inject.Options{Seed: 1}); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "verify-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	rewritten := filepath.Join(dir, "init.onnx")
	if err := m.Save(rewritten); err != nil {
		log.Fatal(err)
	}

	// Verify it: the structure, and each layer's filters against the closed form. Run:
	// true would also run both models in ONNX Runtime and compare their outputs.
	rep, err := verify.Check(original, rewritten, verify.CheckOptions{Expectation: closedForm{src}})
	if err != nil {
		log.Fatal(err)
	}
	s := rep.Structure
	fmt.Printf("%d tensors compared, %d rewritten, %d other differences\n",
		s.Tensors, len(s.Changed), len(s.Differences))
	for _, lc := range rep.Layers {
		fmt.Printf("layer %d %s: %d filters of %d taps, fidelity ok %v\n", lc.Layer.Index, lc.Layer.Label(),
			lc.Fidelity.Filters, lc.Fidelity.Taps, lc.Fidelity.OK)
	}
	fmt.Println("pass:", rep.OK())
	// Output:
	// 83 tensors compared, 4 rewritten, 0 other differences
	// layer 1 /3/3.0/fn/fn.0/Conv: 64 filters of 81 taps, fidelity ok true
	// layer 2 /4/4.0/fn/fn.0/Conv: 64 filters of 81 taps, fidelity ok true
	// layer 3 /5/5.0/fn/fn.0/Conv: 64 filters of 81 taps, fidelity ok true
	// layer 4 /6/6.0/fn/fn.0/Conv: 64 filters of 81 taps, fidelity ok true
	// pass: true
}
