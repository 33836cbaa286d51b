package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/convcov/convcov-onnx/covtransfer"
	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/onnxio"
)

type harvestJSON struct {
	Version  int                `json:"version"`
	Command  string             `json:"command"`
	Output   string             `json:"output"`
	Merged   []string           `json:"merged,omitempty"`
	Models   []harvestModelJSON `json:"models"`
	Layers   int                `json:"layers"`
	Filters  int                `json:"filters"`
	Kernels  []string           `json:"kernels"`
	Warnings []string           `json:"warnings"`
}

type harvestModelJSON struct {
	Model     string             `json:"model"`
	Depthwise int                `json:"depthwise"`
	Harvested int                `json:"harvested"`
	Layers    []harvestLayerJSON `json:"layers,omitempty"`
}

type harvestLayerJSON struct {
	layerJSON
	Dropped int `json:"dropped,omitempty"`
}

// Actions of a layer in harvest's report.
const (
	actionHarvest    = "harvest"
	actionNotHarvest = "skip"
)

func runHarvest(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "harvest", "MODEL... -o BANK.npz [flags] | --merge BANK.npz... -o BANK.npz",
		"convcov-onnx harvest zoo/*.onnx -o bank.npz")
	outFlag := fs.String("o", "", "write the bank to this `file` (.npz)")
	mergeFlag := fs.Bool("merge", false, "the arguments are banks: add them into one")
	jsonFlag := fs.Bool("json", false, "print one JSON document instead of text")
	quietFlag := fs.Bool("quiet", false, "no progress bar on stderr (warnings and errors are still printed)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	what := "model files"
	if *mergeFlag {
		what = "banks"
	}
	switch {
	case len(pos) == 0:
		return usagef("harvest takes one or more %s; see 'convcov-onnx harvest -h'", what)
	case *outFlag == "":
		return usagef("harvest needs -o BANK.npz")
	}
	for _, p := range pos {
		if samePath(p, *outFlag) {
			return usagef("-o %s is one of the inputs; write the bank elsewhere", *outFlag)
		}
	}

	// Harvest each model, or read each bank, then add them up.
	doc := harvestJSON{Version: reportVersion, Command: "harvest", Output: *outFlag,
		Models: []harvestModelJSON{}, Warnings: []string{}}
	var banks []*covtransfer.Bank
	bar := e.newProgress(wantProgress(e.stderr, *quietFlag, *jsonFlag, isTerminal), "harvesting", false)
	defer bar.finish()
	for k, p := range pos {
		bar.update(int64(k), int64(len(pos)), p)
		if *mergeFlag {
			b, err := covtransfer.Load(p)
			if err != nil {
				return err
			}
			banks = append(banks, b)
			doc.Merged = append(doc.Merged, p)
			continue
		}
		b, mj, warnings, err := harvestModel(p)
		if err != nil {
			return err
		}
		banks = append(banks, b)
		doc.Models = append(doc.Models, mj)
		doc.Warnings = append(doc.Warnings, warnings...)
	}
	bar.update(int64(len(pos)), int64(len(pos)), "")
	bar.finish()
	bank, err := covtransfer.Merge(banks...)
	if err != nil {
		return err
	}
	if *mergeFlag {
		for _, m := range bank.Models {
			mj := harvestModelJSON{Model: m.Source, Depthwise: m.Layers}
			for _, en := range bank.Entries {
				if en.Source == m.Source {
					mj.Harvested++
				}
			}
			doc.Models = append(doc.Models, mj)
		}
	}
	if err := bank.Save(*outFlag); err != nil {
		return err
	}
	doc.Layers, doc.Filters, doc.Kernels = len(bank.Entries), bank.Filters(), nonNil(bank.Kernels())

	// Report.
	for _, w := range doc.Warnings {
		fmt.Fprintf(e.stderr, "convcov-onnx: warning: %s\n", w)
	}
	if *jsonFlag {
		return printJSON(e.stdout, doc)
	}
	for _, mj := range doc.Models {
		if *mergeFlag {
			continue
		}
		fmt.Fprintf(e.stdout, "%s: %s\n", mj.Model, harvestSummary(mj))
		printHarvestLayers(e.stdout, mj.Layers)
	}
	if *mergeFlag {
		fmt.Fprintf(e.stdout, "merged %d banks: %d models\n", len(pos), len(bank.Models))
	}
	fmt.Fprintf(e.stdout, "wrote %s: %s\n", *outFlag, bankSummary(bank))
	return nil
}

// harvestModel harvests one model file and describes what it did.
func harvestModel(path string) (*covtransfer.Bank, harvestModelJSON, []string, error) {
	m, err := onnxio.Load(path)
	if err != nil {
		return nil, harvestModelJSON{}, nil, err
	}
	res, err := graphscan.Scan(m)
	if err != nil {
		return nil, harvestModelJSON{}, nil, fmt.Errorf("%s: %w; nothing was written", path, err)
	}
	b, rep, err := covtransfer.Harvest(filepath.ToSlash(filepath.Clean(path)), m, res)
	if err != nil {
		return nil, harvestModelJSON{}, nil, fmt.Errorf("%w; nothing was written", err)
	}
	mj := harvestModelJSON{Model: path, Depthwise: len(res.Layers), Layers: []harvestLayerJSON{}}
	for _, hl := range rep.Layers {
		action := actionNotHarvest
		if hl.Harvested {
			action = actionHarvest
			mj.Harvested++
		}
		row := layerRow(m, hl.Layer, action, hl.Reason, math.NaN(), hl.Filters)
		mj.Layers = append(mj.Layers, harvestLayerJSON{layerJSON: row, Dropped: hl.Dropped})
	}
	return b, mj, rep.Warnings, nil
}

func harvestSummary(mj harvestModelJSON) string {
	switch mj.Depthwise {
	case 0:
		return "no depthwise convolutions in the main graph (0 depthwise): 0 filters harvested"
	case 1:
		return fmt.Sprintf("1 depthwise convolution in the main graph (D = 1); %d harvested", mj.Harvested)
	}
	return fmt.Sprintf("%d depthwise convolutions in the main graph (D = %d); %d harvested",
		mj.Depthwise, mj.Depthwise, mj.Harvested)
}

// bankSummary describes a bank in one line.
func bankSummary(b *covtransfer.Bank) string {
	models := "1 model"
	if len(b.Models) != 1 {
		models = fmt.Sprintf("%d models", len(b.Models))
	}
	s := fmt.Sprintf("%d layers of %s, %d filters", len(b.Entries), models, b.Filters())
	if k := b.Kernels(); len(k) > 0 {
		s += ", kernels " + strings.Join(k, ", ")
	}
	return s
}

// printHarvestLayers writes harvest's layer table, then why layers were not harvested.
func printHarvestLayers(w io.Writer, rows []harvestLayerJSON) {
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "i\td\tC\tm\tkernel\tdtype\tfilters\taction\tnode\tweight")
	for _, r := range rows {
		i, d := "-", "-"
		if r.Index != nil {
			i, d = strconv.Itoa(*r.Index), strconv.FormatFloat(*r.Depth, 'f', 3, 64)
		}
		filters := "-"
		if r.Action == actionHarvest {
			filters = strconv.Itoa(r.Filters)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			i, d, r.Channels, r.Multiplier, kernelString(r.Kernel),
			cmpOr(r.DType, "-"), filters, r.Action, shown(r.Node), weightString(r.layerJSON))
	}
	tw.Flush()
	for _, r := range rows {
		if r.Action != actionHarvest && r.Reason != "" {
			fmt.Fprintf(w, "not harvested %s: %s\n", shown(r.Node), r.Reason)
		}
	}
}

// weightString shows a weight and, when it differs, the tensor behind it.
func weightString(r layerJSON) string {
	if r.Tensor != "" && r.Tensor != r.Weight {
		return shown(r.Weight) + " <- " + shown(r.Tensor)
	}
	return shown(r.Weight)
}
