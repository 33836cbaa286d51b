package graphscan_test

import (
	"fmt"
	"log"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/onnxio"
)

func Example() {
	// A model whose five depthwise convolutions get their weights in five ways.
	m, err := onnxio.Load("../testdata/cases/07_weight_producers.onnx")
	if err != nil {
		log.Fatal(err)
	}
	res, err := graphscan.Scan(m)
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range res.Layers {
		fmt.Printf("i %d  d %.2f  kernel %v  %-14s ", l.Index, l.Depth, l.Kernel, l.Label())
		if l.Rewritable() {
			fmt.Printf("rewritable: %s %q, via %v\n", l.SourceKind, l.TensorName, l.Via)
		} else {
			fmt.Printf("skipped: %s\n", l.Skip)
		}
	}
	// Output:
	// i 1  d 0.00  kernel [3 3]  dw_transposed  skipped: weight "w_tr" is computed by Reshape node "w_reshape", not stored; only initializers and Constants (through Identity or float Casts) are rewritten
	// i 2  d 0.25  kernel [3 3]  dw_identity    rewritable: initializer "W_idsrc", via [Identity]
	// i 3  d 0.50  kernel [3 3]  dw_constant    rewritable: Constant "w_constant", via []
	// i 4  d 0.75  kernel [3 3]  dw_cast_bf16   rewritable: initializer "W_bf16", via [Cast]
	// i 5  d 1.00  kernel [3 3]  dw_graph_input skipped: weight "W_graph_input" is a graph input with no initializer: its value is fed at run time
}
