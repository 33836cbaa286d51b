package verify

import (
	"errors"
	"fmt"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// Expectation gives the distribution a rewritten layer's filters were drawn from.
type Expectation interface {
	Target(l *graphscan.Layer) (*Target, error)
}

// CheckOptions control Check.
type CheckOptions struct {
	// Run runs both models in ONNX Runtime with Runtime's settings.
	Run     bool
	Runtime Options
	// Expectation, when set, is what the fidelity of each rewritten layer is measured against.
	Expectation Expectation
}

// LayerCheck is one depthwise layer that the rewrite could change.
type LayerCheck struct {
	Layer     *graphscan.Layer
	Rewritten bool      // its weight differs between the models
	Fidelity  *Fidelity // nil when not rewritten or without an Expectation
}

// Report is what Check found. OK says whether the rewrite passed.
type Report struct {
	Original, Rewritten string
	Structure           *Structure
	Layers              []LayerCheck
	Outputs             []OutputDiff // per output of the models, when they ran
	Runtime             string       // ONNX Runtime version and provider, when they ran
	Problems            []string     // every failed check; empty when the rewrite passed
}

// OK reports whether every check passed.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) fail(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Check proves a rewritten model against its original: nothing but the depthwise weights
// changed (Diff), the rewritten filters follow the expected distribution (CheckFidelity),
// and, with opts.Run, both models run in ONNX Runtime on the same inputs, with outputs of
// equal shapes and finite values in the rewritten one. Failed checks are listed in the
// report; an error means a model could not be read at all.
func Check(original, rewritten string, opts CheckOptions) (*Report, error) {
	a, err := onnxio.Load(original)
	if err != nil {
		return nil, err
	}
	b, err := onnxio.Load(rewritten)
	if err != nil {
		return nil, err
	}
	rep := &Report{Original: original, Rewritten: rewritten}

	// Structure: the weights a rewrite may change are those scan finds rewritable.
	scan, err := graphscan.Scan(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", original, err)
	}
	allowed := map[*onnxpb.TensorProto]bool{}
	for k := range scan.Layers {
		if l := &scan.Layers[k]; l.Rewritable() {
			allowed[l.Tensor] = true
		}
	}
	rep.Structure, err = Diff(a, b, allowed)
	if err != nil {
		return nil, err
	}
	for _, d := range rep.Structure.Differences {
		rep.fail("%s differs: %s", d.Path, d.What)
	}
	if rep.Structure.More > 0 {
		rep.fail("%d more differences", rep.Structure.More)
	}

	// Fidelity of every rewritten layer; the model's level is shared between them.
	changed := map[*onnxpb.TensorProto]*onnxpb.TensorProto{}
	for _, p := range rep.Structure.Changed {
		changed[p.Original] = p.Rewritten
	}
	level := DefaultLevel / float64(max(len(changed), 1))
	for k := range scan.Layers {
		l := &scan.Layers[k]
		if !l.Rewritable() {
			continue
		}
		lc := LayerCheck{Layer: l}
		if t, ok := changed[l.Tensor]; ok {
			lc.Rewritten = true
			if err := layerFidelity(&lc, b, t, opts.Expectation, level); err != nil {
				rep.fail("node %s: %v", l.Label(), err)
			} else if lc.Fidelity != nil && !lc.Fidelity.OK {
				rep.fail("node %s: weight %q does not follow the target distribution: %s", l.Label(), l.TensorName, lc.Fidelity.Problem)
			}
		}
		rep.Layers = append(rep.Layers, lc)
	}

	// Both models in ONNX Runtime. Their inputs and outputs come from the models read above,
	// whose file bytes need not stay in memory while ONNX Runtime reads its own copies.
	if opts.Run {
		runBoth(rep, opts.Runtime, a.Proto, b.Proto)
	}
	return rep, nil
}

// layerFidelity measures one rewritten layer against its target distribution.
func layerFidelity(lc *LayerCheck, b *onnxio.Model, t *onnxpb.TensorProto, exp Expectation, level float64) error {
	if exp == nil {
		return nil
	}
	values, err := b.Values(t)
	if err != nil {
		return err
	}
	target, err := exp.Target(lc.Layer)
	if err != nil {
		return err
	}
	f, err := CheckFidelity(values, int(lc.Layer.Channels*lc.Layer.Multiplier), target, Roundoff(t.GetDataType()), level)
	if err != nil {
		return err
	}
	lc.Fidelity = &f
	return nil
}

// Roundoff is the unit roundoff of a float element type: the largest relative error of
// rounding a value to it. It is 0 for other types.
func Roundoff(dt int32) float64 {
	switch dt {
	case onnxio.Float:
		return 0x1p-24
	case onnxio.Float16:
		return 0x1p-11
	case onnxio.BFloat16:
		return 0x1p-8
	case onnxio.Double:
		return 0x1p-53
	}
	return 0
}

// runBoth runs the two models, decoded as pa and pb, on the same inputs and compares their
// outputs.
func runBoth(rep *Report, opts Options, pa, pb *onnxpb.ModelProto) {
	rt, err := Open(opts)
	if err != nil {
		if errors.Is(err, ErrNoRuntime) {
			rep.fail("the models were not run: %v", err)
		} else {
			rep.fail("%v", err)
		}
		return
	}
	defer rt.Close()
	rep.Runtime = fmt.Sprintf("ONNX Runtime %s (%s)", rt.Version(), rt.EP())
	sigA, err := newSignature(rep.Original, pa)
	if err != nil {
		rep.fail("%v", err)
		return
	}
	sigB, err := newSignature(rep.Rewritten, pb)
	if err != nil {
		rep.fail("%v", err)
		return
	}
	inputs, err := sigA.makeInputs(rt.opts.Dims, rt.opts.Seed)
	if err != nil {
		rep.fail("%v", err)
		return
	}
	outA, err := rt.run(sigA, inputs)
	if err != nil {
		rep.fail("ONNX Runtime cannot run the original model either, so the rewrite cannot be proven there: %v", err)
		return
	}
	outB, err := rt.run(sigB, inputs)
	if err != nil {
		rep.fail("ONNX Runtime cannot run the rewritten model: %v", err)
		return
	}
	rep.Outputs = Compare(outA, outB)
	for _, d := range rep.Outputs {
		switch {
		case d.Missing:
			rep.fail("output %q is missing from one model", d.Name)
		case !d.SameShape:
			rep.fail("output %q has shape %v in the original and %v in the rewritten model", d.Name, d.ShapeA, d.ShapeB)
		case !d.Finite:
			rep.fail("output %q of the rewritten model holds NaN or Inf", d.Name)
		}
	}
}
