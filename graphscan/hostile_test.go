package graphscan_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/internal/testutil"
	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// Broken and crafted graphs of issue 5 that the fixtures do not hold, because onnx's
// helpers will not make them or because their bytes must be wrong.

// TestScanHostile checks Scan on weights and graphs that are broken in ways a fixture
// cannot be: Scan refuses them, naming the node and weight, or skips the layer saying why.
func TestScanHostile(t *testing.T) {
	t.Parallel()
	x := value("x", 1, 8, 16, 16)
	withData := func(w *onnxpb.TensorProto, raw []byte) *onnxpb.TensorProto {
		w.RawData = raw
		return w
	}
	tests := []struct {
		name   string
		graph  *onnxpb.GraphProto
		refuse []string // keywords of the error; nil: Scan must succeed
		is     error    // what the error wraps
		skip   []string // keywords of the Skip reason of node "dw"
	}{
		{
			name: "scalar weight",
			graph: &onnxpb.GraphProto{
				Node:        []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{weight("w")},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{`"dw"`, `"w"`, "[]"}, is: graphscan.ErrInvalidGraph,
		},
		{
			name: "weight with an empty kernel dim",
			graph: &onnxpb.GraphProto{
				Node:        []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{weight("w", 8, 1, 0, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{`"dw"`, `"w"`, "positive"}, is: graphscan.ErrInvalidGraph,
		},
		{
			name: "weight with no output channels",
			graph: &onnxpb.GraphProto{
				Node:        []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{weight("w", 0, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{`"dw"`, `"w"`, "positive"}, is: graphscan.ErrInvalidGraph,
		},
		{
			name: "node output that is an initializer",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					node("r", "Relu", []string{"x"}, []string{"w"}),
					dwConv("dw", "x", "w", "y", 8),
				},
				Initializer: []*onnxpb.TensorProto{weight("w", 8, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{`"r"`, `"w"`, "initializer"}, is: graphscan.ErrInvalidGraph,
		},
		{
			name: "two producers inside a subgraph",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					dwConv("dw", "x", "w", "h", 8),
					node("if", "If", []string{"x"}, []string{"y"}, &onnxpb.AttributeProto{
						Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(),
						G: &onnxpb.GraphProto{Node: []*onnxpb.NodeProto{
							node("b1", "Relu", []string{"h"}, []string{"t"}),
							node("b2", "Relu", []string{"h"}, []string{"t"}),
						}},
					}),
				},
				Initializer: []*onnxpb.TensorProto{weight("w", 8, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{`"b1"`, `"b2"`, `"t"`, "then_branch", `"if"`}, is: graphscan.ErrInvalidGraph,
		},
		{
			name: "raw_data shorter than the dims",
			graph: &onnxpb.GraphProto{
				Node:        []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{withData(weight("w", 8, 1, 3, 3), make([]byte, 100))},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{`"dw"`, `"w"`, "100 bytes", "288"}, is: onnxio.ErrTensorData,
		},
		{
			name: "raw_data and float_data",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{func() *onnxpb.TensorProto {
					w := weight("w", 8, 1, 3, 3)
					w.FloatData = make([]float32, 72)
					return w
				}()},
				Input: []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{`"dw"`, `"w"`, "both"}, is: onnxio.ErrTensorData,
		},
		{
			name: "dims whose product overflows",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{{
					Name: proto.String("w"), Dims: []int64{8, 1, 1 << 40, 1 << 40},
					DataType: proto.Int32(onnxio.Float), RawData: make([]byte, 8),
				}},
				Input: []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{`"dw"`, `"w"`, "overflow"}, is: onnxio.ErrTensorData,
		},
		{
			// Nobody rewrites a shared weight, so its data is not checked by Scan.
			name: "broken data of a shared weight",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					dwConv("dw", "x", "w", "h", 8),
					dwConv("dw2", "h", "w", "y", 8),
				},
				Initializer: []*onnxpb.TensorProto{withData(weight("w", 8, 1, 3, 3), make([]byte, 4))},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			skip: []string{`"w"`, "shared", "dw2"},
		},
		{
			name: "INT8 weight",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{{
					Name: proto.String("w"), Dims: []int64{8, 1, 3, 3},
					DataType: proto.Int32(int32(onnxpb.TensorProto_INT8)), RawData: make([]byte, 72),
				}},
				Input: []*onnxpb.ValueInfoProto{x},
			},
			skip: []string{`"w"`, "INT8", "cannot hold filters"},
		},
		{
			name: "STRING weight",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{{
					Name: proto.String("w"), Dims: []int64{8, 1, 3, 3},
					DataType: proto.Int32(int32(onnxpb.TensorProto_STRING)), StringData: make([][]byte, 72),
				}},
				Input: []*onnxpb.ValueInfoProto{x},
			},
			skip: []string{`"w"`, "STRING", "cannot hold filters"},
		},
		{
			name: "Cast from UINT8",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					node("cast_w", "Cast", []string{"w_u8"}, []string{"w"}, attrInt("to", int64(onnxpb.TensorProto_FLOAT))),
					dwConv("dw", "x", "w", "y", 8),
				},
				Initializer: []*onnxpb.TensorProto{{
					Name: proto.String("w_u8"), Dims: []int64{8, 1, 3, 3},
					DataType: proto.Int32(int32(onnxpb.TensorProto_UINT8)), RawData: make([]byte, 72),
				}},
				Input: []*onnxpb.ValueInfoProto{x},
			},
			skip: []string{`"w_u8"`, "Cast", "UINT8"},
		},
		{
			name: "Cast to an integer type",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					node("cast_w", "Cast", []string{"w_f"}, []string{"w"}, attrInt("to", int64(onnxpb.TensorProto_INT32))),
					dwConv("dw", "x", "w", "y", 8),
				},
				Initializer: []*onnxpb.TensorProto{weight("w_f", 8, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
				ValueInfo:   []*onnxpb.ValueInfoProto{value("w", 8, 1, 3, 3)},
			},
			skip: []string{"cast_w", "INT32"},
		},
		{
			name: "Transpose",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					node("transpose_w", "Transpose", []string{"w_hwio"}, []string{"w"}),
					dwConv("dw", "x", "w", "y", 8),
				},
				Initializer: []*onnxpb.TensorProto{weight("w_hwio", 3, 3, 1, 8)},
				Input:       []*onnxpb.ValueInfoProto{x},
				ValueInfo:   []*onnxpb.ValueInfoProto{value("w", 8, 1, 3, 3)},
			},
			skip: []string{"Transpose", "transpose_w"},
		},
		{
			name: "DequantizeLinear behind an Identity",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					node("dq", "DequantizeLinear", []string{"w_q", "s"}, []string{"w_dq"}),
					node("id", "Identity", []string{"w_dq"}, []string{"w"}),
					dwConv("dw", "x", "w", "y", 8),
				},
				Initializer: []*onnxpb.TensorProto{weight("s")},
				Input:       []*onnxpb.ValueInfoProto{x, value("w_q", 8, 1, 3, 3)},
				ValueInfo:   []*onnxpb.ValueInfoProto{value("w", 8, 1, 3, 3)},
			},
			skip: []string{"DequantizeLinear", `"dq"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := scanGraph(t, tt.graph)
			if tt.refuse != nil {
				if !errors.Is(err, tt.is) {
					t.Fatalf("Scan: got %v, want an error wrapping %v", err, tt.is)
				}
				if missing := testutil.MissingKeywords(err.Error(), tt.refuse); len(missing) > 0 {
					t.Errorf("Scan error %q lacks keywords %q", err, missing)
				}
				return
			}
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			for _, l := range res.Layers {
				if l.Name != "dw" {
					continue
				}
				if l.Rewritable() {
					t.Fatalf("node dw: rewritable, want it skipped with keywords %q", tt.skip)
				}
				if missing := testutil.MissingKeywords(l.Skip, tt.skip); len(missing) > 0 {
					t.Errorf("node dw: Skip %q lacks keywords %q", l.Skip, missing)
				}
				return
			}
			t.Fatalf("node dw is not a layer: %d layers", len(res.Layers))
		})
	}
}

// TestScanHugeDeclaredWeight loads a file of about 100 bytes whose depthwise weight
// declares 10 GiB, and scans it. Scan refuses it before anything is drawn, and loading
// and scanning together allocate next to nothing. Not parallel: it measures the process's
// allocations.
func TestScanHugeDeclaredWeight(t *testing.T) {
	const group = 1 << 20
	w := &onnxpb.TensorProto{
		Name: proto.String("w"), Dims: []int64{group, 1, 50, 50}, // 10 GiB of FLOAT
		DataType: proto.Int32(onnxio.Float), RawData: make([]byte, 16),
	}
	b, err := proto.Marshal(&onnxpb.ModelProto{Graph: &onnxpb.GraphProto{
		Node:        []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", group)},
		Initializer: []*onnxpb.TensorProto{w},
		Input:       []*onnxpb.ValueInfoProto{{Name: proto.String("x")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 120 {
		t.Fatalf("the model has %d bytes, want about 100", len(b))
	}
	path := filepath.Join(t.TempDir(), "huge.onnx")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, scanErr := graphscan.Scan(m)
	_, valuesErr := m.Values(m.Tensors()[0])
	runtime.ReadMemStats(&after)

	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Errorf("loading and scanning a %d-byte model that declares 10 GiB allocated %d MiB", len(b), n>>20)
	}
	if !errors.Is(scanErr, onnxio.ErrTensorData) || !strings.Contains(scanErr.Error(), `"dw"`) {
		t.Errorf("Scan: got %v, want ErrTensorData naming node dw", scanErr)
	}
	if !errors.Is(valuesErr, onnxio.ErrTensorData) {
		t.Errorf("Values: got %v, want ErrTensorData", valuesErr)
	}
}

// TestScanManyFunctions is the regression test for a scan that compared every function
// with every node of the main graph: 100,000 of each, about 2 MB, took tens of seconds.
func TestScanManyFunctions(t *testing.T) {
	t.Parallel()
	mp := &onnxpb.ModelProto{Graph: &onnxpb.GraphProto{}}
	for range 100000 {
		mp.Graph.Node = append(mp.Graph.Node, &onnxpb.NodeProto{OpType: proto.String("Relu")})
		mp.Functions = append(mp.Functions, &onnxpb.FunctionProto{Name: proto.String("F"), Domain: proto.String("d")})
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := graphscan.Scan(m); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("scanning %d nodes and %d functions took %v", len(mp.Graph.Node), len(mp.Functions), d)
	}
}
