package covtransfer_test

import (
	"fmt"
	"log"

	"github.com/convcov/convcov-onnx/covtransfer"
	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
)

// load reads and scans a model.
func load(path string) (*onnxio.Model, *graphscan.Result) {
	m, err := onnxio.Load(path)
	if err != nil {
		log.Fatal(err)
	}
	scan, err := graphscan.Scan(m)
	if err != nil {
		log.Fatal(err)
	}
	return m, scan
}

func Example() {
	// Harvest the trained ConvMixer: 4 depthwise layers of 64 filters, 9x9.
	m, scan := load("../testdata/models/convmixer_digits_d64_l4_k9.onnx")
	bank, _, err := covtransfer.Harvest("convmixer_digits_d64_l4_k9.onnx", m, scan)
	if err != nil {
		log.Fatal(err)
	}
	e := bank.Entries[0]
	fmt.Printf("%d layers, %d filters; layer 1: %s, centre-tap variance %.4f\n",
		len(bank.Entries), bank.Filters(), e.KernelString(), e.Cov().At(40, 40))

	// Initialize a ConvMixer with 12 layers of 7x7 kernels from it.
	target, tscan := load("../testdata/models/fixtures/13b_convmixer_d12_k7.onnx")
	src, err := covtransfer.NewSource(bank, covtransfer.Options{})
	if err != nil {
		log.Fatal(err)
	}
	rep, err := inject.Apply(target, tscan, src, inject.Options{Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	// target.Save("convmixer_d12_k7_transfer.onnx") would write it.
	fmt.Printf("rewrote %d layers; layer 1: %s\n", rep.Rewritten, rep.Layers[0].Note)

	// Output:
	// 4 layers, 256 filters; layer 1: 9x9, centre-tap variance 0.0055
	// rewrote 12 layers; layer 1: bank: 9x9 to 7x7 filter-size transfer of depth interpolation of 4 layers (9x9)
}
