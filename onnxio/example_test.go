package onnxio_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

func Example() {
	// Read a model; its weights stay in the file's bytes until asked for.
	m, err := onnxio.Load("../testdata/models/convmixer_digits_d64_l4_k9.onnx")
	if err != nil {
		log.Fatal(err)
	}
	var w *onnxpb.TensorProto
	for _, t := range m.Tensors() {
		if t.GetName() == "3.0.fn.0.weight" {
			w = t
		}
	}
	v, err := m.Values(w)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: dims %v, %s, %s, %d values\n",
		w.GetName(), w.GetDims(), onnxio.TypeName(w.GetDataType()), m.Storage(w), len(v))

	// Change it, and write the model: every other byte is copied as it was.
	for i := range v {
		v[i] *= 2
	}
	if err := m.SetValues(w, v); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "onnxio-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "doubled.onnx")
	var written, total int64
	err = m.SaveWith(out, onnxio.SaveOptions{Progress: func(n, t int64) { written, total = n, t }})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %d of %d bytes, the size of the input: %v\n", written, total, written == m.Size())

	// Read it back.
	m2, err := onnxio.Load(out)
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range m2.Tensors() {
		if t.GetName() == w.GetName() {
			v2, _ := m2.Values(t)
			fmt.Printf("first value %.6f, doubled from %.6f\n", v2[0], v[0]/2)
		}
	}
	// Output:
	// 3.0.fn.0.weight: dims [64 1 9 9], FLOAT, raw_data, 5184 values
	// wrote 175549 of 175549 bytes, the size of the input: true
	// first value 0.069847, doubled from 0.034924
}
