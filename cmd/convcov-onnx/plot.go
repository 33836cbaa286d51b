package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/convcov/convcov-onnx/covplot"
	"github.com/convcov/convcov-onnx/covtransfer"
	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
)

// Modes of the plot command.
const (
	plotModel      = "model"
	plotBank       = "bank"
	plotClosedForm = "closed-form"
	plotFilters    = "filters"
)

// Forms of a plotted matrix.
const (
	formBlock      = "block"
	formRearranged = "rearranged"
	formFilters    = "filters"
)

type plotJSON struct {
	Version     int             `json:"version"`
	Command     string          `json:"command"`
	Mode        string          `json:"mode"`
	Inputs      []string        `json:"inputs"`
	Output      string          `json:"output"`
	Width       int             `json:"width"`
	Height      int             `json:"height"`
	SharedScale bool            `json:"shared_scale"`
	Schedule    *scheduleJSON   `json:"schedule,omitempty"`
	Panels      []plotPanelJSON `json:"panels"`
	Skipped     []plotSkipJSON  `json:"skipped"`
	Warnings    []string        `json:"warnings"`
}

// plotPanelJSON is one panel: what it shows, and where it lies in the image.
type plotPanelJSON struct {
	Title   string   `json:"title"`
	Source  string   `json:"source,omitempty"`
	Node    string   `json:"node,omitempty"`
	Index   int      `json:"index,omitempty"`
	Depth   *float64 `json:"depth,omitempty"`
	Sigma   *float64 `json:"sigma,omitempty"`
	Kernel  []int    `json:"kernel"`
	Filters int      `json:"filters,omitempty"`
	Form    string   `json:"form"`
	Rows    int      `json:"rows"`
	Cols    int      `json:"cols"`
	Limit   float64  `json:"limit"`
	Heatmap [4]int   `json:"heatmap"`
	Cell    int      `json:"cell"`
	Gap     int      `json:"gap"`
	Block   [2]int   `json:"block"`
}

type plotSkipJSON struct {
	Source string `json:"source,omitempty"`
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// plotDoc is a figure being assembled, with its report.
type plotDoc struct {
	fig    covplot.Figure
	doc    plotJSON
	panels []plotPanelJSON // the report of each of fig.Panels
}

func (p *plotDoc) add(panel covplot.Panel, pj plotPanelJSON) {
	p.fig.Panels = append(p.fig.Panels, panel)
	p.panels = append(p.panels, pj)
}

func runPlot(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "plot", "MODEL|BANK.npz -o OUT.png | --closed-form --kernel K [--sigma S] -o OUT.png | "+
		"--filters MODEL [REWRITTEN] -o OUT.png", "convcov-onnx plot model.onnx -o cov.png")
	outFlag := fs.String("o", "", "write the picture to this PNG `file` (required)")
	jsonFlag := fs.Bool("json", false, "print one JSON document instead of text")
	closedFlag := fs.Bool("closed-form", false, "draw the closed-form covariance instead of a model's")
	kernelFlag := fs.String("kernel", "", "with --closed-form: kernel shape, such as 9, 7x5 or 3x3x3")
	sigmaFlag := fs.Float64("sigma", math.NaN(), "with --closed-form: one matrix at this σ instead of a schedule")
	layersFlag := fs.Int("layers", 8, "with --closed-form: number of layers D of the depth schedule")
	presetFlag := fs.String("preset", inject.DefaultPreset,
		"with --closed-form: depth schedule: "+strings.Join(inject.PresetNames(), ", "))
	sigma0Flag := fs.Float64("sigma0", 0, "with --closed-form: override the preset's σ0")
	vFlag := fs.Float64("v", 0, "with --closed-form: override the preset's v")
	aFlag := fs.Float64("a", 0, "with --closed-form: override the preset's a")
	filtersFlag := fs.Bool("filters", false, "draw the filters of one layer of MODEL, and of REWRITTEN when given")
	layerFlag := fs.String("layer", "1", "with --filters: the layer, by node name or by its 1-based position i")
	countFlag := fs.Int("count", 64, "with --filters: how many filters to draw (the first ones)")
	onlyFlag := fs.String("only", "", "draw only layers whose node, weight or tensor name matches this regexp")
	sharedFlag := fs.Bool("shared-scale", false, "one colour scale for all panels, instead of one per panel")
	rearrangedFlag := fs.Bool("rearranged", false,
		"draw covariances in rearranged form (taps row-major) instead of block form")
	columnsFlag := fs.Int("columns", 0, "panels per row (default: chosen from the number of panels)")
	sizeFlag := fs.Int("size", covplot.DefaultPanelSize, "side of each heatmap in pixels")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}

	// Which picture, and checks of the flags that go with it.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	mode := plotModel
	switch {
	case *closedFlag && *filtersFlag:
		return usagef("--closed-form and --filters are different pictures; give one")
	case *closedFlag:
		mode = plotClosedForm
		if len(pos) != 0 {
			return usagef("plot --closed-form takes no files, got %q", pos)
		}
	case *filtersFlag:
		mode = plotFilters
		if len(pos) < 1 || len(pos) > 2 {
			return usagef("plot --filters takes a model and optionally its rewritten copy, got %d arguments", len(pos))
		}
	default:
		if len(pos) != 1 {
			return usagef("plot takes one model or bank file (or --closed-form), got %d arguments; "+
				"see 'convcov-onnx plot -h'", len(pos))
		}
	}
	for _, f := range []string{"kernel", "sigma", "layers", "preset", "sigma0", "v", "a"} {
		if set[f] && mode != plotClosedForm {
			return usagef("--%s applies to --closed-form", f)
		}
	}
	for _, f := range []string{"layer", "count"} {
		if set[f] && mode != plotFilters {
			return usagef("--%s applies to --filters", f)
		}
	}
	if *outFlag == "" {
		return usagef("plot needs -o OUT.png")
	}
	for _, p := range pos {
		if samePath(p, *outFlag) {
			return usagef("-o %s is one of the inputs; write the picture elsewhere", *outFlag)
		}
	}
	if *sizeFlag < 16 || *sizeFlag > 4000 {
		return usagef("--size %d: want 16 to 4000 pixels", *sizeFlag)
	}
	if *columnsFlag < 0 {
		return usagef("--columns %d: want a positive number", *columnsFlag)
	}
	var onlyRE *regexp.Regexp
	if *onlyFlag != "" {
		if mode == plotClosedForm || mode == plotFilters {
			return usagef("--only applies to the covariances of a model or a bank")
		}
		if onlyRE, err = regexp.Compile(*onlyFlag); err != nil {
			return usagef("--only: %v", err)
		}
	}

	// Make the panels.
	p := &plotDoc{doc: plotJSON{Version: reportVersion, Command: "plot", Mode: mode, Inputs: nonNil(pos),
		Output: *outFlag, SharedScale: *sharedFlag, Skipped: []plotSkipJSON{}, Warnings: []string{}}}
	switch mode {
	case plotClosedForm:
		kernel, err := parseKernel(*kernelFlag)
		if err != nil {
			return err
		}
		if set["sigma"] && (set["preset"] || set["layers"] || set["sigma0"] || set["v"] || set["a"]) {
			return usagef("--sigma draws one matrix; it takes no --preset, --layers, --sigma0, --v or --a")
		}
		if set["sigma"] && (!(*sigmaFlag > 0) || math.IsInf(*sigmaFlag, 0)) {
			return usagef("--sigma %g: want a positive finite number", *sigmaFlag)
		}
		if *layersFlag < 1 || *layersFlag > 64 {
			return usagef("--layers %d: want 1 to 64", *layersFlag)
		}
		sched, err := inject.Preset(*presetFlag)
		if err != nil {
			return usagef("--preset %q: want one of %s", *presetFlag, strings.Join(inject.PresetNames(), ", "))
		}
		for name, v := range map[string]*float64{"sigma0": sigma0Flag, "v": vFlag, "a": aFlag} {
			if !set[name] {
				continue
			}
			if math.IsNaN(*v) || math.IsInf(*v, 0) {
				return usagef("--%s must be a finite number", name)
			}
			switch name {
			case "sigma0":
				sched.Sigma0 = *v
			case "v":
				sched.V = *v
			case "a":
				sched.A = *v
			}
		}
		sigma := math.NaN()
		if set["sigma"] {
			sigma = *sigmaFlag
		} else {
			p.doc.Schedule = &scheduleJSON{Preset: *presetFlag, Sigma0: sched.Sigma0, V: sched.V, A: sched.A,
				Mode: "global"}
		}
		if err := p.closedForm(kernel, sigma, sched, *presetFlag, *layersFlag, *rearrangedFlag); err != nil {
			return err
		}
	case plotFilters:
		if *countFlag < 1 || *countFlag > 4096 {
			return usagef("--count %d: want 1 to 4096", *countFlag)
		}
		if err := p.filters(pos, *layerFlag, *countFlag); err != nil {
			return err
		}
	default:
		if err := p.covariances(pos[0], onlyRE, *rearrangedFlag); err != nil {
			return err
		}
	}
	if len(p.fig.Panels) == 0 {
		reason := "no depthwise layer with 2 or more filters to estimate a covariance from"
		if onlyRE != nil {
			reason += fmt.Sprintf(" matches --only %q", onlyRE.String())
		}
		return fmt.Errorf("%s: %s; nothing was written", pos[0], reason)
	}
	p.fig.Columns, p.fig.PanelSize, p.fig.SharedScale = *columnsFlag, *sizeFlag, *sharedFlag
	if !*sharedFlag {
		p.fig.Note += "; each panel scaled to its largest |value|"
	} else {
		p.fig.Note += "; one scale for all panels"
	}

	// Draw and write the picture.
	lay, err := p.fig.Layout()
	if err != nil {
		return err
	}
	err = writeAtomic(*outFlag, func(w io.Writer) error { return p.fig.Encode(w) })
	if err != nil {
		return err
	}

	// Report.
	p.doc.Width, p.doc.Height = lay.Size.X, lay.Size.Y
	for k, pl := range lay.Panels {
		pj := p.panels[k]
		r := pl.Heatmap
		pj.Rows, pj.Cols, pj.Limit, pj.Cell, pj.Gap = pl.Rows, pl.Cols, pl.Limit, pl.CellSize, pl.Gap
		pj.Heatmap = [4]int{r.Min.X, r.Min.Y, r.Max.X, r.Max.Y}
		pj.Block = [2]int{pl.BlockRows, pl.BlockCols}
		p.doc.Panels = append(p.doc.Panels, pj)
	}
	for _, w := range p.doc.Warnings {
		fmt.Fprintf(e.stderr, "convcov-onnx: warning: %s\n", w)
	}
	if *jsonFlag {
		return printJSON(e.stdout, p.doc)
	}
	forms := map[string]int{}
	for _, pj := range p.doc.Panels {
		forms[pj.Form]++
	}
	var fl []string
	for _, f := range []string{formBlock, formRearranged, formFilters} {
		if forms[f] > 0 {
			fl = append(fl, fmt.Sprintf("%d %s", forms[f], map[string]string{
				formBlock: "in block form", formRearranged: "in rearranged form", formFilters: "of filters"}[f]))
		}
	}
	panels := "1 panel"
	if len(lay.Panels) != 1 {
		panels = fmt.Sprintf("%d panels", len(lay.Panels))
	}
	fmt.Fprintf(e.stdout, "wrote %s: %d×%d pixels, %s (%s)\n", *outFlag, lay.Size.X, lay.Size.Y, panels,
		strings.Join(fl, ", "))
	for _, s := range p.doc.Skipped {
		fmt.Fprintf(e.stdout, "not drawn %s: %s\n", s.Node, s.Reason)
	}
	return nil
}

// covMatrix is the matrix a panel shows of the covariance r of filters with this kernel,
// and the size of its blocks: the block form for square 2-D kernels, else (or when asked)
// the rearranged form, whose blocks are the kernel's rows (its last dim).
func covMatrix(r mat.Matrix, kernel []int, rearranged bool) (mat.Matrix, int, string, error) {
	if rearranged || len(kernel) != 2 || kernel[0] != kernel[1] || kernel[0] == 1 {
		block := 0
		if len(kernel) > 1 && kernel[len(kernel)-1] > 1 {
			block = kernel[len(kernel)-1]
		}
		return r, block, formRearranged, nil
	}
	b, err := covplot.BlockForm(r, kernel[0])
	return b, kernel[0], formBlock, err
}

// formNote says what the panels of a figure show, for its second line.
func formNote(forms map[string]bool) string {
	var s []string
	if forms[formBlock] {
		s = append(s, "block form: block (i, j) is the k×k map of Cov(F[i][j], F[l][m]) over l, m")
	}
	if forms[formRearranged] {
		s = append(s, "rearranged form: Cov(f[p], f[q]), taps p, q row-major")
	}
	return strings.Join(s, "; ") + "; blue < 0 < red"
}

// covariances makes a panel per layer of a model, or per entry of a bank.
func (p *plotDoc) covariances(path string, onlyRE *regexp.Regexp, rearranged bool) error {
	isBank := isZip(path)
	var bank *covtransfer.Bank
	var err error
	if isBank {
		p.doc.Mode = plotBank
		if bank, err = covtransfer.Load(path); err != nil {
			return err
		}
	} else {
		m, err := onnxio.Load(path)
		if err != nil {
			return err
		}
		res, err := graphscan.Scan(m)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		var rep *covtransfer.HarvestReport
		bank, rep, err = covtransfer.Harvest(path, m, res)
		if err != nil {
			return err
		}
		p.doc.Warnings = append(p.doc.Warnings, rep.Warnings...)
		for _, hl := range rep.Layers {
			if !hl.Harvested {
				p.doc.Skipped = append(p.doc.Skipped, plotSkipJSON{Node: hl.Layer.Label(), Reason: hl.Reason})
			}
		}
	}

	forms := map[string]bool{}
	for _, en := range bank.Entries {
		if onlyRE != nil && !onlyRE.MatchString(en.Node) && !onlyRE.MatchString(en.Weight) &&
			!onlyRE.MatchString(en.Tensor) {
			continue
		}
		if en.Cov() == nil {
			p.doc.Skipped = append(p.doc.Skipped, plotSkipJSON{Source: p.bankSource(en), Node: en.Node,
				Reason: fmt.Sprintf("%d filters, too few for a covariance", en.Count)})
			continue
		}
		data, block, form, err := covMatrix(en.Cov(), en.Kernel, rearranged)
		if err != nil {
			return fmt.Errorf("%s: node %s: %w", path, en.Node, err)
		}
		forms[form] = true
		head := en.Node
		if len(bank.Models) > 1 {
			head = filepath.Base(en.Source) + ": " + en.Node
		}
		detail := fmt.Sprintf("layer %d of %d, d = %.3f, %d filters, %s", en.Index, en.Layers, en.Depth, en.Count,
			en.KernelString())
		if form == formRearranged {
			detail += ", rearranged"
		}
		d := en.Depth
		p.add(covplot.Panel{Title: head + "\n" + detail, Data: data, BlockRows: block, BlockCols: block},
			plotPanelJSON{Title: head + "\n" + detail, Source: p.bankSource(en), Node: en.Node, Index: en.Index,
				Depth: &d, Kernel: en.Kernel, Filters: en.Count, Form: form})
	}
	what := "depthwise filters"
	if isBank {
		what = fmt.Sprintf("the bank's %d layers of %d models", len(bank.Entries), len(bank.Models))
		if len(bank.Models) == 1 {
			what = fmt.Sprintf("the bank's %d layers of 1 model", len(bank.Entries))
		}
	}
	p.fig.Title = fmt.Sprintf("%s: empirical covariance of %s, layer by layer (normaliser n − 1)", path, what)
	p.fig.Note = formNote(forms)
	return nil
}

// bankSource is an entry's model file when the picture is of a bank, for the report.
func (p *plotDoc) bankSource(en *covtransfer.Entry) string {
	if p.doc.Mode == plotBank {
		return en.Source
	}
	return ""
}

// closedForm makes the panels of the closed form: one at σ, or one per layer of a schedule
// when σ is NaN.
func (p *plotDoc) closedForm(kernel []int, sigma float64, sched inject.Schedule, preset string, D int,
	rearranged bool) error {
	cache := inject.NewCache()
	type layer struct {
		i     int
		d, s  float64
		title string
	}
	var layers []layer
	ks := kernelString(int64s(kernel))
	if math.IsNaN(sigma) {
		for i := 1; i <= D; i++ {
			d := inject.Depth(i, D)
			s := sched.Sigma(d)
			if !(s > 0) || math.IsInf(s, 0) {
				return fmt.Errorf("layer %d of %d: σ(%.3f) = %g is not positive; change the schedule", i, D, d, s)
			}
			layers = append(layers, layer{i, d, s, fmt.Sprintf("layer %d of %d\nd = %.3f, σ = %.4g", i, D, d, s)})
		}
		p.fig.Title = fmt.Sprintf("closed-form covariance Σ, kernel %s, along the depth schedule %s "+
			"(σ0 %g, v %g, a %g), D = %d", ks, preset, sched.Sigma0, sched.V, sched.A, D)
	} else {
		title := fmt.Sprintf("σ = %.4g", sigma)
		if math.Abs(sigma-math.Pi/2) < 5e-4 {
			title += " (π/2)"
		}
		layers = append(layers, layer{0, math.NaN(), sigma, title + ", kernel " + ks})
		p.fig.Title = fmt.Sprintf("closed-form covariance Σ, kernel %s, %s", ks, title)
	}
	forms := map[string]bool{}
	for _, l := range layers {
		proj, err := cache.ClosedForm(kernel, l.s)
		if err != nil {
			return err
		}
		data, block, form, err := covMatrix(proj.Cov, kernel, rearranged)
		if err != nil {
			return err
		}
		forms[form] = true
		title := l.title
		if form == formRearranged {
			title += ", rearranged"
		}
		s := l.s
		pj := plotPanelJSON{Title: title, Index: l.i, Sigma: &s, Kernel: kernel, Form: form}
		if l.i > 0 {
			d := l.d
			pj.Depth = &d
		}
		p.add(covplot.Panel{Title: title, Data: data, BlockRows: block, BlockCols: block}, pj)
	}
	p.fig.Note = "projected to the nearest PSD matrix; " + formNote(forms)
	return nil
}

// filters makes a panel of the first count filters of a layer of each model.
func (p *plotDoc) filters(paths []string, sel string, count int) error {
	roles := []string{"original", "rewritten"}
	if len(paths) == 1 {
		roles = []string{"filters"}
	}
	var first *graphscan.Layer
	D := 0
	for k, path := range paths {
		m, err := onnxio.Load(path)
		if err != nil {
			return err
		}
		res, err := graphscan.Scan(m)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		l, err := findLayer(res, sel, first)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if first != nil && !slices.Equal(l.Kernel, first.Kernel) {
			return fmt.Errorf("%s: node %s has kernel %s, not %s as in %s", path, l.Label(),
				kernelString(l.Kernel), kernelString(first.Kernel), paths[0])
		}
		if l.Tensor == nil {
			return fmt.Errorf("%s: node %s: its filters cannot be read: %s", path, l.Label(), l.Skip)
		}
		values, err := m.Values(l.Tensor)
		if err != nil {
			return fmt.Errorf("%s: node %s: weight %q: %w", path, l.Label(), l.TensorName, err)
		}
		if len(l.Kernel) == 0 {
			return fmt.Errorf("%s: node %s: its kernel shape is not known", path, l.Label())
		}
		kernel := make([]int, len(l.Kernel))
		taps := 1
		for i, v := range l.Kernel {
			kernel[i] = int(v)
			taps *= int(v)
		}
		total := len(values) / max(taps, 1)
		if taps < 1 || total < 1 || total*taps != len(values) {
			return fmt.Errorf("%s: node %s: weight %q has %d values, not whole filters of %d taps", path, l.Label(),
				l.TensorName, len(values), taps)
		}
		n := min(count, total)

		// A tile per filter: h×w for 2-D kernels, a row of k taps for 1-D ones (stacked, one
		// filter per row), the middle slice along the first axis for 3-D ones.
		h, w, tiles, cols := 1, kernel[len(kernel)-1], values[:n*taps], 0
		shape := ""
		switch len(kernel) {
		case 1:
			cols = 1
			shape = ", one filter per row"
		case 2:
			h = kernel[0]
		case 3:
			h = kernel[1]
			plane := kernel[1] * kernel[2]
			mid := kernel[0] / 2
			tiles = make([]float64, 0, n*plane)
			for f := range n {
				tiles = append(tiles, values[f*taps+mid*plane:f*taps+(mid+1)*plane]...)
			}
			if kernel[0] > 1 {
				shape = fmt.Sprintf(", middle slice %d of %d", mid+1, kernel[0])
			}
		}
		data, err := covplot.Mosaic(tiles, n, h, w, cols)
		if err != nil {
			return err
		}
		title := fmt.Sprintf("%s: %s\n%d of %d filters%s", roles[k], path, n, total, shape)
		d := l.Depth
		p.add(covplot.Panel{Title: title, Data: data, BlockRows: h, BlockCols: w, BlockGap: 4},
			plotPanelJSON{Title: title, Source: path, Node: l.Label(), Index: l.Index, Depth: &d, Kernel: kernel,
				Filters: n, Form: formFilters})
		if first == nil {
			first, D = l, len(res.Layers)
		}
	}
	p.fig.Title = fmt.Sprintf("filters of %s (layer %d of %d, d = %.3f, kernel %s)", first.Label(), first.Index,
		D, first.Depth, kernelString(first.Kernel))
	if len(paths) == 2 {
		p.fig.Title += ": the original beside the rewritten"
	}
	p.fig.Note = "each tile is one filter, taps row-major as the kernel lies; blue < 0 < red"
	return nil
}

// findLayer finds the depthwise layer sel names: a node name or label, or a 1-based
// position i. With like set, a position-less name falls back to like's position, so that a
// rewritten copy's layer is found by its original's.
func findLayer(res *graphscan.Result, sel string, like *graphscan.Layer) (*graphscan.Layer, error) {
	if like != nil {
		sel = like.Label()
	}
	for k := range res.Layers {
		if l := &res.Layers[k]; l.Label() == sel || (l.Name != "" && l.Name == sel) {
			return l, nil
		}
	}
	if i, err := strconv.Atoi(sel); err == nil && like == nil {
		if i < 1 || i > len(res.Layers) {
			return nil, fmt.Errorf("--layer %d: the model has %d depthwise convolutions (i = 1 to %d)",
				i, len(res.Layers), len(res.Layers))
		}
		return &res.Layers[i-1], nil
	}
	if like != nil && like.Index >= 1 && like.Index <= len(res.Layers) {
		return &res.Layers[like.Index-1], nil
	}
	var names []string
	for k := range min(len(res.Layers), 8) {
		names = append(names, res.Layers[k].Label())
	}
	if len(res.Layers) > 8 {
		names = append(names, "...")
	}
	return nil, fmt.Errorf("--layer %q: no depthwise convolution of that name; the model has %s",
		sel, strings.Join(names, ", "))
}

// isZip reports whether the file starts as a zip archive does, as a bank (.npz) does. A
// file that cannot be read is not one; onnxio.Load then says what is wrong with it.
func isZip(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	return bytes.Equal(head[:n], []byte("PK\x03\x04"))
}

// writeAtomic writes a file under a temporary name in its folder and renames it into place,
// so that a failed write leaves nothing behind.
func writeAtomic(path string, write func(io.Writer) error) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a folder; give the output a file name", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w; check that its folder exists and can be written", path, err)
	}
	bw := bufio.NewWriter(f)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
