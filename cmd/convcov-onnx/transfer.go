package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/convcov/convcov-onnx/covtransfer"
	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/verify"
)

// bankFlags are the flags that choose a bank's distribution.
type bankFlags struct {
	bank                                *string
	alignCorners, withMean, kronecker   *bool
	bankSet, alignSet, meanSet, kronSet bool
	loaded                              *covtransfer.Bank
}

func addBankFlags(fs *flag.FlagSet, bankUsage string) *bankFlags {
	return &bankFlags{
		bank:         fs.String("bank", "", bankUsage),
		alignCorners: fs.Bool("align-corners", true, "line up the first and last layers over depth; false lines up cell centres"),
		withMean:     fs.Bool("with-mean", false, "sample N(µ, Σ) with the bank's mean (the paper's section 2); default zero mean"),
		kronecker:    fs.Bool("kronecker", false, "use the nearest Kronecker square A⊗A of each covariance"),
	}
}

// check refuses bank options without a bank, and a bank together with a closed-form schedule.
func (b *bankFlags) check(fs *flag.FlagSet) error {
	var schedule []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "align-corners":
			b.alignSet = true
		case "with-mean":
			b.meanSet = true
		case "kronecker":
			b.kronSet = true
		case "preset", "sigma0", "v", "a", "schedule":
			schedule = append(schedule, "--"+f.Name)
		}
	})
	if *b.bank == "" {
		for _, f := range []struct {
			set  bool
			name string
		}{{b.alignSet, "--align-corners"}, {b.meanSet, "--with-mean"}, {b.kronSet, "--kronecker"}} {
			if f.set {
				return usagef("%s applies to a bank's distribution; give --bank BANK.npz", f.name)
			}
		}
		return nil
	}
	if len(schedule) > 0 {
		return usagef("--bank replaces the closed form, so %s does not apply", strings.Join(schedule, ", "))
	}
	return nil
}

// options are the Source options for a target of D depthwise layers.
func (b *bankFlags) options(D int) covtransfer.Options {
	o := covtransfer.Options{WithMean: *b.withMean, Kronecker: *b.kronecker, Layers: D}
	if !*b.alignCorners {
		o.Align = covtransfer.AlignCentres
	}
	return o
}

// load reads the bank.
func (b *bankFlags) load() (*covtransfer.Bank, error) {
	if b.loaded == nil {
		bank, err := covtransfer.Load(*b.bank)
		if err != nil {
			return nil, err
		}
		b.loaded = bank
	}
	return b.loaded, nil
}

// source reads the bank and prepares it for the model at original (whose depth it needs).
func (b *bankFlags) source(original string) (*covtransfer.Source, error) {
	bank, err := b.load()
	if err != nil {
		return nil, err
	}
	m, err := onnxio.Load(original)
	if err != nil {
		return nil, err
	}
	res, err := graphscan.Scan(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", original, err)
	}
	return b.newSource(bank, len(res.Layers))
}

func (b *bankFlags) newSource(bank *covtransfer.Bank, D int) (*covtransfer.Source, error) {
	src, err := covtransfer.NewSource(bank, b.options(D))
	if err != nil {
		return nil, fmt.Errorf("bank %s: %w", *b.bank, err)
	}
	return src, nil
}

// heading names the bank's distribution in verify's report.
func (b *bankFlags) heading() string {
	return fmt.Sprintf("the bank %s (%s)", *b.bank, covtransfer.DescribeOptions(b.options(0)))
}

type bankTargetJSON struct {
	Bank         string `json:"bank"`
	AlignCorners bool   `json:"align_corners"`
	WithMean     bool   `json:"with_mean"`
	Kronecker    bool   `json:"kronecker"`
	Direct       bool   `json:"direct,omitempty"`
}

func (b *bankFlags) json() *bankTargetJSON {
	return &bankTargetJSON{Bank: *b.bank, AlignCorners: *b.alignCorners, WithMean: *b.withMean, Kronecker: *b.kronecker}
}

// directTarget is the distribution of the filters a direct transfer copied: each layer's
// own empirical mean and covariance.
type directTarget struct {
	entries []*covtransfer.Entry // by target layer index − 1
}

func (d directTarget) Target(l *graphscan.Layer) (*verify.Target, error) {
	if l.Index < 1 || l.Index > len(d.entries) || d.entries[l.Index-1] == nil || d.entries[l.Index-1].Cov() == nil {
		return nil, fmt.Errorf("node %s: no bank layer with 2 or more filters was copied into it", l.Label())
	}
	e := d.entries[l.Index-1]
	p, err := inject.Project(e.Cov())
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", l.Label(), err)
	}
	return verify.TargetOf(p.Cov, p.Factor, e.Mean(), 1), nil
}

type transferJSON struct {
	Version    int                 `json:"version"`
	Command    string              `json:"command"`
	Model      string              `json:"model"`
	Output     string              `json:"output"`
	DataFile   string              `json:"data_file,omitempty"`
	Bank       bankTargetJSON      `json:"bank"`
	BankLayers int                 `json:"bank_layers"`
	BankModels []string            `json:"bank_models"`
	Kernels    []string            `json:"bank_kernels"`
	Depthwise  int                 `json:"depthwise"`
	Rewritten  int                 `json:"rewritten"`
	Seed       uint64              `json:"seed"`
	Scale      float64             `json:"scale"`
	Layers     []transferLayerJSON `json:"layers"`
	Warnings   []string            `json:"warnings"`
	Verify     *verifyJSON         `json:"verify,omitempty"`
}

type transferLayerJSON struct {
	layerJSON
	From string `json:"from,omitempty"`
}

func runTransfer(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "transfer", "--bank BANK.npz MODEL -o OUT [flags]",
		"convcov-onnx transfer --bank bank.npz model.onnx -o model_transfer.onnx --seed 1")
	outFlag := fs.String("o", "", "write the rewritten model to this `file`")
	inPlaceFlag := fs.Bool("in-place", false, "rewrite MODEL itself (its external data file is patched in place)")
	directFlag := fs.Bool("direct", false, "copy the bank model's filters layer for layer; the architectures must match")
	seedFlag := fs.Uint64("seed", 0, "random seed: the same model, bank, flags and seed give the same output bytes")
	scaleFlag := fs.Float64("scale", 1, "multiply every sampled filter by this factor")
	onlyFlag := fs.String("only", "", "rewrite only layers whose node, weight or tensor name matches this regular expression")
	jsonFlag := fs.Bool("json", false, "print one JSON document instead of text")
	verifyFlag := fs.Bool("verify", false, "then verify the result against MODEL and the bank's distribution")
	quietFlag := fs.Bool("quiet", false, "no progress bar or notes on stderr (warnings and errors are still printed)")
	bf := addBankFlags(fs, "the bank to draw from, made by harvest (required)")
	rf := addRuntimeFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("transfer takes one model file, got %d arguments; see 'convcov-onnx transfer -h'", len(pos))
	}
	if *bf.bank == "" {
		return usagef("transfer needs --bank BANK.npz, a bank made by 'convcov-onnx harvest'")
	}
	if *outFlag == "" && !*inPlaceFlag {
		return usagef("transfer needs -o OUT (or --in-place to rewrite %s itself)", pos[0])
	}
	in, out, err := outputPath(pos[0], *outFlag, *inPlaceFlag)
	if err != nil {
		return err
	}
	if samePath(out, *bf.bank) {
		return usagef("-o %s is the bank; choose another output", out)
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
	if *directFlag && (bf.alignSet || *bf.withMean || *bf.kronecker || *scaleFlag != 1) {
		return usagef("--direct copies filters as they are; it takes none of --align-corners, --with-mean, --kronecker, --scale")
	}
	var onlyRE *regexp.Regexp
	if *onlyFlag != "" {
		if onlyRE, err = regexp.Compile(*onlyFlag); err != nil {
			return usagef("--only: %v", err)
		}
	}

	// Read the bank and the model, and find the model's depthwise convolutions.
	bank, err := bf.load()
	if err != nil {
		return err
	}
	m, err := onnxio.Load(in)
	if err != nil {
		return err
	}
	res, err := graphscan.Scan(m)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing was written", in, err)
	}

	// Copy the filters, or draw them from the bank's distributions, and write the model.
	var rep *inject.Report
	var target verify.Expectation
	if *directFlag {
		var entries []*covtransfer.Entry
		rep, entries, err = covtransfer.Direct(m, res, bank, onlyRE)
		if err != nil {
			return fmt.Errorf("%s: %w; nothing was written", in, err)
		}
		target = directTarget{entries}
	} else {
		src, err := bf.newSource(bank, len(res.Layers))
		if err != nil {
			return err
		}
		rep, err = inject.Apply(m, res, src, inject.Options{Seed: *seedFlag, Scale: *scaleFlag, Only: onlyRE})
		if err != nil {
			return fmt.Errorf("%s: %w; nothing was written", in, err)
		}
		target = sourceTarget{src, *scaleFlag}
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
		if vrep, err = checkRewrite(in, out, target, rf); err != nil {
			return err
		}
	}

	// Report.
	bj := *bf.json()
	bj.Direct = *directFlag
	var rows []transferLayerJSON
	for _, lr := range rep.Layers {
		rows = append(rows, transferLayerJSON{
			layerJSON: layerRow(m, lr.Layer, lr.Action, lr.Reason, math.NaN(), lr.Filters),
			From:      strings.TrimPrefix(lr.Note, "bank: "),
		})
	}
	if *jsonFlag {
		doc := transferJSON{
			Version: reportVersion, Command: "transfer", Model: in, Output: out, DataFile: dataFile,
			Bank: bj, BankLayers: len(bank.Entries), Kernels: nonNil(bank.Kernels()), BankModels: []string{},
			Depthwise: len(res.Layers), Rewritten: rep.Rewritten, Seed: *seedFlag, Scale: *scaleFlag,
			Layers: nonNil(rows), Warnings: nonNil(res.Warnings),
		}
		for _, bm := range bank.Models {
			doc.BankModels = append(doc.BankModels, bm.Source)
		}
		if vrep != nil {
			v := verifyReportJSON(vrep, nil)
			v.Schedule, v.Bank = nil, &bj
			doc.Verify = &v
		}
		if err := printJSON(e.stdout, doc); err != nil {
			return err
		}
		return verifyError(vrep)
	}
	fmt.Fprintf(e.stdout, "%s: %s\n", in, depthwiseSummary(res))
	how := fmt.Sprintf("%s; seed %d, scale %g", covtransfer.DescribeOptions(bf.options(0)), *seedFlag, *scaleFlag)
	if *directFlag {
		how = "direct copy"
	}
	fmt.Fprintf(e.stdout, "bank %s: %s; %s\n", *bf.bank, bankSummary(bank), how)
	printTransferLayers(e.stdout, rows)
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
		fmt.Fprintf(e.stdout, "rewrote %d of %d depthwise convolutions; wrote %s\n",
			rep.Rewritten, len(res.Layers), written)
	}
	if vrep == nil {
		return nil
	}
	fmt.Fprintln(e.stdout)
	heading := bf.heading()
	if *directFlag {
		heading = fmt.Sprintf("the copied layers of the bank %s (their own mean and covariance)", *bf.bank)
	}
	printVerifyAgainst(e.stdout, vrep, heading)
	return verifyError(vrep)
}

// printTransferLayers writes transfer's layer table, then the reasons of skipped layers, as
// printLayers does for init.
func printTransferLayers(w io.Writer, rows []transferLayerJSON) {
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "i\td\tC\tm\tkernel\tdtype\taction\tnode\tweight\tfrom the bank")
	for _, r := range rows {
		i, d := "-", "-"
		if r.Index != nil {
			i, d = strconv.Itoa(*r.Index), strconv.FormatFloat(*r.Depth, 'f', 3, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			i, d, r.Channels, r.Multiplier, kernelString(r.Kernel),
			cmpOr(r.DType, "-"), r.Action, shown(r.Node), weightString(r.layerJSON), cmpOr(r.From, "-"))
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
