package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/internal/testutil"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// runCLI runs the command line in-process and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// inputFiles are the model and its external data files, whose bytes a run must not change.
func inputFiles(m testutil.Model) []testutil.DataFile {
	return append([]testutil.DataFile{{Path: m.Path, SHA256: m.SHA256}}, m.DataFiles...)
}

// hashInputs returns the sha256 of each input file.
func hashInputs(t *testing.T, m testutil.Model) []string {
	t.Helper()
	var sums []string
	for _, f := range inputFiles(m) {
		sums = append(sums, testutil.SHA256(t, f.Path))
	}
	return sums
}

// TestInitCases runs init on every model of testdata/cases/expect.json and
// testdata/models/fixtures/expect.json and checks the outcome each one expects.
func TestInitCases(t *testing.T) {
	t.Parallel()
	for _, m := range testutil.Expectations(t) {
		t.Run(m.Name(), func(t *testing.T) {
			t.Parallel()
			before := hashInputs(t, m)
			dir := t.TempDir()
			out := filepath.Join(dir, "out.onnx")
			code, stdout, stderr := runCLI(t, "init", m.Path, "-o", out)
			for k, after := range hashInputs(t, m) {
				if after != before[k] {
					t.Errorf("init changed its input %s: sha256 %s before, %s after", inputFiles(m)[k].Path, before[k], after)
				}
			}

			if m.Outcome == testutil.OutcomeRefuse {
				checkRefusedRun(t, m, dir, code, stderr)
				return
			}
			if code != m.Exit {
				t.Fatalf("init: got exit status %d, want %d\nstderr:\n%s", code, m.Exit, stderr)
			}
			checkMessages(t, m, stdout, stderr)
			if m.Outcome == testutil.OutcomeUnchanged {
				checkSameBytes(t, m.Path, out)
				return
			}
			checkWholeModel(t, m.Path, out, rewriteTargets(m))
		})
	}
}

// checkRefusedRun checks a refused model: non-zero exit, keywords on stderr, nothing written.
func checkRefusedRun(t *testing.T, m testutil.Model, dir string, code int, stderr string) {
	if code == 0 {
		t.Errorf("init: got exit status 0, want %d (refused)", m.Exit)
	} else if code != m.Exit {
		t.Errorf("init: got exit status %d, want %d", code, m.Exit)
	}
	keywords := slices.Clone(m.RefuseKeywords)
	for _, n := range m.Nodes {
		if n.Action == testutil.Refuse {
			keywords = append(keywords, n.Keywords...)
		}
	}
	if missing := testutil.MissingKeywords(stderr, keywords); len(missing) > 0 {
		t.Errorf("stderr %q lacks keywords %q", stderr, missing)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("a refused model left %s in the output folder, want it empty", e.Name())
	}
}

// checkMessages checks what init prints: the message keywords of the model, a reason for
// every skipped node and a warning where one is expected.
func checkMessages(t *testing.T, m testutil.Model, stdout, stderr string) {
	all := stdout + stderr
	if missing := testutil.MissingKeywords(stdout, m.MessageKeywords); len(missing) > 0 {
		t.Errorf("stdout lacks keywords %q:\n%s", missing, stdout)
	}
	lines := strings.Split(all, "\n")
	for _, n := range m.Nodes {
		label := n.Name
		if label == "" {
			label = fmt.Sprintf("#%d", n.Index)
		}
		// A line that names the node and has every keyword.
		says := func(keywords []string) bool {
			return slices.ContainsFunc(lines, func(line string) bool {
				return strings.Contains(line, label) && len(testutil.MissingKeywords(line, keywords)) == 0
			})
		}
		switch {
		case n.Action == testutil.Skip && !says(n.Keywords):
			t.Errorf("node %s is skipped, but no output line names it with keywords %q:\n%s", n.ID(), n.Keywords, all)
		case n.Action == testutil.Rewrite && len(n.Warn) > 0 && !says(append([]string{"warn"}, n.Warn...)):
			t.Errorf("node %s: no warning names it with keywords %q:\n%s", n.ID(), n.Warn, all)
		case n.Action == testutil.Rewrite && n.NoWarning:
			for _, line := range lines {
				if strings.Contains(strings.ToLower(line), "warn") && testutil.MentionsName(line, n.Name) {
					t.Errorf("node %s: got warning %q, want none", n.ID(), line)
				}
			}
		}
	}
}

// checkSameBytes checks that the output file is the input byte for byte.
func checkSameBytes(t *testing.T, in, out string) {
	t.Helper()
	a, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("no output: %v", err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("output %s: got %d bytes that differ from the input's %d, want the input unchanged", out, len(b), len(a))
	}
}

// target is a tensor that init must rewrite: an initializer of the main graph, or the value
// of a Constant node.
type target struct {
	tensor   string
	constant bool
}

func rewriteTargets(m testutil.Model) []target {
	var ts []target
	for _, n := range m.Nodes {
		if n.Action == testutil.Rewrite && n.Scope == testutil.MainScope {
			ts = append(ts, target{n.Tensor, n.Constant})
		}
	}
	return ts
}

// tensorRef finds where a target tensor sits in a model's main graph.
func tensorRef(mp *onnxpb.ModelProto, tg target) **onnxpb.TensorProto {
	g := mp.GetGraph()
	if !tg.constant {
		for k, t := range g.GetInitializer() {
			if t.GetName() == tg.tensor {
				return &g.Initializer[k]
			}
		}
		return nil
	}
	for _, n := range g.GetNode() {
		named := n.GetName() == tg.tensor || n.GetName() == "" && slices.Contains(n.GetOutput(), tg.tensor)
		if n.GetOpType() != "Constant" || !named {
			continue
		}
		for _, a := range n.GetAttribute() {
			if a.GetName() == "value" && a.T != nil {
				return &a.T
			}
		}
	}
	return nil
}

// checkWholeModel is EXPECT.md's whole-model check: after the input's target tensors are
// replaced by the output's, the two models are equal; each new tensor keeps its name,
// dims, type and storage field and holds new, finite values.
func checkWholeModel(t *testing.T, inPath, outPath string, targets []target) {
	t.Helper()
	in, err := testutil.ReadModel(inPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := testutil.ReadModel(outPath)
	if err != nil {
		t.Fatalf("reading the output: %v", err)
	}
	for _, tg := range targets {
		ri, ro := tensorRef(in, tg), tensorRef(out, tg)
		if ri == nil || ro == nil {
			t.Errorf("tensor %q: found in input %v, in output %v; want both", tg.tensor, ri != nil, ro != nil)
			continue
		}
		checkRewritten(t, tg.tensor, *ri, *ro)
		*ri = *ro
	}
	if !proto.Equal(in, out) {
		t.Errorf("the output differs from the input in more than the rewritten tensors:\n%s", testutil.Diff(out, in))
	}
}

// checkRewritten checks one rewritten tensor against the original.
func checkRewritten(t *testing.T, name string, orig, got *onnxpb.TensorProto) {
	t.Helper()

	// Everything but the elements is as it was: name, dims, type, doc string.
	strip := func(x *onnxpb.TensorProto) *onnxpb.TensorProto {
		c := proto.Clone(x).(*onnxpb.TensorProto)
		c.RawData, c.FloatData, c.Int32Data, c.DoubleData = nil, nil, nil, nil
		return c
	}
	if !proto.Equal(strip(orig), strip(got)) {
		t.Errorf("tensor %q: more than its elements changed:\n%s", name, testutil.Diff(strip(got), strip(orig)))
	}

	// One storage field, the one the original used.
	so, err := testutil.Storage(orig)
	if err != nil {
		t.Fatalf("input: %v", err)
	}
	sg, err := testutil.Storage(got)
	if err != nil {
		t.Errorf("output: %v", err)
	} else if sg != so {
		t.Errorf("tensor %q: got storage %s, want %s as in the input", name, sg, so)
	}

	// New, finite values, as many as the dims say.
	vo, err := testutil.Floats(orig)
	if err != nil {
		t.Fatalf("input: %v", err)
	}
	vg, err := testutil.Floats(got)
	if err != nil {
		t.Errorf("output: %v", err)
		return
	}
	same := 0
	for k, v := range vg {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("tensor %q: element %d is %v, want finite", name, k, v)
			break
		}
		if v == vo[k] {
			same++
		}
	}
	// Independent continuous draws rounded to at least 8 significant bits rarely hit the
	// old value; more than half equal means the tensor was not really rewritten.
	if same*2 > len(vg) {
		t.Errorf("tensor %q: %d of %d elements unchanged, want new values", name, same, len(vg))
	}
}

// TestDecoderMatchesGenerator checks the tests' own tensor reading against the statistics
// the generator wrote in expect.json, so that the value checks above can be trusted.
func TestDecoderMatchesGenerator(t *testing.T) {
	t.Parallel()
	// The sums in expect.json are exactly rounded; a float64 sum of a few hundred float32
	// values carries a relative error far below 1e-9.
	const tol = 1e-9
	for _, m := range testutil.Expectations(t) {
		if len(m.Tensors) == 0 {
			continue
		}
		t.Run(m.Name(), func(t *testing.T) {
			t.Parallel()
			mp, err := testutil.ReadModel(m.Path)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range m.Tensors {
				ref := tensorRef(mp, target{tensor: st.Name})
				if ref == nil {
					ref = tensorRef(mp, target{tensor: st.Name, constant: true})
				}
				if ref == nil {
					continue // a sparse initializer: its dense values are not stored
				}
				v, err := testutil.Floats(*ref)
				if err != nil {
					t.Errorf("%v", err)
					continue
				}
				var sum, sq float64
				for _, x := range v {
					sum, sq = sum+x, sq+x*x
				}
				if math.Abs(sum-st.Sum) > tol*max(1, math.Abs(st.Sum)) || math.Abs(sq-st.SumSq) > tol*st.SumSq {
					t.Errorf("tensor %q: got sum %v, sum of squares %v; want %v, %v", st.Name, sum, sq, st.Sum, st.SumSq)
				}
				if len(v) < 3 || !slices.Equal(v[:3], st.First3) {
					t.Errorf("tensor %q: got first elements %v, want %v", st.Name, v[:min(3, len(v))], st.First3)
				}
			}
		})
	}
}

// TestInitRealModels rewrites the real models and checks that only the depthwise weights
// the report names change.
func TestInitRealModels(t *testing.T) {
	t.Parallel()
	root := testutil.RepoRoot(t)
	paths, err := filepath.Glob(filepath.Join(root, "testdata", "models", "*.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	debian, err := filepath.Glob(filepath.Join(root, "testdata", "models", "debian", "*", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, debian...)
	// Models that only the shared folder holds, marked by a relative path until it is found.
	sharedOnly := []string{"mlsd_320x320_tiny.onnx", "ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"}
	shared := testutil.SharedDir(t)
	for _, name := range sharedOnly {
		paths = append(paths, filepath.Join("shared", "models", "npm", name))
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(filepath.Dir(path))+"_"+filepath.Base(path), ".onnx")
		t.Run(name, func(t *testing.T) {
			if rel, ok := strings.CutPrefix(path, "shared"+string(filepath.Separator)); ok {
				if shared == "" {
					t.Skip("no shared folder: set CONVCOV_SHARED or put it at ../shared next to the repository")
				}
				path = filepath.Join(shared, rel)
			}
			t.Parallel()
			before := testutil.SHA256(t, path)
			out := filepath.Join(t.TempDir(), "out.onnx")
			code, stdout, stderr := runCLI(t, "init", path, "-o", out, "--json")
			if code != 0 {
				t.Fatalf("init: got exit status %d, want 0\nstderr:\n%s", code, stderr)
			}
			if after := testutil.SHA256(t, path); after != before {
				t.Errorf("the input changed: sha256 %s before, %s after", before, after)
			}
			var rep struct {
				Depthwise int `json:"depthwise"`
				Rewritten int `json:"rewritten"`
				Layers    []struct {
					Tensor string `json:"tensor"`
					Source string `json:"source"`
					Action string `json:"action"`
				} `json:"layers"`
			}
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatalf("init --json: %v\n%s", err, stdout)
			}
			if rep.Rewritten != rep.Depthwise {
				t.Errorf("got %d of %d depthwise convolutions rewritten, want all", rep.Rewritten, rep.Depthwise)
			}
			var targets []target
			for _, l := range rep.Layers {
				if l.Action == inject.ActionRewrite {
					targets = append(targets, target{l.Tensor, l.Source == "Constant"})
				}
			}
			if len(targets) == 0 {
				checkSameBytes(t, path, out)
				return
			}
			checkWholeModel(t, path, out, targets)
		})
	}
}

// TestDeterminism checks that a seed fixes the output bytes, whatever GOMAXPROCS is, and
// that another seed changes them. It changes GOMAXPROCS, so it does not run in parallel.
func TestDeterminism(t *testing.T) {
	root := testutil.RepoRoot(t)
	models := []string{
		"testdata/models/fixtures/13a_convmixer_d8_k9.onnx",
		"testdata/models/fixtures/03a_storage_float_types.onnx",
		"testdata/models/fixtures/14a_external_one_file/model.onnx",
		"testdata/models/face_detection_back_256x256_barracuda.onnx",
		"testdata/cases/07_weight_producers.onnx",
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, rel := range models {
		t.Run(strings.ReplaceAll(strings.TrimSuffix(rel, ".onnx"), "/", "_"), func(t *testing.T) {
			// output runs init into a folder of its own, since the model names its data
			// file, and returns the bytes of the model and the data file.
			output := func(procs int, seed string) [][]byte {
				runtime.GOMAXPROCS(procs)
				out := filepath.Join(t.TempDir(), "out.onnx")
				if code, _, stderr := runCLI(t, "init", filepath.Join(root, rel), "-o", out, "--seed", seed); code != 0 {
					t.Fatalf("init --seed %s with GOMAXPROCS %d: got exit status %d, want 0\n%s", seed, procs, code, stderr)
				}
				var files [][]byte
				for _, p := range []string{out, out + ".data"} {
					b, err := os.ReadFile(p)
					if err != nil && !os.IsNotExist(err) {
						t.Fatal(err)
					}
					files = append(files, b)
				}
				return files
			}
			a := output(1, "7")
			b := output(2, "7")
			c := output(max(4, runtime.NumCPU()), "7")
			d := output(2, "8")
			for k, what := range []string{"model", "data file"} {
				if !bytes.Equal(a[k], b[k]) || !bytes.Equal(a[k], c[k]) {
					t.Errorf("%s: --seed 7 gave different bytes with GOMAXPROCS 1, 2 and %d, want the same", what, max(4, runtime.NumCPU()))
				}
			}
			if bytes.Equal(a[0], d[0]) && bytes.Equal(a[1], d[1]) {
				t.Errorf("--seed 7 and --seed 8 gave the same bytes, want different filters")
			}
		})
	}
}

// TestJSONReports checks the JSON documents of scan and init against the expectations.
func TestJSONReports(t *testing.T) {
	t.Parallel()
	sched, err := inject.Preset(inject.DefaultPreset)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range testutil.Expectations(t) {
		if m.Outcome == testutil.OutcomeRefuse {
			continue
		}
		for _, cmd := range []string{"scan", "init"} {
			t.Run(cmd+"/"+m.Name(), func(t *testing.T) {
				t.Parallel()
				args := []string{cmd, m.Path, "--json"}
				if cmd == "init" {
					args = append(args, "-o", filepath.Join(t.TempDir(), "out.onnx"))
				}
				code, stdout, stderr := runCLI(t, args...)
				if code != 0 {
					t.Fatalf("%s: got exit status %d, want 0\n%s", strings.Join(args, " "), code, stderr)
				}
				checkJSONReport(t, m, stdout, sched)
			})
		}
	}
}

// layerKeys are the fields every layer object of a report has (issue 2).
var layerKeys = []string{"node", "weight", "channels", "multiplier", "kernel", "index", "depth", "sigma", "action", "reason"}

func checkJSONReport(t *testing.T, m testutil.Model, stdout string, sched inject.Schedule) {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, stdout)
	}
	for _, k := range []string{"version", "model", "layers"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	var rows []map[string]json.RawMessage
	if err := json.Unmarshal(doc["layers"], &rows); err != nil {
		t.Fatalf("layers: %v", err)
	}
	type row struct {
		Node      string   `json:"node"`
		NodeIndex int      `json:"node_index"`
		Kernel    []int64  `json:"kernel"`
		Index     *int     `json:"index"`
		Depth     *float64 `json:"depth"`
		Sigma     *float64 `json:"sigma"`
		Action    string   `json:"action"`
		Reason    string   `json:"reason"`
	}
	var layers []row
	for k, r := range rows {
		for _, key := range layerKeys {
			if _, ok := r[key]; !ok {
				t.Errorf("layers[%d] lacks %q", k, key)
			}
		}
		var l row
		b, _ := json.Marshal(r)
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("layers[%d]: %v", k, err)
		}
		layers = append(layers, l)
	}

	// Each expected depthwise conv has its row.
	want := 0
	for _, n := range m.Nodes {
		if n.Action != testutil.Rewrite && n.Action != testutil.Skip {
			continue
		}
		want++
		k := slices.IndexFunc(layers, func(l row) bool {
			if n.Name != "" {
				return l.Node == n.Name
			}
			return l.NodeIndex == n.Index && strings.HasPrefix(l.Node, fmt.Sprintf("#%d", n.Index))
		})
		if k < 0 {
			t.Errorf("node %s: no layer row", n.ID())
			continue
		}
		l := layers[k]
		wantAction := map[string]string{testutil.Rewrite: inject.ActionRewrite, testutil.Skip: inject.ActionSkip}[n.Action]
		if l.Action != wantAction {
			t.Errorf("node %s: got action %q, want %q", n.ID(), l.Action, wantAction)
		}
		if (l.Action == inject.ActionSkip) != (l.Reason != "") {
			t.Errorf("node %s: action %q with reason %q, want a reason exactly when skipped", n.ID(), l.Action, l.Reason)
		}
		if n.Kernel != nil && !slices.Equal(l.Kernel, n.Kernel) {
			t.Errorf("node %s: got kernel %v, want %v", n.ID(), l.Kernel, n.Kernel)
		}
		if !n.HasDepth {
			if l.Index != nil {
				t.Errorf("node %s: got index %d, want null (not counted in D)", n.ID(), *l.Index)
			}
			continue
		}
		if l.Index == nil || *l.Index != n.I {
			t.Errorf("node %s: got index %v, want %d", n.ID(), ptrString(l.Index), n.I)
		}
		if l.Depth == nil || math.Abs(*l.Depth-n.Depth) > 1e-12 {
			t.Errorf("node %s: got depth %v, want %v", n.ID(), ptrString(l.Depth), n.Depth)
		}
		// σ(d) of the default schedule; the same float64 formula, so only the rounding of d
		// in expect.json separates them.
		if s := sched.Sigma(n.Depth); l.Sigma == nil || math.Abs(*l.Sigma-s) > 1e-12 {
			t.Errorf("node %s: got sigma %v, want %v", n.ID(), ptrString(l.Sigma), s)
		}
	}
	if len(layers) != want {
		t.Errorf("got %d layer rows, want %d", len(layers), want)
	}
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}
