package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/verify"
)

type initJSON struct {
	Version   int          `json:"version"`
	Command   string       `json:"command"`
	Model     string       `json:"model"`
	Output    string       `json:"output"`
	DataFile  string       `json:"data_file,omitempty"`
	Depthwise int          `json:"depthwise"`
	Rewritten int          `json:"rewritten"`
	Seed      uint64       `json:"seed"`
	Scale     float64      `json:"scale"`
	Schedule  scheduleJSON `json:"schedule"`
	Layers    []layerJSON  `json:"layers"`
	Warnings  []string     `json:"warnings"`
	Verify    *verifyJSON  `json:"verify,omitempty"`
}

func runInit(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "init", "MODEL -o OUT [flags]", "convcov-onnx init model.onnx -o model_init.onnx --preset cifar-patch2 --seed 1")
	outFlag := fs.String("o", "", "write the rewritten model to this `file`")
	inPlaceFlag := fs.Bool("in-place", false, "rewrite MODEL itself (its external data file is patched in place)")
	seedFlag := fs.Uint64("seed", 0, "random seed: the same model, flags and seed give the same output bytes")
	scaleFlag := fs.Float64("scale", 1, "multiply every sampled filter by this factor (the paper uses 1)")
	jsonFlag := fs.Bool("json", false, "print one JSON document instead of text")
	verifyFlag := fs.Bool("verify", false, "then verify the result against MODEL, as the verify command does")
	quietFlag := fs.Bool("quiet", false, "no progress bar or notes on stderr (warnings and errors are still printed)")
	sf := addScheduleFlags(fs)
	rf := addRuntimeFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("init takes one model file, got %d arguments; see 'convcov-onnx init -h'", len(pos))
	}
	in, out, err := outputPath(pos[0], *outFlag, *inPlaceFlag)
	if err != nil {
		return err
	}
	if !(*scaleFlag > 0) || math.IsInf(*scaleFlag, 0) {
		return usagef("--scale %g: want a positive finite number", *scaleFlag)
	}
	if err := rf.check(); err != nil {
		return err
	}
	cf, err := sf.resolve()
	if err != nil {
		return err
	}

	// Read the model and find its depthwise convolutions.
	m, err := onnxio.Load(in)
	if err != nil {
		return err
	}
	res, err := graphscan.Scan(m)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing was written", in, err)
	}

	// Draw the new filters and write the model.
	rep, err := inject.Apply(m, res, cf, inject.Options{Seed: *seedFlag, Scale: *scaleFlag, Only: sf.onlyRE})
	if err != nil {
		return fmt.Errorf("%s: %w; nothing was written", in, err)
	}
	if err := e.saveModel(m, out, wantProgress(e.stderr, *quietFlag, *jsonFlag, isTerminal)); err != nil {
		return err
	}
	dataFile := ""
	if m.HasExternalData() && out != in {
		dataFile = filepath.Join(filepath.Dir(out), onnxio.DataFileName(out))
	}

	// Verify the result when asked.
	var vrep *verify.Report
	if *verifyFlag {
		vrep, err = checkRewrite(in, out, closedFormTarget{cf, *scaleFlag}, rf)
		if err != nil {
			return err
		}
	}

	// Report.
	var rows []layerJSON
	for _, lr := range rep.Layers {
		rows = append(rows, layerRow(m, lr.Layer, lr.Action, lr.Reason, lr.Sigma, lr.Filters))
	}
	if *jsonFlag {
		doc := initJSON{
			Version:   reportVersion,
			Command:   "init",
			Model:     in,
			Output:    out,
			DataFile:  dataFile,
			Depthwise: len(res.Layers),
			Rewritten: rep.Rewritten,
			Seed:      *seedFlag,
			Scale:     *scaleFlag,
			Schedule:  sf.json(),
			Layers:    nonNil(rows),
			Warnings:  nonNil(res.Warnings),
		}
		if vrep != nil {
			v := verifyReportJSON(vrep, sf)
			doc.Verify = &v
		}
		if err := printJSON(e.stdout, doc); err != nil {
			return err
		}
		return verifyError(vrep)
	}
	fmt.Fprintf(e.stdout, "%s: %s\n", in, depthwiseSummary(res))
	if len(res.Layers) > 0 {
		fmt.Fprintf(e.stdout, "schedule %s, seed %d, scale %g\n", sf.presetDescription, *seedFlag, *scaleFlag)
	}
	printLayers(e.stdout, rows, true)
	for _, w := range res.Warnings {
		fmt.Fprintf(e.stdout, "warning: %s\n", w)
	}
	written := out
	if dataFile != "" {
		written += " and " + dataFile
	}
	if rep.Rewritten == 0 {
		fmt.Fprintf(e.stdout, "rewrote 0 depthwise convolutions; wrote %s unchanged\n", written)
	} else {
		fmt.Fprintf(e.stdout, "rewrote %d of %d depthwise convolutions; wrote %s\n", rep.Rewritten, len(res.Layers), written)
		if *scaleFlag == 1 && !*quietFlag {
			fmt.Fprintln(e.stderr, "note: filters are drawn at the paper's literal scale (centre-tap variance 0.5), "+
				"larger than common default initializations; --scale changes it")
		}
	}
	if vrep == nil {
		return nil
	}
	fmt.Fprintln(e.stdout)
	printVerify(e.stdout, vrep, sf)
	return verifyError(vrep)
}

// outputPath checks -o and --in-place against the input and returns both paths.
func outputPath(in, out string, inPlace bool) (string, string, error) {
	switch {
	case inPlace && out != "" && !samePath(in, out):
		return "", "", usagef("--in-place rewrites %s itself; do not also give -o %s", in, out)
	case inPlace:
		return in, in, nil
	case out == "":
		return "", "", usagef("init needs -o OUT (or --in-place to rewrite %s itself)", in)
	case samePath(in, out):
		return "", "", usagef("-o %s is the input model; pass --in-place to rewrite it, or choose another output", out)
	}
	return in, out, nil
}

// samePath reports whether two paths name the same file, or would once written.
func samePath(a, b string) bool {
	if fa, err := os.Stat(a); err == nil {
		if fb, err := os.Stat(b); err == nil {
			return os.SameFile(fa, fb)
		}
	}
	aa, err1 := filepath.Abs(a)
	ab, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == ab
}
