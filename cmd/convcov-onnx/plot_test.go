package main

import (
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/convcov/convcov-onnx/covplot"
	"github.com/convcov/convcov-onnx/covtransfer"
	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/internal/testutil"
	"github.com/convcov/convcov-onnx/onnxio"
)

// decodePNG reads a PNG file and checks that it has the size the report gives.
func decodePNG(t *testing.T, path string, doc plotJSON) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s does not decode as PNG: %v", path, err)
	}
	if got := img.Bounds().Size(); got.X != doc.Width || got.Y != doc.Height || got.X < 300 || got.Y < 200 {
		t.Errorf("%s is %v, report says %d×%d", path, got, doc.Width, doc.Height)
	}
	return img
}

// cellColour is the colour at the centre of entry (i, j) of panel pj.
func cellColour(img image.Image, pj plotPanelJSON, i, j int) color.RGBA {
	pl := covplot.PanelLayout{
		Heatmap:  image.Rect(pj.Heatmap[0], pj.Heatmap[1], pj.Heatmap[2], pj.Heatmap[3]),
		CellSize: pj.Cell, Gap: pj.Gap, BlockRows: pj.Block[0], BlockCols: pj.Block[1],
	}
	c := pl.Cell(i, j)
	r, g, b, _ := img.At((c.Min.X+c.Max.X)/2, (c.Min.Y+c.Max.Y)/2).RGBA()
	return color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 255}
}

// checkSigns checks the colours of the largest and the most negative entry of a panel's
// matrix m (in the form drawn), and that the panel has m's shape.
func checkSigns(t *testing.T, img image.Image, pj plotPanelJSON, m mat.Matrix) {
	t.Helper()
	rows, cols := m.Dims()
	if pj.Rows != rows || pj.Cols != cols {
		t.Fatalf("panel %q: %d×%d cells, want %d×%d", pj.Title, pj.Rows, pj.Cols, rows, cols)
	}
	var hi, lo [2]int
	for i := range rows {
		for j := range cols {
			if m.At(i, j) > m.At(hi[0], hi[1]) {
				hi = [2]int{i, j}
			}
			if m.At(i, j) < m.At(lo[0], lo[1]) {
				lo = [2]int{i, j}
			}
		}
	}
	vhi, vlo := m.At(hi[0], hi[1]), m.At(lo[0], lo[1])
	if !(vhi > 0 && vlo < 0) {
		t.Fatalf("panel %q: want positive and negative entries, got %g to %g", pj.Title, vlo, vhi)
	}
	if limit := max(vhi, -vlo); math.Abs(pj.Limit-limit) > 1e-12*limit {
		t.Errorf("panel %q: colour limit %g, want the largest |value| %g", pj.Title, pj.Limit, limit)
	}
	for _, e := range []struct {
		at [2]int
		v  float64
	}{{hi, vhi}, {lo, vlo}} {
		got := cellColour(img, pj, e.at[0], e.at[1])
		if want := covplot.Colour(e.v, pj.Limit); got != want {
			t.Errorf("panel %q cell %v = %g: colour %v, want %v", pj.Title, e.at, e.v, got, want)
		}
		if (e.v > 0) != (got.R > got.B) {
			t.Errorf("panel %q cell %v = %g: colour %v is not %s", pj.Title, e.at, e.v, got,
				map[bool]string{true: "red", false: "blue"}[e.v > 0])
		}
	}
}

// runPlotJSON runs plot with --json and -o DIR/out.png and returns the report.
func runPlotJSON(t *testing.T, dir string, args ...string) (plotJSON, string) {
	t.Helper()
	out := filepath.Join(dir, "out.png")
	args = append(append([]string{"plot"}, args...), "-o", out, "--json")
	code, stdout, stderr := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	var doc plotJSON
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, stdout)
	}
	if doc.Version != reportVersion || doc.Command != "plot" || doc.Output != out {
		t.Errorf("report: version %d, command %q, output %q", doc.Version, doc.Command, doc.Output)
	}
	return doc, out
}

func TestPlotClosedForm(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	// One matrix at σ = π/2, the paper's Fig. 5.
	doc, out := runPlotJSON(t, dir, "--closed-form", "--kernel", "9", "--sigma", "1.5707963", "--size", "200")
	img := decodePNG(t, out, doc)
	if doc.Mode != plotClosedForm || len(doc.Panels) != 1 || doc.Panels[0].Form != formBlock {
		t.Fatalf("got mode %q, %d panels, want 1 in block form", doc.Mode, len(doc.Panels))
	}
	p, err := inject.NewCache().ClosedForm([]int{9, 9}, 1.5707963)
	if err != nil {
		t.Fatal(err)
	}
	b, err := covplot.BlockForm(p.Cov, 9)
	if err != nil {
		t.Fatal(err)
	}
	checkSigns(t, img, doc.Panels[0], b)
	if c := cellColour(img, doc.Panels[0], 40, 40); !(c.R > 100 && c.B < 60) {
		t.Errorf("the centre tap's variance (0.5) is %v, want deep red", c)
	}

	// The schedule: 8 panels, σ growing with depth as the preset says.
	doc, out = runPlotJSON(t, dir, "--closed-form", "--kernel", "5", "--preset", "fig6", "--layers", "8",
		"--size", "60")
	img = decodePNG(t, out, doc)
	if len(doc.Panels) != 8 || doc.Schedule == nil || doc.Schedule.Preset != "fig6" {
		t.Fatalf("got %d panels, schedule %+v; want 8 of fig6", len(doc.Panels), doc.Schedule)
	}
	sched, _ := inject.Preset("fig6")
	for k, pj := range doc.Panels {
		d := inject.Depth(k+1, 8)
		if pj.Index != k+1 || pj.Depth == nil || *pj.Depth != d || pj.Sigma == nil || *pj.Sigma != sched.Sigma(d) {
			t.Errorf("panel %d: index %d, depth %v, sigma %v; want %d, %g, %g", k, pj.Index, ptrString(pj.Depth),
				ptrString(pj.Sigma), k+1, d, sched.Sigma(d))
		}
		if k == 7 {
			p, _ := inject.NewCache().ClosedForm([]int{5, 5}, sched.Sigma(d))
			b, _ := covplot.BlockForm(p.Cov, 5)
			checkSigns(t, img, pj, b)
		}
	}
	// Panels do not overlap: they are laid out in rows of 4.
	if a, b := doc.Panels[0].Heatmap, doc.Panels[4].Heatmap; !(b[1] > a[3]) || b[0] != a[0] {
		t.Errorf("panel 5 at %v is not below panel 1 at %v", b, a)
	}

	// A rectangular kernel is drawn in rearranged form, and its titles say so.
	doc, _ = runPlotJSON(t, dir, "--closed-form", "--kernel", "5x3", "--sigma", "1", "--size", "60")
	if pj := doc.Panels[0]; pj.Form != formRearranged || pj.Rows != 15 || !strings.Contains(pj.Title, "rearranged") {
		t.Errorf("5x3 kernel: form %q, %d rows, title %q; want rearranged 15×15 said in the title",
			pj.Form, pj.Rows, pj.Title)
	}
}

func TestPlotModelAndBank(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	model := filepath.Join(testutil.RepoRoot(t), "testdata", "models", "convmixer_digits_d64_l4_k9.onnx")
	m, err := onnxio.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	res, err := graphscan.Scan(m)
	if err != nil {
		t.Fatal(err)
	}
	bank, _, err := covtransfer.Harvest(model, m, res)
	if err != nil {
		t.Fatal(err)
	}

	// A model: a panel per depthwise layer, the empirical covariance in block form.
	doc, out := runPlotJSON(t, dir, model, "--size", "100")
	img := decodePNG(t, out, doc)
	if doc.Mode != plotModel || len(doc.Panels) != 4 {
		t.Fatalf("got mode %q with %d panels, want model with 4", doc.Mode, len(doc.Panels))
	}
	for k, pj := range doc.Panels {
		if pj.Node != res.Layers[k].Label() || pj.Index != k+1 || pj.Filters != 64 || pj.Form != formBlock ||
			!strings.Contains(pj.Title, pj.Node) || !strings.Contains(pj.Title, "d = ") {
			t.Errorf("panel %d: %+v", k, pj)
		}
	}
	b, err := covplot.BlockForm(bank.Entries[2].Cov(), 9)
	if err != nil {
		t.Fatal(err)
	}
	checkSigns(t, img, doc.Panels[2], b)

	// A bank of that model, and --only, --rearranged, --shared-scale.
	bankPath := filepath.Join(dir, "bank.npz")
	if err := bank.Save(bankPath); err != nil {
		t.Fatal(err)
	}
	doc, out = runPlotJSON(t, dir, bankPath, "--only", "/[56]/", "--rearranged", "--shared-scale", "--size", "100")
	img = decodePNG(t, out, doc)
	if doc.Mode != plotBank || len(doc.Panels) != 2 || !doc.SharedScale {
		t.Fatalf("got mode %q with %d panels, shared %v; want bank with 2, shared",
			doc.Mode, len(doc.Panels), doc.SharedScale)
	}
	if pj := doc.Panels[0]; pj.Form != formRearranged || pj.Index != 3 || pj.Source != model {
		t.Errorf("panel 1: %+v, want layer 3 in rearranged form from %s", pj, model)
	}
	if doc.Panels[0].Limit != doc.Panels[1].Limit {
		t.Errorf("shared scale: limits %g and %g differ", doc.Panels[0].Limit, doc.Panels[1].Limit)
	}
	c := bank.Entries[3].Cov()
	p := doc.Panels[1]
	for _, at := range [][2]int{{40, 40}, {0, 0}, {3, 70}} {
		if got, want := cellColour(img, p, at[0], at[1]), covplot.Colour(c.At(at[0], at[1]), p.Limit); got != want {
			t.Errorf("layer 4, rearranged entry %v: colour %v, want %v", at, got, want)
		}
	}
}

func TestPlotFilters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	model := filepath.Join(testutil.RepoRoot(t), "testdata", "models", "convmixer_digits_d64_l4_k9.onnx")
	rewritten := filepath.Join(dir, "init.onnx")
	if code, _, stderr := runCLI(t, "init", model, "-o", rewritten, "--scale", "0.1"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}

	doc, out := runPlotJSON(t, dir, "--filters", model, rewritten, "--layer", "/5/5.0/fn/fn.0/Conv",
		"--count", "10", "--size", "120")
	img := decodePNG(t, out, doc)
	if doc.Mode != plotFilters || len(doc.Panels) != 2 {
		t.Fatalf("got mode %q with %d panels, want filters with 2", doc.Mode, len(doc.Panels))
	}
	for k, path := range []string{model, rewritten} {
		pj := doc.Panels[k]
		if pj.Source != path || pj.Index != 3 || pj.Filters != 10 || pj.Form != formFilters ||
			pj.Rows != 3*9 || pj.Cols != 4*9 {
			t.Errorf("panel %d: %+v, want 10 filters of layer 3 of %s in 3 rows of 4 tiles of 9×9", k, pj, path)
		}
		m, err := onnxio.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		res, _ := graphscan.Scan(m)
		values, err := m.Values(res.Layers[2].Tensor)
		if err != nil {
			t.Fatal(err)
		}
		// Filter f lies in tile row f/4, column f%4: check taps of filters 4 to 9 and the
		// empty tile after the last filter.
		tiles := mat.NewDense(27, 36, nil)
		for i := range 27 {
			for j := range 36 {
				tiles.Set(i, j, math.NaN())
			}
		}
		for f := range 10 {
			for tap := range 81 {
				tiles.Set((f/4)*9+tap/9, (f%4)*9+tap%9, values[f*81+tap])
			}
		}
		limit := 0.0
		for _, v := range values[:810] {
			limit = max(limit, math.Abs(v))
		}
		if math.Abs(pj.Limit-limit) > 1e-12 {
			t.Errorf("panel %d: limit %g, want %g", k, pj.Limit, limit)
		}
		for _, at := range [][2]int{{9, 18}, {13, 22}, {17, 26}, {20, 3}, {26, 35}} {
			v := tiles.At(at[0], at[1])
			if got, want := cellColour(img, pj, at[0], at[1]), covplot.Colour(v, pj.Limit); got != want {
				t.Errorf("panel %d entry %v = %g: colour %v, want %v", k, at, v, got, want)
			}
		}
	}

	// By position, and a single model.
	doc, _ = runPlotJSON(t, dir, "--filters", model, "--layer", "4", "--size", "60")
	if len(doc.Panels) != 1 || doc.Panels[0].Node != "/6/6.0/fn/fn.0/Conv" || doc.Panels[0].Filters != 64 {
		t.Errorf("--layer 4: %+v", doc.Panels)
	}
}

// TestPlotCommandLine: usage errors, failures, and the text report.
func TestPlotCommandLine(t *testing.T) {
	t.Parallel()
	testdata := filepath.Join(testutil.RepoRoot(t), "testdata")
	files := map[string]string{
		"$M": filepath.Join(testdata, "models", "convmixer_digits_d64_l4_k9.onnx"),
		"$N": filepath.Join(testdata, "cases", "21b_no_depthwise.onnx"),
		"$S": filepath.Join(testdata, "models", "fixtures", "01_dw1d_speech.onnx"),
	}
	tests := []struct {
		name   string
		args   string // split at spaces; $M, $N, $S are the files above, $D/ a fresh folder
		code   int
		stdout []string
		stderr []string
	}{
		{"help", "-h", 0, nil, []string{"example:", "convcov-onnx plot", "--closed-form", "--filters"}},
		{"no -o", "$M", 2, nil, []string{"-o"}},
		{"no input", "-o $D/x.png", 2, nil, []string{"one model or bank"}},
		{"-o the input", "$M -o $M", 2, nil, []string{"inputs"}},
		{"--sigma without --closed-form", "$M --sigma 1 -o $D/x.png", 2, nil, []string{"--sigma", "--closed-form"}},
		{"--layer without --filters", "$M --layer 2 -o $D/x.png", 2, nil, []string{"--layer", "--filters"}},
		{"--closed-form with a file", "--closed-form --kernel 3 $M -o $D/x.png", 2, nil, []string{"no files"}},
		{"--closed-form without --kernel", "--closed-form -o $D/x.png", 2, nil, []string{"--kernel"}},
		{"--sigma with --preset", "--closed-form --kernel 3 --sigma 1 --preset fig6 -o $D/x.png", 2, nil,
			[]string{"--preset"}},
		{"bad --sigma", "--closed-form --kernel 3 --sigma -1 -o $D/x.png", 2, nil, []string{"--sigma"}},
		{"bad --preset", "--closed-form --kernel 3 --preset nope -o $D/x.png", 2, nil, []string{"imagenet-thawed"}},
		{"both pictures", "--closed-form --filters -o $D/x.png", 2, nil, []string{"one"}},
		{"three models", "--filters $M $M $M -o $D/x.png", 2, nil, []string{"--filters"}},
		{"bad --only", "$M --only ( -o $D/x.png", 2, nil, []string{"--only"}},

		{"missing model", "$D/missing.onnx -o $D/x.png", 1, nil, []string{"missing.onnx"}},
		{"no depthwise", "$N -o $D/x.png", 1, nil, []string{"21b_no_depthwise", "nothing was written"}},
		{"--only matches nothing", "$M --only ^zzz$ -o $D/x.png", 1, nil, []string{"--only"}},
		{"unknown --layer", "--filters $M --layer dw9 -o $D/x.png", 1, nil, []string{"dw9", "/3/3.0/fn/fn.0/Conv"}},
		{"--layer out of range", "--filters $M --layer 5 -o $D/x.png", 1, nil, []string{"4 depthwise"}},
		{"-o in a missing folder", "$M -o $D/no/x.png", 1, nil, []string{"cannot write", "x.png"}},

		{"text report", "$M -o $D/x.png --size 40", 0, []string{"wrote", "x.png", "4 panels", "block form"}, nil},
		{"1-D kernels", "$S -o $D/x.png --size 40", 0, []string{"3 panels", "rearranged form"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args := []string{"plot"}
			for _, a := range strings.Fields(tc.args) {
				if f, ok := files[a]; ok {
					a = f
				}
				args = append(args, strings.ReplaceAll(a, "$D/", dir+"/"))
			}
			code, stdout, stderr := runCLI(t, args...)
			if code != tc.code {
				t.Fatalf("exit status %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			if missing := testutil.MissingKeywords(stdout, tc.stdout); len(missing) > 0 {
				t.Errorf("stdout lacks %q:\n%s", missing, stdout)
			}
			if missing := testutil.MissingKeywords(stderr, tc.stderr); len(missing) > 0 {
				t.Errorf("stderr lacks %q:\n%s", missing, stderr)
			}
			if code == 1 && !strings.HasPrefix(stderr, "convcov-onnx: ") {
				t.Errorf("stderr %q: want it to start with \"convcov-onnx: \"", stderr)
			}
			if code != 0 {
				entries, _ := os.ReadDir(dir)
				if len(entries) != 0 {
					t.Errorf("a failed run left %d files in its folder", len(entries))
				}
			}
		})
	}
}
