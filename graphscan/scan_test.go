package graphscan_test

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/internal/testutil"
	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// depthTol bounds |d - want|: d is (i-1)/(D-1), a ratio of small integers, so the only
// error is the rounding of one division and of the float64 printed in expect.json.
const depthTol = 1e-12

// TestScanExpectations holds Scan to testdata/cases/expect.json and
// testdata/models/fixtures/expect.json, model by model and node by node.
func TestScanExpectations(t *testing.T) {
	t.Parallel()
	for _, m := range testutil.Expectations(t) {
		t.Run(m.Name(), func(t *testing.T) {
			t.Parallel()
			model, err := onnxio.Load(m.Path)
			if err != nil {
				t.Fatalf("Load(%s): got error %v, want none", m.File, err)
			}
			res, err := graphscan.Scan(model)
			if m.Outcome == testutil.OutcomeRefuse {
				checkRefused(t, m, res, err)
				return
			}
			if err != nil {
				t.Fatalf("Scan: got error %v, want none", err)
			}
			checkResult(t, m, res)
		})
	}
}

// checkRefused checks that Scan refused a model that expect.json says must be refused.
func checkRefused(t *testing.T, m testutil.Model, res *graphscan.Result, err error) {
	if err == nil {
		t.Fatalf("Scan: got %d layers and no error, want an error wrapping ErrInvalidGraph", len(res.Layers))
	}
	if !errors.Is(err, graphscan.ErrInvalidGraph) {
		t.Errorf("Scan: got error %v, want one wrapping ErrInvalidGraph", err)
	}
	keywords := slices.Clone(m.RefuseKeywords)
	for _, n := range m.Nodes {
		if n.Action == testutil.Refuse {
			keywords = append(keywords, n.Keywords...)
		}
	}
	if missing := testutil.MissingKeywords(err.Error(), keywords); len(missing) > 0 {
		t.Errorf("Scan error %q lacks keywords %q", err, missing)
	}
}

// checkResult checks the layers of a model that Scan accepts.
func checkResult(t *testing.T, m testutil.Model, res *graphscan.Result) {
	if got, want := len(res.Layers), m.D; got != want {
		t.Errorf("D = len(Layers): got %d, want %d", got, want)
	}
	checkNumbering(t, res.Layers)

	// Every node of the expectation, by what should happen to it.
	matched := map[*graphscan.Layer]bool{}
	outside := 0
	for _, n := range m.Nodes {
		switch {
		case n.Action == testutil.Keep:
			if l := findLayer(res.Layers, n); l != nil {
				t.Errorf("KEEP node %s: got layer %d (%q), want no layer", n.ID(), l.Index, l.Skip)
			}
			if l := findLayer(res.Outside, n); l != nil {
				t.Errorf("KEEP node %s: got it in Outside (%q), want no layer", n.ID(), l.Skip)
			}
		case n.Action != testutil.Rewrite && n.Action != testutil.Skip:
			t.Errorf("node %s: action %s in a model with outcome %s", n.ID(), n.Action, m.Outcome)
		case n.Scope != testutil.MainScope:
			outside++
			l := findLayer(res.Outside, n)
			if l == nil {
				t.Errorf("node %s: not in Outside; want it reported and skipped", n.ID())
				continue
			}
			matched[l] = true
			checkOutside(t, n, l)
		default:
			l := findLayer(res.Layers, n)
			if l == nil {
				t.Errorf("%s node %s: not among the %d layers", n.Action, n.ID(), len(res.Layers))
				continue
			}
			matched[l] = true
			checkLayer(t, n, l, res)
		}
	}
	for k := range res.Layers {
		if l := &res.Layers[k]; !matched[l] {
			t.Errorf("layer %d (node %s, weight %q): not a depthwise conv of the expectation", l.Index, l.Label(), l.Weight)
		}
	}
	if got := len(res.Outside); got != outside {
		var names []string
		for _, l := range res.Outside {
			names = append(names, l.Label())
		}
		t.Errorf("Outside: got %d layers %q, want %d", got, names, outside)
	}
}

// checkNumbering checks what Result promises of Layers whatever the model: Index k+1,
// d = (i-1)/(D-1), 0 for D = 1.
func checkNumbering(t *testing.T, layers []graphscan.Layer) {
	t.Helper()
	D := len(layers)
	for k, l := range layers {
		if l.Index != k+1 {
			t.Errorf("Layers[%d] (node %s): got Index %d, want %d", k, l.Label(), l.Index, k+1)
		}
		want := 0.0
		if D > 1 {
			want = float64(k) / float64(D-1)
		}
		if math.IsNaN(l.Depth) || math.Abs(l.Depth-want) > depthTol {
			t.Errorf("Layers[%d] (node %s): got d %v, want %v", k, l.Label(), l.Depth, want)
		}
		if !l.Counted() {
			t.Errorf("Layers[%d] (node %s): Counted() is false, want true", k, l.Label())
		}
	}
}

// findLayer returns the layer of the expected node n: by name, or by position for an
// unnamed node.
func findLayer(layers []graphscan.Layer, n testutil.Node) *graphscan.Layer {
	for k := range layers {
		l := &layers[k]
		if n.Name != "" && l.Name == n.Name {
			return l
		}
		if n.Name == "" && l.Name == "" && l.NodeIndex == n.Index && (n.Scope == testutil.MainScope) == (l.Scope == "") {
			return l
		}
	}
	return nil
}

// checkLayer checks a main-graph depthwise conv against its expectation.
func checkLayer(t *testing.T, n testutil.Node, l *graphscan.Layer, res *graphscan.Result) {
	id := n.ID()
	if n.Index >= 0 && l.NodeIndex != n.Index {
		t.Errorf("node %s: got NodeIndex %d, want %d", id, l.NodeIndex, n.Index)
	}
	if l.Scope != "" {
		t.Errorf("node %s: got Scope %q, want \"\" (main graph)", id, l.Scope)
	}
	if n.HasDepth {
		if l.Index != n.I {
			t.Errorf("node %s: got i %d, want %d", id, l.Index, n.I)
		}
		if math.IsNaN(l.Depth) || math.Abs(l.Depth-n.Depth) > depthTol {
			t.Errorf("node %s: got d %v, want %v (±%g)", id, l.Depth, n.Depth, depthTol)
		}
	}
	if n.Stage >= 0 && l.Stage != n.Stage {
		t.Errorf("node %s: got stage %d, want %d", id, l.Stage, n.Stage)
	}
	checkShape(t, n, l)

	switch n.Action {
	case testutil.Rewrite:
		if l.Skip != "" {
			t.Errorf("node %s: got Skip %q, want a rewrite of %q", id, l.Skip, n.Tensor)
			return
		}
		if l.Tensor == nil {
			t.Errorf("node %s: got no Tensor, want %q", id, n.Tensor)
		}
		if l.TensorName != n.Tensor {
			t.Errorf("node %s: got TensorName %q, want %q", id, l.TensorName, n.Tensor)
		}
		wantKind := graphscan.SourceInitializer
		if n.Constant {
			wantKind = graphscan.SourceConstant
		}
		if l.SourceKind != wantKind {
			t.Errorf("node %s: got SourceKind %q, want %q", id, l.SourceKind, wantKind)
		}
		if l.Tensor != nil && !n.Constant && l.Tensor.GetName() != n.Tensor {
			t.Errorf("node %s: got the initializer %q, want %q", id, l.Tensor.GetName(), n.Tensor)
		}
		if len(n.Warn) > 0 && !slices.ContainsFunc(l.Warnings, func(w string) bool {
			return len(testutil.MissingKeywords(w, n.Warn)) == 0
		}) {
			t.Errorf("node %s: got warnings %q, want one with keywords %q", id, l.Warnings, n.Warn)
		}
		if n.NoWarning {
			if len(l.Warnings) > 0 {
				t.Errorf("node %s: got warnings %q, want none", id, l.Warnings)
			}
			for _, w := range res.Warnings {
				if testutil.MentionsName(w, n.Name) {
					t.Errorf("node %s: got model warning %q, want none that mentions the node", id, w)
				}
			}
		}
	case testutil.Skip:
		if l.Skip == "" {
			t.Errorf("node %s: got a rewrite of %q, want it skipped with keywords %q", id, l.TensorName, n.Keywords)
			return
		}
		if missing := testutil.MissingKeywords(l.Skip, n.Keywords); len(missing) > 0 {
			t.Errorf("node %s: Skip %q lacks keywords %q", id, l.Skip, missing)
		}
		if l.Rewritable() {
			t.Errorf("node %s: skipped, but Rewritable", id)
		}
	}
}

// checkOutside checks a depthwise conv inside a subgraph or function: reported, skipped,
// not counted, with a reason that names where it is.
func checkOutside(t *testing.T, n testutil.Node, l *graphscan.Layer) {
	id := n.ID()
	if l.Index != 0 || l.Counted() {
		t.Errorf("node %s: got Index %d, want 0 (not counted in D)", id, l.Index)
	}
	if n.Index >= 0 && l.NodeIndex != n.Index {
		t.Errorf("node %s: got NodeIndex %d, want %d", id, l.NodeIndex, n.Index)
	}
	if l.Tensor != nil || l.TensorName != "" {
		t.Errorf("node %s: got Tensor %q, want none (never rewritten)", id, l.TensorName)
	}
	if l.Skip == "" {
		t.Errorf("node %s: got no Skip reason, want one with keywords %q", id, n.Keywords)
	} else if missing := testutil.MissingKeywords(l.Skip, n.Keywords); len(missing) > 0 {
		t.Errorf("node %s: Skip %q lacks keywords %q", id, l.Skip, missing)
	}
	// The scope names the outer nodes and attributes, and the function: "a/then_branch",
	// "function:domain.Name" or "function:domain.Name/a/then_branch".
	names := strings.Split(n.Scope, "/")
	if fn, ok := strings.CutPrefix(names[0], "function:"); ok {
		names[0] = fn[strings.LastIndex(fn, ".")+1:]
	}
	if missing := testutil.MissingKeywords(l.Scope, names); len(missing) > 0 {
		t.Errorf("node %s: got Scope %q, want it to name %q", id, l.Scope, names)
	}
	checkShape(t, n, l)
}

// checkShape checks channels, multiplier and kernel where the expectation gives them.
func checkShape(t *testing.T, n testutil.Node, l *graphscan.Layer) {
	t.Helper()
	if n.Channels != 0 && l.Channels != n.Channels {
		t.Errorf("node %s: got channels %d, want %d", n.ID(), l.Channels, n.Channels)
	}
	if n.Multiplier != 0 && l.Multiplier != n.Multiplier {
		t.Errorf("node %s: got multiplier %d, want %d", n.ID(), l.Multiplier, n.Multiplier)
	}
	if n.Kernel != nil && !slices.Equal(l.Kernel, n.Kernel) {
		t.Errorf("node %s: got kernel %v, want %v", n.ID(), l.Kernel, n.Kernel)
	}
}

// TestScanRealModels holds Scan to what testdata/models/README.md and the shared
// models/README.md say of the real models: how many depthwise convolutions, their kernels,
// channels and where their weights are.
func TestScanRealModels(t *testing.T) {
	t.Parallel()
	const (
		f32  = onnxpb.TensorProto_FLOAT
		f16  = onnxpb.TensorProto_FLOAT16
		ini  = graphscan.SourceInitializer
		cnst = graphscan.SourceConstant
	)
	tests := []struct {
		path    string // relative to the repository, or to the shared folder when shared
		shared  bool
		D       int
		kernels map[string]int // "3x3" -> number of main-graph layers with that kernel
		source  string         // SourceKind of every main-graph layer
		dtype   onnxpb.TensorProto_DataType
		outside int
		extra   func(t *testing.T, res *graphscan.Result)
	}{
		{
			path: "testdata/models/face_detection_front_128x128_barracuda.onnx",
			D:    16, kernels: map[string]int{"3x3": 16}, source: ini, dtype: f32,
			extra: func(t *testing.T, res *graphscan.Result) {
				checkChannels(t, res, []int64{24, 28, 32, 36, 42, 48, 56, 64, 72, 80, 88, 96}, nil)
				checkStrided(t, res, 3)
				checkWeightNames(t, res, "StatefulPartitionedCall/functional_1/depthwise_conv2d", "/depthwise/ReadVariableOp:0")
			},
		},
		{
			path: "testdata/models/face_detection_back_256x256_barracuda.onnx",
			D:    32, kernels: map[string]int{"3x3": 32}, source: ini, dtype: f32,
			extra: func(t *testing.T, res *graphscan.Result) {
				checkChannels(t, res, nil, map[int64]int{24: 16, 48: 8, 96: 8})
				checkStrided(t, res, 4)
			},
		},
		{
			path: "testdata/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
			D:    11, kernels: map[string]int{"3x3": 3, "5x5": 8}, source: cnst, dtype: f32,
			extra: func(t *testing.T, res *graphscan.Result) { checkChannelRange(t, res, 8, 200) },
		},
		{
			path: "testdata/models/silero_vad_legacy.onnx",
			D:    0, outside: 8,
			extra: func(t *testing.T, res *graphscan.Result) {
				for _, l := range res.Outside {
					if !slices.Equal(l.Kernel, []int64{5}) || l.Multiplier != 1 || !slices.Contains([]int64{258, 16, 32}, l.Channels) {
						t.Errorf("node %s: got C %d, m %d, kernel %v; want C in {258, 16, 32}, m 1, kernel [5]",
							l.Label(), l.Channels, l.Multiplier, l.Kernel)
					}
					if missing := testutil.MissingKeywords(l.Skip, []string{"If_25", "If|branch|subgraph"}); len(missing) > 0 {
						t.Errorf("node %s: Skip %q lacks keywords %q", l.Label(), l.Skip, missing)
					}
				}
			},
		},
		{
			path: "testdata/models/convmixer_digits_d64_l4_k9.onnx",
			D:    4, kernels: map[string]int{"9x9": 4}, source: ini, dtype: f32,
			extra: func(t *testing.T, res *graphscan.Result) {
				checkChannels(t, res, nil, map[int64]int{64: 4})
				for k, l := range res.Layers {
					if want := fmt.Sprintf("%d.0.fn.0.weight", k+3); l.TensorName != want {
						t.Errorf("layer %d: got tensor %q, want %q", l.Index, l.TensorName, want)
					}
				}
			},
		},
		{
			path: "testdata/models/convmixer_digits_k9_fp16weights.onnx",
			D:    4, kernels: map[string]int{"9x9": 4}, source: ini, dtype: f16,
			extra: func(t *testing.T, res *graphscan.Result) {
				for _, l := range res.Layers {
					if !slices.Contains(l.Via, "Cast") || !strings.HasSuffix(l.TensorName, "_fp16") {
						t.Errorf("layer %d: got tensor %q via %v, want a *_fp16 initializer via Cast", l.Index, l.TensorName, l.Via)
					}
				}
			},
		},
		{
			path: "testdata/models/convmixer_digits_k9_fp16.onnx",
			D:    4, kernels: map[string]int{"9x9": 4}, source: ini, dtype: f16,
		},
		{
			path: "testdata/models/debian/test_Conv2d_depthwise/model.onnx",
			D:    1, kernels: map[string]int{"3x3": 1}, source: ini, dtype: f32,
			extra: func(t *testing.T, res *graphscan.Result) { checkChannels(t, res, nil, map[int64]int{4: 1}) },
		},
		{
			path: "testdata/models/debian/test_Conv2d_depthwise_padded/model.onnx",
			D:    1, kernels: map[string]int{"3x3": 1}, source: ini, dtype: f32,
		},
		{
			path: "testdata/models/debian/test_Conv2d_depthwise_strided/model.onnx",
			D:    1, kernels: map[string]int{"3x3": 1}, source: ini, dtype: f32,
			extra: func(t *testing.T, res *graphscan.Result) { checkStrided(t, res, 1) },
		},
		{
			path: "testdata/models/debian/test_Conv2d_depthwise_with_multiplier/model.onnx",
			D:    1, kernels: map[string]int{"3x3": 1}, source: ini, dtype: f32,
			extra: func(t *testing.T, res *graphscan.Result) {
				if l := res.Layers[0]; l.Channels != 4 || l.Multiplier != 2 || !slices.Equal(l.Tensor.GetDims(), []int64{8, 1, 3, 3}) {
					t.Errorf("got C %d, m %d, weight %v; want C 4, m 2, weight [8 1 3 3]", l.Channels, l.Multiplier, l.Tensor.GetDims())
				}
			},
		},
		{path: "testdata/models/debian/test_Conv2d_groups/model.onnx", D: 0},
		{path: "testdata/models/debian/test_Conv1d_groups/model.onnx", D: 0},
		{
			path: "models/npm/mlsd_320x320_tiny.onnx", shared: true,
			D: 10, kernels: map[string]int{"3x3": 10}, source: ini, dtype: f32,
			extra: func(t *testing.T, res *graphscan.Result) {
				checkChannels(t, res, nil, map[int64]int{32: 1, 96: 1, 144: 2, 192: 3, 384: 3})
				checkWeightNames(t, res, "const_fold_opt__", "")
			},
		},
		{
			path: "models/npm/ch_PP-OCRv4_det_infer.onnx", shared: true,
			D: 14, kernels: map[string]int{"3x3": 6, "5x5": 8}, source: cnst, dtype: f32,
			extra: func(t *testing.T, res *graphscan.Result) { checkChannelRange(t, res, 16, 384) },
		},
		{
			path: "models/npm/ch_PP-OCRv4_rec_infer.onnx", shared: true,
			D: 14, kernels: map[string]int{"3x3": 6, "5x5": 8}, source: cnst, dtype: f32,
			extra: func(t *testing.T, res *graphscan.Result) { checkChannelRange(t, res, 16, 480) },
		},
	}
	root := testutil.RepoRoot(t)
	shared := testutil.SharedDir(t)
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(filepath.Base(filepath.Dir(tt.path))+"_"+filepath.Base(tt.path), ".onnx"), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(root, tt.path)
			if tt.shared {
				if shared == "" {
					t.Skip("no shared folder: set CONVCOV_SHARED or put it at ../shared next to the repository")
				}
				path = filepath.Join(shared, tt.path)
			}
			m, err := onnxio.Load(path)
			if err != nil {
				t.Fatalf("Load: got error %v, want none", err)
			}
			res, err := graphscan.Scan(m)
			if err != nil {
				t.Fatalf("Scan: got error %v, want none", err)
			}
			if got := len(res.Layers); got != tt.D {
				t.Fatalf("D: got %d layers, want %d", got, tt.D)
			}
			if got := len(res.Outside); got != tt.outside {
				t.Errorf("Outside: got %d layers, want %d", got, tt.outside)
			}
			checkNumbering(t, res.Layers)
			kernels := map[string]int{}
			for _, l := range res.Layers {
				kernels[kernelString(l.Kernel)]++
				if l.Skip != "" {
					t.Errorf("layer %d (node %s): got Skip %q, want a rewrite", l.Index, l.Label(), l.Skip)
					continue
				}
				if l.SourceKind != tt.source {
					t.Errorf("layer %d (node %s): got SourceKind %q, want %q", l.Index, l.Label(), l.SourceKind, tt.source)
				}
				if got := onnxpb.TensorProto_DataType(l.Tensor.GetDataType()); got != tt.dtype {
					t.Errorf("layer %d (node %s): got weight type %s, want %s", l.Index, l.Label(), got, tt.dtype)
				}
				if len(l.Warnings) > 0 {
					t.Errorf("layer %d (node %s): got warnings %q, want none", l.Index, l.Label(), l.Warnings)
				}
			}
			if tt.D > 0 && !maps.Equal(kernels, tt.kernels) {
				t.Errorf("kernels: got %v, want %v", kernels, tt.kernels)
			}
			if tt.extra != nil {
				tt.extra(t, res)
			}
		})
	}
}

func kernelString(k []int64) string {
	s := make([]string, len(k))
	for i, v := range k {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, "x")
}

// checkChannels checks the set of channel counts (distinct) or how many layers have each.
func checkChannels(t *testing.T, res *graphscan.Result, distinct []int64, counts map[int64]int) {
	t.Helper()
	got := map[int64]int{}
	for _, l := range res.Layers {
		got[l.Channels]++
		if l.Multiplier != 1 {
			t.Errorf("layer %d: got multiplier %d, want 1", l.Index, l.Multiplier)
		}
	}
	if counts != nil && !maps.Equal(got, counts) {
		t.Errorf("channels: got %v, want %v", got, counts)
	}
	if distinct != nil {
		var keys []int64
		for c := range got {
			keys = append(keys, c)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, distinct) {
			t.Errorf("channels: got %v, want %v", keys, distinct)
		}
	}
}

// checkChannelRange checks that the smallest and largest channel counts are lo and hi.
func checkChannelRange(t *testing.T, res *graphscan.Result, lo, hi int64) {
	t.Helper()
	var cs []int64
	for _, l := range res.Layers {
		cs = append(cs, l.Channels)
	}
	if gotLo, gotHi := slices.Min(cs), slices.Max(cs); gotLo != lo || gotHi != hi {
		t.Errorf("channels: got %d..%d, want %d..%d", gotLo, gotHi, lo, hi)
	}
}

// checkStrided checks how many layers have a stride > 1 of their own.
func checkStrided(t *testing.T, res *graphscan.Result, want int) {
	t.Helper()
	got := 0
	for _, l := range res.Layers {
		if slices.ContainsFunc(l.Strides, func(s int64) bool { return s > 1 }) {
			got++
		}
	}
	if got != want {
		t.Errorf("strided depthwise layers: got %d, want %d", got, want)
	}
}

// checkWeightNames checks that every layer's source tensor name has the given prefix and
// suffix.
func checkWeightNames(t *testing.T, res *graphscan.Result, prefix, suffix string) {
	t.Helper()
	for _, l := range res.Layers {
		if !strings.HasPrefix(l.TensorName, prefix) || !strings.HasSuffix(l.TensorName, suffix) {
			t.Errorf("layer %d: got tensor %q, want %q...%q", l.Index, l.TensorName, prefix, suffix)
		}
	}
}

// TestExpectationsDescribeFiles checks that the model files are those expect.json was
// written for: a file that differs (a regenerated or hand-edited model) may no longer
// hold the situation its expectations describe.
func TestExpectationsDescribeFiles(t *testing.T) {
	t.Parallel()
	for _, m := range testutil.Expectations(t) {
		t.Run(m.Name(), func(t *testing.T) {
			t.Parallel()
			files := append([]testutil.DataFile{{Path: m.Path, SHA256: m.SHA256}}, m.DataFiles...)
			for _, f := range files {
				if got := testutil.SHA256(t, f.Path); got != f.SHA256 {
					t.Errorf("%s: got sha256 %s, want %s as expect.json records", f.Path, got, f.SHA256)
				}
			}
		})
	}
}

// TestScanWithoutShapeInfo holds Scan to fixture 09's expectations on that model with every
// shape removed, as its title says it is: the committed file carries inferred shapes
// (TestExpectationsDescribeFiles), so the path where channels come from group alone needs
// this copy.
func TestScanWithoutShapeInfo(t *testing.T) {
	t.Parallel()
	i := slices.IndexFunc(testutil.Expectations(t), func(m testutil.Model) bool {
		return m.Set == "fixtures" && m.File == "09_no_shape_info.onnx"
	})
	if i < 0 {
		t.Fatal("fixtures/expect.json has no 09_no_shape_info.onnx")
	}
	m := testutil.Expectations(t)[i]
	mp, err := testutil.ReadModel(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	g := mp.GetGraph()
	g.ValueInfo = nil
	for _, vi := range slices.Concat(g.GetInput(), g.GetOutput()) {
		if tt := vi.GetType().GetTensorType(); tt != nil {
			tt.Shape = nil
		}
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	model, err := onnxio.Decode(b)
	if err != nil {
		t.Fatalf("Decode: got error %v, want none", err)
	}
	res, err := graphscan.Scan(model)
	if err != nil {
		t.Fatalf("Scan: got error %v, want none", err)
	}
	checkResult(t, m, res)
}

// Small models built here, for the rules of DESIGN.md that no fixture holds.

func attrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func node(name, op string, in, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{Name: proto.String(name), OpType: proto.String(op), Input: in, Output: out, Attribute: attrs}
}

// dwConv is a Conv of the given group reading x and weight w.
func dwConv(name, x, w, y string, group int64) *onnxpb.NodeProto {
	return node(name, "Conv", []string{x, w}, []string{y}, attrInt("group", group))
}

func weight(name string, dims ...int64) *onnxpb.TensorProto {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return &onnxpb.TensorProto{
		Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
		RawData: make([]byte, 4*n),
	}
}

func value(name string, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{
			Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d},
		})
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
		Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Shape: shape,
		}},
	}}
}

// scanGraph encodes a model with graph g and scans it.
func scanGraph(t *testing.T, g *onnxpb.GraphProto) (*graphscan.Result, error) {
	t.Helper()
	mp := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph:       g,
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return graphscan.Scan(m)
}

// TestScanRules checks rules of DESIGN.md on small graphs: which graphs are refused, which
// Conv nodes are depthwise, and why a weight is not rewritten.
func TestScanRules(t *testing.T) {
	t.Parallel()
	x := value("x", 1, 8, 16, 16)
	tests := []struct {
		name     string
		graph    *onnxpb.GraphProto
		refuse   []string // keywords of the error; nil: Scan must succeed
		D        int
		skip     map[string][]string // node -> keywords of its Skip reason
		warnings []string            // keywords of a model warning
	}{
		{
			name: "cycle",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					node("a", "Add", []string{"x", "b_out"}, []string{"a_out"}),
					node("b", "Relu", []string{"a_out"}, []string{"b_out"}),
					dwConv("dw", "b_out", "w", "y", 8),
				},
				Initializer: []*onnxpb.TensorProto{weight("w", 8, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{"cycle", "a|b"},
		},
		{
			name: "two producers",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					node("r1", "Relu", []string{"x"}, []string{"h"}),
					node("r2", "Relu", []string{"x"}, []string{"h"}),
					dwConv("dw", "h", "w", "y", 8),
				},
				Initializer: []*onnxpb.TensorProto{weight("w", 8, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{"r1", "r2", `"h"`},
		},
		{
			name: "read of an undefined value",
			graph: &onnxpb.GraphProto{
				Node:        []*onnxpb.NodeProto{dwConv("dw", "nowhere", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{weight("w", 8, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{"dw", "nowhere"},
		},
		{
			name: "node reads its own output",
			graph: &onnxpb.GraphProto{
				Node:  []*onnxpb.NodeProto{node("loop", "Add", []string{"x", "h"}, []string{"h"})},
				Input: []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{"loop", `"h"`},
		},
		{
			name: "weight of rank 2",
			graph: &onnxpb.GraphProto{
				Node:        []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{weight("w", 8, 9)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{"dw", `"w"`},
		},
		{
			name: "output channels not a multiple of group",
			graph: &onnxpb.GraphProto{
				Node:        []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{weight("w", 12, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			refuse: []string{"dw", "group"},
		},
		{
			name: "group contradicts channels in value_info",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					node("r", "Relu", []string{"x"}, []string{"h"}),
					dwConv("dw", "h", "w", "y", 4),
				},
				Initializer: []*onnxpb.TensorProto{weight("w", 4, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
				ValueInfo:   []*onnxpb.ValueInfoProto{value("h", 1, 8, 16, 16)},
			},
			refuse: []string{"dw", "group|channel"},
		},
		{
			name: "ai.onnx domain counts, a custom domain does not",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					func() *onnxpb.NodeProto {
						n := dwConv("dw_ai_onnx", "x", "w1", "h", 8)
						n.Domain = proto.String("ai.onnx")
						return n
					}(),
					func() *onnxpb.NodeProto {
						n := dwConv("dw_custom", "h", "w2", "y", 8)
						n.Domain = proto.String("com.example")
						return n
					}(),
				},
				Initializer: []*onnxpb.TensorProto{weight("w1", 8, 1, 3, 3), weight("w2", 8, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			D: 1,
		},
		{
			name: "no group attribute",
			graph: &onnxpb.GraphProto{
				Node:        []*onnxpb.NodeProto{node("conv", "Conv", []string{"x", "w"}, []string{"y"})},
				Initializer: []*onnxpb.TensorProto{weight("w", 8, 8, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			D: 0,
		},
		{
			name: "weight is a graph output",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					node("id", "Identity", []string{"w"}, []string{"w_out"}),
					dwConv("dw", "x", "w_out", "y", 8),
				},
				Initializer: []*onnxpb.TensorProto{weight("w", 8, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
				Output:      []*onnxpb.ValueInfoProto{value("y", 1, 8, 14, 14), value("w_out", 8, 1, 3, 3)},
			},
			D:    1,
			skip: map[string][]string{"dw": {"w_out", "output"}},
		},
		{
			name: "weight through two Identity nodes",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{
					node("id1", "Identity", []string{"w"}, []string{"w1"}),
					node("id2", "Identity", []string{"w1"}, []string{"w2"}),
					dwConv("dw", "x", "w2", "y", 8),
				},
				Initializer: []*onnxpb.TensorProto{weight("w", 8, 1, 3, 3)},
				Input:       []*onnxpb.ValueInfoProto{x},
			},
			D: 1,
		},
		{
			name: "integer initializer",
			graph: &onnxpb.GraphProto{
				Node: []*onnxpb.NodeProto{dwConv("dw", "x", "w", "y", 8)},
				Initializer: []*onnxpb.TensorProto{{
					Name: proto.String("w"), Dims: []int64{8, 1, 3, 3},
					DataType: proto.Int32(int32(onnxpb.TensorProto_INT32)), Int32Data: make([]int32, 72),
				}},
				Input: []*onnxpb.ValueInfoProto{x},
			},
			D:    1,
			skip: map[string][]string{"dw": {`"w"`, "INT32|type"}},
		},
		{
			name: "grouped conv with nothing known of its shapes",
			graph: &onnxpb.GraphProto{
				Node:  []*onnxpb.NodeProto{dwConv("dw", "x_unknown", "w_in", "y", 8)},
				Input: []*onnxpb.ValueInfoProto{{Name: proto.String("x_unknown")}, {Name: proto.String("w_in")}},
			},
			D:        0,
			warnings: []string{"dw", "group"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := scanGraph(t, tt.graph)
			if tt.refuse != nil {
				if !errors.Is(err, graphscan.ErrInvalidGraph) {
					t.Fatalf("Scan: got error %v, want one wrapping ErrInvalidGraph", err)
				}
				if missing := testutil.MissingKeywords(err.Error(), tt.refuse); len(missing) > 0 {
					t.Errorf("Scan error %q lacks keywords %q", err, missing)
				}
				return
			}
			if err != nil {
				t.Fatalf("Scan: got error %v, want none", err)
			}
			if got := len(res.Layers); got != tt.D {
				t.Errorf("D: got %d, want %d", got, tt.D)
			}
			for _, l := range res.Layers {
				want, skipped := tt.skip[l.Name]
				switch {
				case skipped && l.Skip == "":
					t.Errorf("node %s: got a rewrite of %q, want it skipped with keywords %q", l.Name, l.TensorName, want)
				case skipped:
					if missing := testutil.MissingKeywords(l.Skip, want); len(missing) > 0 {
						t.Errorf("node %s: Skip %q lacks keywords %q", l.Name, l.Skip, missing)
					}
				case l.Skip != "":
					t.Errorf("node %s: got Skip %q, want a rewrite", l.Name, l.Skip)
				}
			}
			if tt.warnings != nil && !slices.ContainsFunc(res.Warnings, func(w string) bool {
				return len(testutil.MissingKeywords(w, tt.warnings)) == 0
			}) {
				t.Errorf("got model warnings %q, want one with keywords %q", res.Warnings, tt.warnings)
			}
		})
	}
}
