package verify

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

const casesDir = "../testdata/cases"

// loadModel loads the model at path, or fails the test.
func loadModel(t testing.TB, path string) *onnxio.Model {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// scanModel scans m, or fails the test.
func scanModel(t testing.TB, m *onnxio.Model) *graphscan.Result {
	t.Helper()
	res, err := graphscan.Scan(m)
	if err != nil {
		t.Fatalf("%s: %v", m.Path(), err)
	}
	return res
}

// rewritable returns the tensors of m that a rewrite may change, as Check gives them to Diff.
func rewritable(t testing.TB, m *onnxio.Model) map[*onnxpb.TensorProto]bool {
	t.Helper()
	allowed := map[*onnxpb.TensorProto]bool{}
	for _, l := range scanModel(t, m).Layers {
		if l.Tensor != nil {
			allowed[l.Tensor] = true
		}
	}
	return allowed
}

// closedForm is the Source that init uses by default: the closed form at σ(d) of the
// default preset.
func closedForm(t testing.TB) *inject.ClosedFormSource {
	t.Helper()
	s, err := inject.Preset(inject.DefaultPreset)
	if err != nil {
		t.Fatal(err)
	}
	return &inject.ClosedFormSource{Schedule: s}
}

// rewriteModel does what init does: it draws new filters for every rewritable depthwise
// layer of the model at in, from src with seed 0, and writes the result to out, a path in a
// folder of the test's own. It returns the model as rewritten, before it was written.
func rewriteModel(t testing.TB, in, out string, src inject.Source) *onnxio.Model {
	t.Helper()
	m := loadModel(t, in)
	rep, err := inject.Apply(m, scanModel(t, m), src, inject.Options{})
	if err != nil {
		t.Fatalf("%s: %v", in, err)
	}
	if rep.Rewritten == 0 {
		t.Fatalf("%s: no layer was rewritten", in)
	}
	if err := m.Save(out); err != nil {
		t.Fatal(err)
	}
	return m
}

// diffFiles loads two model files and diffs them as Check does.
func diffFiles(t *testing.T, original, rewritten string) *Structure {
	t.Helper()
	a := loadModel(t, original)
	s, err := Diff(a, loadModel(t, rewritten), rewritable(t, a))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func paths(pairs []TensorPair) []string {
	var p []string
	for _, pair := range pairs {
		p = append(p, pair.Path)
	}
	return p
}

// TestDiffClean diffs each model with an unchanged copy of itself and with a correct rewrite
// of it: no difference, and exactly the rewritten weights listed as changed.
func TestDiffClean(t *testing.T) {
	t.Parallel()
	tests := []struct {
		model   string
		changed []string // paths of the rewritten weights
	}{
		{
			model: casesDir + "/01_mobilenet_baseline.onnx",
			changed: []string{`model.graph.initializer["dw1.weight"]`, `model.graph.initializer["dw2.weight"]`,
				`model.graph.initializer["dw3.weight"]`},
		},
		{
			// FLOAT, FLOAT16 and BFLOAT16 weights, in raw_data and in the typed fields.
			model: modelsDir + "/fixtures/03a_storage_float_types.onnx",
		},
		{
			// Weights in initializers behind Identity and Cast, and in Constant nodes.
			model: casesDir + "/07_weight_producers.onnx",
		},
		{
			// Doc strings and metadata everywhere, which must survive.
			model: casesDir + "/18_metadata_docstrings.onnx",
		},
		{
			// Depthwise convolutions inside subgraphs and functions: reported, not rewritten.
			model: modelsDir + "/fixtures/06_subgraphs_functions.onnx",
		},
		{
			// Weights in Constant nodes.
			model: modelsDir + "/ch_ppocr_mobile_v2.0_cls_infer.onnx",
		},
		{model: modelsDir + "/convmixer_digits_k9_fp16.onnx"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.model), func(t *testing.T) {
			t.Parallel()
			s := diffFiles(t, tt.model, tt.model)
			if len(s.Differences) != 0 || s.More != 0 || len(s.Changed) != 0 {
				t.Errorf("against itself: differences %v (+%d), changed %q; want none",
					s.Differences, s.More, paths(s.Changed))
			}
			if s.Tensors == 0 {
				t.Errorf("against itself: %d tensors compared, want some", s.Tensors)
			}

			out := filepath.Join(t.TempDir(), "out.onnx")
			m := rewriteModel(t, tt.model, out, closedForm(t))
			s = diffFiles(t, tt.model, out)
			if len(s.Differences) != 0 || s.More != 0 {
				t.Errorf("after a rewrite: differences %v (+%d), want none", s.Differences, s.More)
			}
			var want []string
			for _, tp := range m.Tensors() {
				if m.Changed(tp) {
					want = append(want, tp.GetName())
				}
			}
			if len(s.Changed) != len(want) || len(s.Unchanged) != 0 {
				t.Errorf("after a rewrite: changed %q, unchanged %q; want the %d rewritten weights %q changed",
					paths(s.Changed), paths(s.Unchanged), len(want), want)
			}
			if tt.changed != nil && !slices.Equal(paths(s.Changed), tt.changed) {
				t.Errorf("after a rewrite: changed %q, want %q", paths(s.Changed), tt.changed)
			}
		})
	}
}

// TestDiffExternalData rewrites models whose weights are in external data files into another
// folder: the data file's name and the offsets change, the content of every tensor but the
// rewritten ones does not, and Diff sees no difference.
func TestDiffExternalData(t *testing.T) {
	t.Parallel()
	for _, model := range []string{
		casesDir + "/10_external_data/model.onnx",
		modelsDir + "/fixtures/14a_external_one_file/model.onnx",
		modelsDir + "/fixtures/14b_external_two_files/model.onnx",
	} {
		t.Run(filepath.Base(filepath.Dir(model)), func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "elsewhere", "rewritten.onnx")
			if err := os.Mkdir(filepath.Dir(out), 0o755); err != nil {
				t.Fatal(err)
			}
			rewriteModel(t, model, out, closedForm(t))
			s := diffFiles(t, model, out)
			if len(s.Differences) != 0 || s.More != 0 {
				t.Errorf("differences %v (+%d), want none", s.Differences, s.More)
			}
			want := []string{`model.graph.initializer["W_dw1"]`, `model.graph.initializer["W_dw2"]`}
			if got := paths(s.Changed); !slices.Equal(got, want) {
				t.Errorf("changed %q, want W_dw1 and W_dw2", got)
			}

			// The test means something only if the pointwise weight, which must stay, moved.
			a, b := loadModel(t, model), loadModel(t, out)
			if ea, eb := externalOf(t, a, "W_pw"), externalOf(t, b, "W_pw"); ea == eb {
				t.Errorf("W_pw's external data is %s in both models; want it moved", ea)
			}

			// Changing the pointwise weight's content is a difference.
			pw := tensorNamed(t, b, "W_pw")
			v, err := b.Values(pw)
			if err != nil {
				t.Fatal(err)
			}
			v[3] += 0.5
			if err := b.SetValues(pw, v); err != nil {
				t.Fatal(err)
			}
			broken := filepath.Join(filepath.Dir(out), "broken.onnx")
			if err := b.Save(broken); err != nil {
				t.Fatal(err)
			}
			s = diffFiles(t, model, broken)
			wantPath := `model.graph.initializer["W_pw"] (data)`
			if len(s.Differences) != 1 || s.Differences[0].Path != wantPath {
				t.Errorf("W_pw changed: differences %v, want one at %s", s.Differences, wantPath)
			}
		})
	}
}

// tensorNamed returns the initializer of m called name.
func tensorNamed(t testing.TB, m *onnxio.Model, name string) *onnxpb.TensorProto {
	t.Helper()
	for _, tp := range m.Proto.GetGraph().GetInitializer() {
		if tp.GetName() == name {
			return tp
		}
	}
	t.Fatalf("%s has no initializer %q", m.Path(), name)
	return nil
}

// externalOf returns the external data entries of m's initializer name, as one string.
func externalOf(t testing.TB, m *onnxio.Model, name string) string {
	t.Helper()
	var kv []string
	for _, e := range tensorNamed(t, m, name).GetExternalData() {
		kv = append(kv, e.GetKey()+"="+e.GetValue())
	}
	return strings.Join(kv, ",")
}

// TestDiffChangedInitializer alters a pointwise weight of a model, writes it, and expects
// Diff to name the weight.
func TestDiffChangedInitializer(t *testing.T) {
	t.Parallel()
	model := casesDir + "/01_mobilenet_baseline.onnx"
	m := loadModel(t, model)
	pw := tensorNamed(t, m, "pw2.weight")
	v, err := m.Values(pw)
	if err != nil {
		t.Fatal(err)
	}
	v[0] += 1
	if err := m.SetValues(pw, v); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.onnx")
	if err := m.Save(out); err != nil {
		t.Fatal(err)
	}
	s := diffFiles(t, model, out)
	want := `model.graph.initializer["pw2.weight"] (data)`
	if len(s.Differences) != 1 || s.Differences[0].Path != want ||
		!strings.Contains(s.Differences[0].What, "only the depthwise weights may change") {
		t.Errorf("differences %v, want one at %s that says only the depthwise weights may change", s.Differences, want)
	}
	if len(s.Changed) != 0 {
		t.Errorf("changed %q, want none: no depthwise weight changed", paths(s.Changed))
	}
}

// TestDiffStructure changes one thing at a time in a decoded copy of a model, besides its
// depthwise weights, and expects Diff to report it at a path that names it.
func TestDiffStructure(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(casesDir + "/01_mobilenet_baseline.onnx")
	if err != nil {
		t.Fatal(err)
	}
	node := func(mp *onnxpb.ModelProto, name string) *onnxpb.NodeProto {
		for _, n := range mp.GetGraph().GetNode() {
			if n.GetName() == name {
				return n
			}
		}
		t.Fatalf("no node %q", name)
		return nil
	}
	attr := func(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
		for _, a := range n.GetAttribute() {
			if a.GetName() == name {
				return a
			}
		}
		t.Fatalf("node %q has no attribute %q", n.GetName(), name)
		return nil
	}
	init := func(mp *onnxpb.ModelProto, name string) *onnxpb.TensorProto {
		for _, tp := range mp.GetGraph().GetInitializer() {
			if tp.GetName() == name {
				return tp
			}
		}
		t.Fatalf("no initializer %q", name)
		return nil
	}

	tests := []struct {
		name     string
		edit     func(mp *onnxpb.ModelProto)
		wantPath string
		wantWhat []string
	}{
		{
			name:     "attribute",
			edit:     func(mp *onnxpb.ModelProto) { attr(node(mp, "/dw2/Conv"), "dilations").Ints[1] = 2 },
			wantPath: `model.graph.node["/dw2/Conv"].attribute["dilations"].ints[1]`,
			wantWhat: []string{"1 in the original, 2 in the rewritten model"},
		},
		{
			name: "attribute added",
			edit: func(mp *onnxpb.ModelProto) {
				n := node(mp, "/pw1/Conv")
				n.Attribute = append(n.Attribute, &onnxpb.AttributeProto{Name: proto.String("auto_pad"),
					Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte("SAME_UPPER")})
			},
			wantPath: `model.graph.node["/pw1/Conv"].attribute`,
			wantWhat: []string{`only in the rewritten model: "auto_pad"`},
		},
		{
			name: "metadata_props entry added",
			edit: func(mp *onnxpb.ModelProto) {
				mp.MetadataProps = append(mp.MetadataProps, &onnxpb.StringStringEntryProto{
					Key: proto.String("rewritten_by"), Value: proto.String("someone")})
			},
			wantPath: "model.metadata_props",
			wantWhat: []string{"0 elements in the original, 1", `"rewritten_by"`},
		},
		{
			name:     "model doc string",
			edit:     func(mp *onnxpb.ModelProto) { mp.DocString = proto.String("rewritten") },
			wantPath: "model.doc_string",
			wantWhat: []string{"only one model"},
		},
		{
			name:     "node doc string",
			edit:     func(mp *onnxpb.ModelProto) { node(mp, "/dw1/Conv").DocString = proto.String("x") },
			wantPath: `model.graph.node["/dw1/Conv"].doc_string`,
		},
		{
			name:     "ir_version",
			edit:     func(mp *onnxpb.ModelProto) { mp.IrVersion = proto.Int64(8) },
			wantPath: "model.ir_version",
			wantWhat: []string{"7 in the original, 8 in the rewritten model"},
		},
		{
			name:     "opset version",
			edit:     func(mp *onnxpb.ModelProto) { mp.OpsetImport[0].Version = proto.Int64(14) },
			wantPath: "model.opset_import[0].version",
			wantWhat: []string{"13 in the original, 14 in the rewritten model"},
		},
		{
			name: "opset import added",
			edit: func(mp *onnxpb.ModelProto) {
				mp.OpsetImport = append(mp.OpsetImport, &onnxpb.OperatorSetIdProto{
					Domain: proto.String("com.microsoft"), Version: proto.Int64(1)})
			},
			wantPath: "model.opset_import",
			wantWhat: []string{"1 elements in the original, 2", `only in the rewritten model: "com.microsoft"`},
		},
		{
			name:     "producer",
			edit:     func(mp *onnxpb.ModelProto) { mp.ProducerName = proto.String("convcov-onnx") },
			wantPath: "model.producer_name",
		},
		{
			name:     "node input",
			edit:     func(mp *onnxpb.ModelProto) { node(mp, "/Add").Input[1] = "r3" },
			wantPath: `model.graph.node["/Add"].input[1]`,
			wantWhat: []string{"r4 in the original, r3 in the rewritten model"},
		},
		{
			name:     "bias of a depthwise layer",
			edit:     func(mp *onnxpb.ModelProto) { init(mp, "dw1.bias").RawData[0] ^= 1 },
			wantPath: `model.graph.initializer["dw1.bias"] (data)`,
		},
		{
			// The data of a depthwise weight may change; its shape may not.
			name: "dims of a depthwise weight",
			edit: func(mp *onnxpb.ModelProto) {
				w := init(mp, "dw1.weight")
				w.Dims = []int64{16, 1, 9}
			},
			wantPath: `model.graph.initializer["dw1.weight"].dims`,
			wantWhat: []string{"4 elements in the original, 3"},
		},
		{
			name:     "type of a depthwise weight",
			edit:     func(mp *onnxpb.ModelProto) { init(mp, "dw2.weight").DataType = proto.Int32(onnxio.Double) },
			wantPath: `model.graph.initializer["dw2.weight"].data_type`,
		},
		{
			name: "graph input shape",
			edit: func(mp *onnxpb.ModelProto) {
				dim := mp.Graph.Input[0].Type.GetTensorType().Shape.Dim[2]
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 64}
			},
			wantPath: `model.graph.input["input"].type.tensor_type.shape.dim[2].dim_value`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mp := &onnxpb.ModelProto{}
			if err := proto.Unmarshal(src, mp); err != nil {
				t.Fatal(err)
			}
			tt.edit(mp)
			edited, err := proto.Marshal(mp)
			if err != nil {
				t.Fatal(err)
			}
			a, err := onnxio.Decode(src)
			if err != nil {
				t.Fatal(err)
			}
			b, err := onnxio.Decode(edited)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Diff(a, b, rewritable(t, a))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Differences) != 1 {
				t.Fatalf("differences %v (+%d), want one at %s", s.Differences, s.More, tt.wantPath)
			}
			d := s.Differences[0]
			t.Log(d)
			if d.Path != tt.wantPath {
				t.Errorf("difference at %s, want %s", d.Path, tt.wantPath)
			}
			for _, w := range tt.wantWhat {
				if !strings.Contains(d.What, w) {
					t.Errorf("difference %q does not say %q", d.What, w)
				}
			}
		})
	}
}

// TestDiffManyDifferences checks that Diff lists at most maxDifferences and counts the rest.
func TestDiffManyDifferences(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(casesDir + "/01_mobilenet_baseline.onnx")
	if err != nil {
		t.Fatal(err)
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(src, mp); err != nil {
		t.Fatal(err)
	}
	for _, n := range mp.Graph.Node {
		n.DocString = proto.String("changed")
		n.Domain = proto.String("")
	}
	edited, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := onnxio.Decode(src)
	b, err := onnxio.Decode(edited)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Diff(a, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if total := len(s.Differences) + s.More; len(s.Differences) != maxDifferences || total != 2*len(mp.Graph.Node) {
		t.Errorf("%d differences listed and %d more; want %d listed of %d", len(s.Differences), s.More,
			maxDifferences, 2*len(mp.Graph.Node))
	}
}
