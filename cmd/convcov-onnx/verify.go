package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/verify"
)

// runtimeFlags are the flags that say how to run models in ONNX Runtime.
type runtimeFlags struct {
	lib, ep *string
	seed    *uint64
	dims    dimsFlag
	noRun   *bool
}

func addRuntimeFlags(fs *flag.FlagSet) *runtimeFlags {
	rf := &runtimeFlags{dims: dimsFlag{}}
	rf.lib = fs.String("ort-lib", "", "path of libonnxruntime.so.1 (default: $ONNXRUNTIME_LIB, then .ort/ from make ort)")
	rf.ep = fs.String("ep", verify.EPCPU, "execution provider: cpu, cuda or tensorrt")
	rf.seed = fs.Uint64("input-seed", 0, "seed of the random inputs both models run on")
	fs.Var(rf.dims, "dim", "value of a symbolic input dimension, as `name=value` (repeatable; default 1)")
	rf.noRun = fs.Bool("no-run", false, "check structure and fidelity only, without ONNX Runtime")
	return rf
}

// check refuses an execution provider verify does not know, as wrong usage.
func (rf *runtimeFlags) check() error {
	switch *rf.ep {
	case verify.EPCPU, verify.EPCUDA, verify.EPTensorRT:
		return nil
	}
	return usagef("--ep %q: want %s, %s or %s", *rf.ep, verify.EPCPU, verify.EPCUDA, verify.EPTensorRT)
}

func (rf *runtimeFlags) options() verify.Options {
	return verify.Options{Lib: *rf.lib, EP: *rf.ep, Dims: rf.dims, Seed: *rf.seed}
}

// dimsFlag collects --dim name=value.
type dimsFlag map[string]int64

func (d dimsFlag) String() string {
	var parts []string
	for k, v := range d {
		parts = append(parts, k+"="+strconv.FormatInt(v, 10))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (d dimsFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	v, err := strconv.ParseInt(value, 10, 64)
	if !ok || name == "" || err != nil || v < 1 {
		return fmt.Errorf("want name=value with a value of at least 1, got %q", s)
	}
	d[name] = v
	return nil
}

// sourceTarget is the distribution a source gave each layer, times the scale, for verify's
// fidelity checks: the closed form that init drew from, or a bank that transfer drew from.
type sourceTarget struct {
	src   inject.Source
	scale float64
}

// closedFormTarget is the sourceTarget of init's closed form.
type closedFormTarget = sourceTarget

func (c sourceTarget) Target(l *graphscan.Layer) (*verify.Target, error) {
	d, err := c.src.Distribution(l)
	if err != nil {
		return nil, err
	}
	return verify.TargetOf(d.Projection.Cov, d.Projection.Factor, d.Mean, c.scale), nil
}

func runVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "verify", "ORIGINAL REWRITTEN [flags]", "convcov-onnx verify model.onnx model_init.onnx --dim batch=4")
	jsonFlag := fs.Bool("json", false, "print one JSON document instead of text")
	scaleFlag := fs.Float64("scale", 1, "the --scale that init or transfer used")
	sf := addScheduleFlags(fs)
	bf := addBankFlags(fs, "the bank transfer drew from: check fidelity against its distribution instead of the closed form")
	rf := addRuntimeFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("verify takes the original and the rewritten model, got %d arguments; see 'convcov-onnx verify -h'", len(pos))
	}
	if !(*scaleFlag > 0) || math.IsInf(*scaleFlag, 0) {
		return usagef("--scale %g: want a positive finite number", *scaleFlag)
	}
	if err := bf.check(fs); err != nil {
		return err
	}
	if err := rf.check(); err != nil {
		return err
	}
	cf, err := sf.resolve()
	if err != nil {
		return err
	}

	// The target distribution: the closed form, or the bank's.
	var target verify.Expectation = closedFormTarget{cf, *scaleFlag}
	heading := closedFormHeading(sf)
	if *bf.bank != "" {
		src, err := bf.source(pos[0])
		if err != nil {
			return err
		}
		target, heading = sourceTarget{src, *scaleFlag}, bf.heading()
	}
	rep, err := checkRewrite(pos[0], pos[1], target, rf)
	if err != nil {
		return err
	}
	if *jsonFlag {
		doc := verifyReportJSON(rep, sf)
		if *bf.bank != "" {
			doc.Schedule, doc.Bank = nil, bf.json()
		}
		if err := printJSON(e.stdout, doc); err != nil {
			return err
		}
	} else {
		printVerifyAgainst(e.stdout, rep, heading)
	}
	return verifyError(rep)
}

// closedFormHeading names the closed-form target in verify's report.
func closedFormHeading(sf *scheduleFlags) string {
	return "the closed form, schedule " + sf.presetDescription
}

// checkRewrite runs verify's checks of a rewrite.
func checkRewrite(original, rewritten string, target verify.Expectation, rf *runtimeFlags) (*verify.Report, error) {
	return verify.Check(original, rewritten, verify.CheckOptions{
		Run:         !*rf.noRun,
		Runtime:     rf.options(),
		Expectation: target,
	})
}

// verifyError is the error of a failed verification, nil when it passed or did not run.
func verifyError(rep *verify.Report) error {
	if rep == nil || rep.OK() {
		return nil
	}
	return fmt.Errorf("verify failed: %s (the rewritten model is kept)", rep.Problems[0])
}

func printVerify(w io.Writer, rep *verify.Report, sf *scheduleFlags) {
	printVerifyAgainst(w, rep, closedFormHeading(sf))
}

// printVerifyAgainst prints verify's report; target names the distribution of the fidelity
// checks.
func printVerifyAgainst(w io.Writer, rep *verify.Report, target string) {
	s := rep.Structure
	fmt.Fprintf(w, "verify %s against %s\n", rep.Rewritten, rep.Original)
	fmt.Fprintf(w, "structure: %d tensors compared; %d depthwise weights rewritten", s.Tensors, len(s.Changed))
	if len(s.Unchanged) > 0 {
		fmt.Fprintf(w, ", %d rewritable ones unchanged", len(s.Unchanged))
	}
	if len(s.Differences) == 0 {
		fmt.Fprintf(w, "; everything else is identical\n")
	} else {
		fmt.Fprintf(w, "; %d other differences:\n", len(s.Differences)+s.More)
		for _, d := range s.Differences {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}

	if len(rep.Layers) > 0 {
		fmt.Fprintf(w, "fidelity against %s:\n", target)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "i\tnode\tfilters\ttaps\tcov err\texpected\tvar ratio\tmax z\tp\tresult")
		for _, lc := range rep.Layers {
			f := lc.Fidelity
			switch {
			case !lc.Rewritten:
				fmt.Fprintf(tw, "%d\t%s\t\t\t\t\t\t\t\tnot rewritten\n", lc.Layer.Index, shown(lc.Layer.Label()))
			case f == nil:
				fmt.Fprintf(tw, "%d\t%s\t\t\t\t\t\t\t\trewritten\n", lc.Layer.Index, shown(lc.Layer.Label()))
			default:
				result := "ok"
				if !f.OK {
					result = "MISMATCH"
				} else if f.Filters < 2 {
					result = "too few filters to judge"
				}
				fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%.3f\t%.3f\t%.3f\t%s\t%.2g\t%s\n", lc.Layer.Index, shown(lc.Layer.Label()),
					f.Filters, f.Taps, f.RelFrobenius, f.Expected, f.TraceRatio, fmtZ(f.MaxZ), f.PValue, result)
			}
		}
		tw.Flush()
	}

	if rep.Runtime != "" {
		fmt.Fprintf(w, "%s: both models ran on the same seeded inputs\n", rep.Runtime)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "output\tshape\tmax |diff|\tmax rel diff\tfinite")
		for _, d := range rep.Outputs {
			fmt.Fprintf(tw, "%s\t%v\t%.4g\t%.4g\t%v\n", shown(d.Name), d.ShapeB, d.MaxAbs, d.MaxRel, d.Finite)
		}
		tw.Flush()
	}
	if rep.OK() {
		fmt.Fprintln(w, "PASS")
		return
	}
	fmt.Fprintf(w, "FAIL: %d problems\n", len(rep.Problems))
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
}

func fmtZ(z float64) string {
	if math.IsNaN(z) {
		return "-"
	}
	return strconv.FormatFloat(z, 'f', 2, 64)
}

type verifyJSON struct {
	Version   int              `json:"version"`
	Command   string           `json:"command"`
	Original  string           `json:"original"`
	Rewritten string           `json:"rewritten"`
	OK        bool             `json:"ok"`
	Schedule  *scheduleJSON    `json:"schedule,omitempty"`
	Bank      *bankTargetJSON  `json:"bank,omitempty"`
	Structure structureJSON    `json:"structure"`
	Layers    []layerCheckJSON `json:"layers"`
	Runtime   string           `json:"runtime,omitempty"`
	Outputs   []outputJSON     `json:"outputs"`
	Problems  []string         `json:"problems"`
}

type structureJSON struct {
	Tensors     int              `json:"tensors"`
	Rewritten   []string         `json:"rewritten"`
	Unchanged   []string         `json:"unchanged"`
	Differences []map[string]any `json:"differences"`
}

type layerCheckJSON struct {
	Node      string        `json:"node"`
	Weight    string        `json:"weight"`
	Index     int           `json:"index"`
	Depth     float64       `json:"depth"`
	Rewritten bool          `json:"rewritten"`
	Fidelity  *fidelityJSON `json:"fidelity,omitempty"`
}

type fidelityJSON struct {
	Filters      int      `json:"filters"`
	Taps         int      `json:"taps"`
	RelFrobenius float64  `json:"rel_frobenius"`
	Expected     float64  `json:"expected_rel_frobenius"`
	TraceRatio   float64  `json:"trace_ratio"`
	MaxZ         *float64 `json:"max_z"`
	Directions   int      `json:"directions"`
	PValue       float64  `json:"p_value"`
	Outside      float64  `json:"outside_energy"`
	OutsideLimit float64  `json:"outside_expected"`
	OK           bool     `json:"ok"`
	Problem      string   `json:"problem,omitempty"`
}

type outputJSON struct {
	Name           string  `json:"name"`
	ShapeOriginal  []int64 `json:"shape_original"`
	ShapeRewritten []int64 `json:"shape_rewritten"`
	MaxAbs         float64 `json:"max_abs_diff"`
	MaxRel         float64 `json:"max_rel_diff"`
	Finite         bool    `json:"finite"`
}

func verifyReportJSON(rep *verify.Report, sf *scheduleFlags) verifyJSON {
	var sched *scheduleJSON // nil for a bank's distribution
	if sf != nil {
		s := sf.json()
		sched = &s
	}
	v := verifyJSON{
		Version:   reportVersion,
		Command:   "verify",
		Original:  rep.Original,
		Rewritten: rep.Rewritten,
		OK:        rep.OK(),
		Schedule:  sched,
		Runtime:   rep.Runtime,
		Layers:    []layerCheckJSON{},
		Outputs:   []outputJSON{},
		Problems:  nonNil(rep.Problems),
		Structure: structureJSON{Tensors: rep.Structure.Tensors, Rewritten: []string{}, Unchanged: []string{}, Differences: []map[string]any{}},
	}
	for _, p := range rep.Structure.Changed {
		v.Structure.Rewritten = append(v.Structure.Rewritten, p.Path)
	}
	for _, p := range rep.Structure.Unchanged {
		v.Structure.Unchanged = append(v.Structure.Unchanged, p.Path)
	}
	for _, d := range rep.Structure.Differences {
		v.Structure.Differences = append(v.Structure.Differences, map[string]any{"path": d.Path, "what": d.What})
	}
	for _, lc := range rep.Layers {
		lj := layerCheckJSON{Node: lc.Layer.Label(), Weight: lc.Layer.TensorName, Index: lc.Layer.Index, Depth: lc.Layer.Depth, Rewritten: lc.Rewritten}
		if f := lc.Fidelity; f != nil {
			fj := &fidelityJSON{Filters: f.Filters, Taps: f.Taps, RelFrobenius: f.RelFrobenius, Expected: f.Expected,
				TraceRatio: f.TraceRatio, Directions: f.Directions, PValue: f.PValue, Outside: f.Outside,
				OutsideLimit: f.OutsideExpected, OK: f.OK, Problem: f.Problem}
			if !math.IsNaN(f.MaxZ) {
				z := f.MaxZ
				fj.MaxZ = &z
			}
			lj.Fidelity = fj
		}
		v.Layers = append(v.Layers, lj)
	}
	for _, d := range rep.Outputs {
		v.Outputs = append(v.Outputs, outputJSON{Name: d.Name, ShapeOriginal: d.ShapeA, ShapeRewritten: d.ShapeB,
			MaxAbs: jsonFloat(d.MaxAbs), MaxRel: jsonFloat(d.MaxRel), Finite: d.Finite})
	}
	return v
}

// jsonFloat keeps a report encodable: JSON has no Inf or NaN, so they become -1.
func jsonFloat(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return -1
	}
	return x
}
