package main

import (
	"context"
	"fmt"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
)

type scanJSON struct {
	Version   int          `json:"version"`
	Command   string       `json:"command"`
	Model     string       `json:"model"`
	Depthwise int          `json:"depthwise"`
	Schedule  scheduleJSON `json:"schedule"`
	Layers    []layerJSON  `json:"layers"`
	Warnings  []string     `json:"warnings"`
}

func runScan(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "scan", "MODEL [flags]", "convcov-onnx scan model.onnx --preset cifar-patch2")
	jsonFlag := fs.Bool("json", false, "print one JSON document instead of text")
	sf := addScheduleFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("scan takes one model file, got %d arguments; see 'convcov-onnx scan -h'", len(pos))
	}
	cf, err := sf.resolve()
	if err != nil {
		return err
	}

	// Read the model and find its depthwise convolutions.
	path := pos[0]
	m, err := onnxio.Load(path)
	if err != nil {
		return err
	}
	res, err := graphscan.Scan(m)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}

	// What init would do with each one.
	var rows []layerJSON
	for k := range res.Layers {
		l := &res.Layers[k]
		action, reason := inject.ActionRewrite, ""
		switch {
		case l.Skip != "":
			action, reason = inject.ActionSkip, l.Skip
		case !inject.Selects(sf.onlyRE, l):
			action, reason = inject.ActionSkip, fmt.Sprintf("not selected by --only %q", sf.onlyRE.String())
		}
		rows = append(rows, layerRow(m, l, action, reason, cf.Sigma(l), 0))
	}
	for k := range res.Outside {
		rows = append(rows, layerRow(m, &res.Outside[k], inject.ActionSkip, res.Outside[k].Skip, 0, 0))
	}

	if *jsonFlag {
		return printJSON(e.stdout, scanJSON{
			Version:   reportVersion,
			Command:   "scan",
			Model:     path,
			Depthwise: len(res.Layers),
			Schedule:  sf.json(),
			Layers:    nonNil(rows),
			Warnings:  nonNil(res.Warnings),
		})
	}
	fmt.Fprintf(e.stdout, "%s: %s\n", path, depthwiseSummary(res))
	if len(res.Layers) > 0 {
		fmt.Fprintf(e.stdout, "schedule %s\n", sf.presetDescription)
	}
	printLayers(e.stdout, rows, false)
	for _, w := range res.Warnings {
		fmt.Fprintf(e.stdout, "warning: %s\n", w)
	}
	return nil
}

// depthwiseSummary says how many depthwise convolutions a scan found.
func depthwiseSummary(res *graphscan.Result) string {
	s := fmt.Sprintf("%d depthwise convolutions in the main graph (D = %d)", len(res.Layers), len(res.Layers))
	switch len(res.Layers) {
	case 0:
		s = "no depthwise convolutions in the main graph (0 depthwise)"
	case 1:
		s = "1 depthwise convolution in the main graph (D = 1, so d = 0)"
	}
	if n := len(res.Outside); n > 0 {
		s += fmt.Sprintf("; %d more inside subgraphs or functions, not rewritten", n)
	}
	return s
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
