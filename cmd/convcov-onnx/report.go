package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
)

// scheduleFlags are the flags that choose σ(d).
type scheduleFlags struct {
	preset, mode      *string
	sigma0, v, a      *float64
	only              *string
	sigma0Set, vSet   bool
	aSet              bool
	fs                *flag.FlagSet
	schedule          inject.Schedule
	onlyRE            *regexp.Regexp
	presetDescription string
}

func addScheduleFlags(fs *flag.FlagSet) *scheduleFlags {
	return &scheduleFlags{
		fs:     fs,
		preset: fs.String("preset", inject.DefaultPreset, "depth schedule: "+strings.Join(inject.PresetNames(), ", ")),
		sigma0: fs.Float64("sigma0", 0, "override the preset's σ0 (σ at d = 0)"),
		v:      fs.Float64("v", 0, "override the preset's v (slope of σ in d)"),
		a:      fs.Float64("a", 0, "override the preset's a (curvature: σ += ½·a·d²)"),
		mode:   fs.String("schedule", "global", "global: d over the whole network; stage: d restarts after each downsampling (experimental)"),
		only:   fs.String("only", "", "rewrite only layers whose node, weight or tensor name matches this regular expression"),
	}
}

// resolve checks the flags after parsing and builds the closed-form source.
func (s *scheduleFlags) resolve() (*inject.ClosedFormSource, error) {
	sched, err := inject.Preset(*s.preset)
	if err != nil {
		return nil, usagef("--preset %q: want one of %s", *s.preset, strings.Join(inject.PresetNames(), ", "))
	}
	s.fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "sigma0":
			sched.Sigma0 = *s.sigma0
		case "v":
			sched.V = *s.v
		case "a":
			sched.A = *s.a
		}
	})
	for _, x := range []float64{sched.Sigma0, sched.V, sched.A} {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, usagef("--sigma0, --v and --a must be finite numbers")
		}
	}
	if !(sched.Sigma0 > 0) {
		return nil, usagef("--sigma0 %g: σ must be positive", sched.Sigma0)
	}
	if *s.mode != "global" && *s.mode != "stage" {
		return nil, usagef("--schedule %q: want global or stage", *s.mode)
	}
	if *s.only != "" {
		re, err := regexp.Compile(*s.only)
		if err != nil {
			return nil, usagef("--only: %v", err)
		}
		s.onlyRE = re
	}
	s.schedule = sched
	s.presetDescription = fmt.Sprintf("%s (σ0 %g, v %g, a %g)", *s.preset, sched.Sigma0, sched.V, sched.A)
	if *s.mode == "stage" {
		s.presetDescription += ", stage-wise (experimental)"
	}
	return &inject.ClosedFormSource{Schedule: sched, StageWise: *s.mode == "stage"}, nil
}

func (s *scheduleFlags) json() scheduleJSON {
	return scheduleJSON{Preset: *s.preset, Sigma0: s.schedule.Sigma0, V: s.schedule.V, A: s.schedule.A, Mode: *s.mode}
}

type scheduleJSON struct {
	Preset string  `json:"preset"`
	Sigma0 float64 `json:"sigma0"`
	V      float64 `json:"v"`
	A      float64 `json:"a"`
	Mode   string  `json:"mode"`
}

// layerJSON is one depthwise convolution in a JSON report.
type layerJSON struct {
	Node       string   `json:"node"`
	NodeIndex  int      `json:"node_index"`
	Scope      string   `json:"scope,omitempty"`
	Weight     string   `json:"weight"`
	Tensor     string   `json:"tensor,omitempty"`
	Source     string   `json:"source,omitempty"`
	Via        []string `json:"via,omitempty"`
	DType      string   `json:"dtype,omitempty"`
	Storage    string   `json:"storage,omitempty"`
	Channels   int64    `json:"channels"`
	Multiplier int64    `json:"multiplier"`
	Kernel     []int64  `json:"kernel"`
	Index      *int     `json:"index"`
	Depth      *float64 `json:"depth"`
	Stage      *int     `json:"stage"`
	Sigma      *float64 `json:"sigma"`
	Action     string   `json:"action"`
	Reason     string   `json:"reason"`
	Filters    int      `json:"filters,omitempty"`
	Warnings   []string `json:"warnings,omitempty"`
}

// layerRow turns a layer and what happens to it into its report form.
func layerRow(m *onnxio.Model, l *graphscan.Layer, action, reason string, sigma float64, filters int) layerJSON {
	row := layerJSON{
		Node:       l.Label(),
		NodeIndex:  l.NodeIndex,
		Scope:      l.Scope,
		Weight:     l.Weight,
		Tensor:     l.TensorName,
		Source:     l.SourceKind,
		Via:        l.Via,
		Channels:   l.Channels,
		Multiplier: l.Multiplier,
		Kernel:     l.Kernel,
		Action:     action,
		Reason:     reason,
		Filters:    filters,
		Warnings:   l.Warnings,
	}
	if l.Tensor != nil {
		row.DType = onnxio.TypeName(l.Tensor.GetDataType())
		row.Storage = m.Storage(l.Tensor)
	}
	if l.Counted() {
		i, d, st := l.Index, l.Depth, l.Stage
		row.Index, row.Depth, row.Stage = &i, &d, &st
		if !math.IsNaN(sigma) {
			row.Sigma = &sigma
		}
	}
	return row
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printLayers writes the layer table, then the reasons of skipped layers.
func printLayers(w io.Writer, rows []layerJSON, showFilters bool) {
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "i\td\tσ(d)\tC\tm\tkernel\taction\tnode\tweight"
	if showFilters {
		header = "i\td\tσ(d)\tC\tm\tkernel\tdtype\taction\tnode\tweight"
	}
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		i, d, sigma := "-", "-", "-"
		if r.Index != nil {
			i, d = strconv.Itoa(*r.Index), strconv.FormatFloat(*r.Depth, 'f', 3, 64)
		}
		if r.Sigma != nil {
			sigma = strconv.FormatFloat(*r.Sigma, 'f', 4, 64)
		}
		weight := weightString(r)
		cols := []string{i, d, sigma, strconv.FormatInt(r.Channels, 10), strconv.FormatInt(r.Multiplier, 10), kernelString(r.Kernel)}
		if showFilters {
			cols = append(cols, cmpOr(r.DType, "-"))
		}
		cols = append(cols, r.Action, shown(r.Node), weight)
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()
	for _, r := range rows {
		if r.Action != inject.ActionRewrite && r.Reason != "" {
			fmt.Fprintf(w, "skipped %s: %s\n", shown(r.Node), r.Reason)
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "warning: %s: %s\n", shown(r.Node), warn)
		}
	}
}

// shown makes a name from a model safe to print as text. A name with control characters or
// invalid UTF-8, with which a crafted model could forge report lines or drive the terminal,
// is printed quoted, escapes and all.
func shown(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func kernelString(k []int64) string {
	if len(k) == 0 {
		return "?"
	}
	parts := make([]string, len(k))
	for i, v := range k {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(parts, "x")
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
