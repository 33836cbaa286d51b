package graphscan

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// ErrInvalidGraph means the model's graph is broken: a cycle, a value with two producers, a
// read of a value nobody provides, or a Conv whose group contradicts its channels or weight.
// Nothing should be written for such a model.
var ErrInvalidGraph = errors.New("invalid graph")

// Source kinds: where a rewritten weight is stored.
const (
	SourceInitializer = "initializer"
	SourceConstant    = "Constant"
)

// Layer is one depthwise convolution.
type Layer struct {
	Node      *onnxpb.NodeProto
	NodeIndex int    // position in its graph's node list
	Name      string // the node's name; "" when it has none (see Label)
	Scope     string // "" in the main graph; otherwise the subgraph or function it lies in

	Weight     string              // the name of the Conv's weight input
	Tensor     *onnxpb.TensorProto // the weight's source tensor; nil when it has none (see Skip)
	TensorName string              // initializer name or Constant node name holding Tensor
	SourceKind string              // SourceInitializer or SourceConstant; "" without a Tensor
	Via        []string            // op types between the source and the Conv, nearest last

	Channels   int64   // C = group
	Multiplier int64   // m: output channels per input channel
	Kernel     []int64 // spatial kernel shape; nil when unknown
	Strides    []int64 // the Conv's strides attribute, nil when absent

	Index      int     // i: 1-based position in topological order among the main graph's layers; 0 outside it
	Depth      float64 // d = (i-1)/(D-1), 0 when D = 1
	Stage      int     // downsampling steps before the layer; a stride > 1 of its own counts
	StageIndex int     // 1-based position among the layers of its stage
	StageSize  int     // number of layers in its stage

	Skip     string   // why the layer is not rewritten; "" when it is rewritten
	Warnings []string // notes on a rewritten layer that the user should see
}

// Label names the layer's node for messages: its name, or its op type and position.
func (l *Layer) Label() string {
	if l.Name != "" {
		return l.Name
	}
	return fmt.Sprintf("#%d (unnamed Conv)", l.NodeIndex)
}

// Rewritable reports whether a rewrite may replace the layer's weight: it is in the main
// graph, its source tensor is known, and nothing made it skip.
func (l *Layer) Rewritable() bool { return l.Skip == "" && l.Tensor != nil && l.Counted() }

// Counted reports whether the layer is in the main graph and so counts in D.
func (l *Layer) Counted() bool { return l.Index > 0 }

// Result is what Scan found.
type Result struct {
	// Layers are the main graph's depthwise convolutions in topological order:
	// Layers[k].Index == k+1, and len(Layers) is D. Skipped layers are included.
	Layers []Layer
	// Outside are depthwise convolutions inside subgraphs (If, Loop, Scan bodies) and
	// model-local functions: reported, skipped, not counted in D.
	Outside []Layer
	// Warnings are notes on the model, such as a grouped Conv that could not be classified.
	Warnings []string
}

// Scan finds the depthwise convolutions of m, where each weight comes from, and each layer's
// position and relative depth. It returns an error wrapping ErrInvalidGraph for a broken
// graph, and one wrapping onnxio.ErrTensorData or onnxio.ErrExternalData when the stored
// data of a weight it would rewrite does not match the weight's dims (see onnxio's
// Model.Check): a rewritable layer's tensor always holds Channels·Multiplier filters of
// the Kernel's size.
func Scan(m *onnxio.Model) (*Result, error) {
	g := m.Proto.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("%w: the model has no graph", ErrInvalidGraph)
	}
	top, err := newGraphScope(g, nil, "")
	if err != nil {
		return nil, err
	}
	order, err := top.topoOrder()
	if err != nil {
		return nil, err
	}
	res := &Result{}
	irVersion := m.Proto.GetIrVersion()

	// Depthwise convolutions of the main graph, in topological order.
	stage := top.stages(order)
	for _, i := range order {
		l, ok, err := top.layer(i, res)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		l.Stage = stage[i]
		if l.Skip == "" {
			top.checkSource(&l, irVersion)
		}
		if l.Skip == "" && l.Tensor != nil {
			// The stored data must hold the filters the dims promise before anyone draws
			// them: a small file may declare a huge weight.
			if err := m.Check(l.Tensor); err != nil {
				return nil, fmt.Errorf("node %s: weight %q: %w", label(l.Node, l.NodeIndex), l.Weight, err)
			}
		}
		res.Layers = append(res.Layers, l)
	}
	numberLayers(res.Layers)

	// Subgraphs and functions: reported, never rewritten.
	if err := scanSubgraphs(top, res); err != nil {
		return nil, err
	}
	if err := scanFunctions(m.Proto, top, res); err != nil {
		return nil, err
	}
	return res, nil
}

// numberLayers sets the index, depth and stage positions of the main graph's layers.
func numberLayers(layers []Layer) {
	D := len(layers)
	perStage := map[int]int{}
	for k := range layers {
		layers[k].Index = k + 1
		if D > 1 {
			layers[k].Depth = float64(k) / float64(D-1)
		}
		perStage[layers[k].Stage]++
		layers[k].StageIndex = perStage[layers[k].Stage]
	}
	for k := range layers {
		layers[k].StageSize = perStage[layers[k].Stage]
	}
}

// layer examines node i of the scope and returns it as a layer when it is a depthwise
// convolution.
func (s *scope) layer(i int, res *Result) (Layer, bool, error) {
	n := s.nodes[i]
	if n.GetOpType() != "Conv" || !isDefaultDomain(n) || len(n.GetInput()) < 2 {
		return Layer{}, false, nil
	}
	group := attrInt(n, "group", 1)
	if group < 2 {
		return Layer{}, false, nil
	}
	l := Layer{
		Node:      n,
		NodeIndex: i,
		Name:      n.GetName(),
		Scope:     s.where,
		Weight:    n.GetInput()[1],
		Channels:  group,
		Strides:   attrInts(n, "strides"),
	}
	src := s.trace(l.Weight)
	w := src.dims
	channels := int64(-1)
	if x, ok := s.lookupShape(n.GetInput()[0]); ok && len(x) >= 2 && x[1] > 0 {
		channels = x[1]
	}
	lbl := label(n, i)

	switch {
	case w != nil && len(w) < 3:
		return l, false, fmt.Errorf("%w: %snode %s: weight %q has shape %v; a Conv weight needs [M, C/group, k...]; the model is broken",
			ErrInvalidGraph, s.in(), lbl, l.Weight, w)
	case src.exact && slices.ContainsFunc(w, func(d int64) bool { return d <= 0 }):
		return l, false, fmt.Errorf("%w: %snode %s: weight %q has shape %v; every dim of a Conv weight must be positive; the model is broken",
			ErrInvalidGraph, s.in(), lbl, l.Weight, w)
	case w != nil && w[1] > 0:
		if channels > 0 && channels != group*w[1] {
			return l, false, fmt.Errorf("%w: %snode %s: group %d with weight %q of shape %v means %d input channels, but input %q has %d; the model is broken",
				ErrInvalidGraph, s.in(), lbl, group, l.Weight, w, group*w[1], n.GetInput()[0], channels)
		}
		if w[1] != 1 {
			return l, false, nil // a grouped convolution, not a depthwise one
		}
		if w[0] > 0 && w[0]%group != 0 {
			return l, false, fmt.Errorf("%w: %snode %s: weight %q has %d output channels, not a multiple of group %d",
				ErrInvalidGraph, s.in(), lbl, l.Weight, w[0], group)
		}
	case channels > 0:
		if channels != group {
			return l, false, nil
		}
	default:
		res.Warnings = append(res.Warnings, fmt.Sprintf(
			"%snode %s has group %d, but neither its weight shape nor its input channels are known; it is not counted as depthwise",
			s.in(), lbl, group))
		return l, false, nil
	}

	// A depthwise convolution: say what can be rewritten.
	if w != nil {
		if w[0] > 0 {
			l.Multiplier = w[0] / group
		}
		if !slices.Contains(w[2:], -1) {
			l.Kernel = slices.Clone(w[2:])
		}
	}
	l.Via = src.via
	switch {
	case src.stop != "":
		l.Skip = src.stop
	case l.Kernel == nil || l.Multiplier == 0:
		l.Skip = fmt.Sprintf("the shape of weight %q is not known", l.Weight)
	default:
		l.Tensor, l.TensorName, l.SourceKind = src.tensor, src.name, src.kind
	}
	return l, true, nil
}

// source is where a weight value comes from.
type source struct {
	tensor *onnxpb.TensorProto
	name   string // initializer name or Constant node name
	kind   string
	via    []string
	chain  []link // from the Conv's weight input back to the source value
	dims   []int64
	exact  bool   // dims are a stored tensor's, not a declared shape with unknowns
	stop   string // why no tensor can be rewritten; "" when one was found
	input  bool   // the initializer is also a graph input
}

// link is one value on a weight's path and the node that reads it on the way to the Conv.
type link struct {
	value  string
	reader int // node index in the scope; -1 for the Conv itself
	sc     *scope
}

// trace follows a weight back through Identity nodes and Casts between float types to an
// initializer or a Constant node.
func (s *scope) trace(name string) source {
	var src source
	if d, ok := s.lookupShape(name); ok {
		src.dims = d
	}
	cur, sc, reader := name, s, -1
	for steps := 0; steps < 1000; steps++ {
		src.chain = append(src.chain, link{cur, reader, sc})
		if t := sc.init[cur]; t != nil {
			src.tensor, src.name, src.kind, src.input = t, cur, SourceInitializer, sc.inputs[cur]
			src.dims, src.exact = append([]int64{}, t.GetDims()...), true // a scalar has rank 0
			return src.checkType()
		}
		if sc.sparse[cur] {
			src.stop = fmt.Sprintf("weight %q is a sparse initializer", cur)
			return src
		}
		if p, ok := sc.producer[cur]; ok {
			n := sc.nodes[p]
			op := n.GetOpType()
			switch {
			case isDefaultDomain(n) && (op == "Identity" || op == "Cast") && len(n.GetInput()) > 0:
				if op == "Cast" && !onnxio.IsFloat(int32(attrInt(n, "to", 0))) {
					src.stop = fmt.Sprintf("weight %q is computed by Cast node %s to %s", cur, label(n, p), onnxio.TypeName(int32(attrInt(n, "to", 0))))
					return src
				}
				src.via = append([]string{op}, src.via...)
				cur, reader = n.GetInput()[0], p
				continue
			case isDefaultDomain(n) && op == "Constant":
				if a := attr(n, "value"); a != nil && a.GetT() != nil {
					// An unnamed Constant is known by the value it outputs.
					src.tensor, src.name, src.kind = a.GetT(), cmp.Or(n.GetName(), cur), SourceConstant
					src.dims, src.exact = append([]int64{}, a.GetT().GetDims()...), true
					return src.checkType()
				}
				src.stop = fmt.Sprintf("weight %q comes from Constant node %s without a dense tensor value", cur, label(n, p))
				return src
			default:
				src.stop = fmt.Sprintf("weight %q is computed by %s node %s, not stored; only initializers and Constants (through Identity or float Casts) are rewritten",
					cur, op, label(n, p))
				return src
			}
		}
		if sc.inputs[cur] {
			src.stop = fmt.Sprintf("weight %q is a graph input with no initializer: its value is fed at run time", cur)
			return src
		}
		if actual, ok := sc.formal[cur]; ok {
			cur, sc = actual, sc.caller
			continue
		}
		if sc.parent == nil {
			src.stop = fmt.Sprintf("weight %q is not defined", cur)
			return src
		}
		sc = sc.parent
	}
	src.stop = fmt.Sprintf("weight %q: the path to its source is too long", name)
	return src
}

// checkType refuses a source tensor whose type cannot hold filters.
func (src source) checkType() source {
	dt := src.tensor.GetDataType()
	if onnxio.IsFloat(dt) {
		return src
	}
	if slices.Contains(src.via, "Cast") {
		src.stop = fmt.Sprintf("weight %q reaches the Conv through a Cast from %s; filters are rewritten only in float types",
			src.name, onnxio.TypeName(dt))
	} else {
		src.stop = fmt.Sprintf("weight %q has element type %s, which cannot hold filters", src.name, onnxio.TypeName(dt))
	}
	src.tensor = nil
	return src
}

// checkSource skips a main-graph layer whose weight is also read elsewhere, and warns when
// a caller could override it.
func (s *scope) checkSource(l *Layer, irVersion int64) {
	src := s.trace(l.Weight)
	for _, lk := range src.chain {
		next := lk.reader
		if next < 0 {
			next = l.NodeIndex
		}
		if lk.sc.outputs[lk.value] {
			l.Skip = fmt.Sprintf("weight %q is also a graph output", lk.value)
			break
		}
		for _, r := range lk.sc.readers[lk.value] {
			if r == next && lk.sc == s {
				continue
			}
			other := lk.sc.nodes[r]
			if other.GetOpType() == "Conv" && len(other.GetInput()) > 1 && other.GetInput()[1] == lk.value {
				l.Skip = fmt.Sprintf("weight %q is shared with Conv node %s; a shared weight is not rewritten", lk.value, label(other, r))
			} else {
				l.Skip = fmt.Sprintf("weight %q is also read by %s node %s", lk.value, other.GetOpType(), label(other, r))
			}
			break
		}
		if l.Skip != "" {
			break
		}
	}
	if l.Skip != "" {
		return // the tensor stays known: it can still be read, just not rewritten
	}
	if src.input && irVersion >= 4 {
		l.Warnings = append(l.Warnings, fmt.Sprintf(
			"weight %q is also a graph input, so a caller can override it at run time; the stored value is rewritten", src.name))
	}
}

// lookupShape finds what is known of a value's dims in this scope or an enclosing one.
func (s *scope) lookupShape(name string) ([]int64, bool) {
	for sc := s; sc != nil; sc = sc.parent {
		if t := sc.init[name]; t != nil {
			return t.GetDims(), true
		}
		if d, ok := sc.shapes[name]; ok {
			return d, true
		}
		if p, ok := sc.producer[name]; ok {
			if n := sc.nodes[p]; n.GetOpType() == "Constant" {
				if a := attr(n, "value"); a != nil && a.GetT() != nil {
					return a.GetT().GetDims(), true
				}
			}
			return nil, false
		}
		if actual, ok := sc.formal[name]; ok {
			return sc.caller.lookupShape(actual)
		}
	}
	return nil, false
}

// stages returns, per node, the number of downsampling steps on the longest path from the
// graph's inputs to the node's output (its own stride included).
func (s *scope) stages(order []int) map[int]int {
	level := map[string]int{}
	out := map[int]int{}
	for _, i := range order {
		n := s.nodes[i]
		in := 0
		for _, name := range n.GetInput() {
			in = max(in, level[name])
		}
		if downsamples(n) {
			in++
		}
		for _, name := range n.GetOutput() {
			level[name] = in
		}
		out[i] = in
	}
	return out
}

// downsamples reports whether a node reduces spatial resolution.
func downsamples(n *onnxpb.NodeProto) bool {
	if !isDefaultDomain(n) {
		return false
	}
	switch n.GetOpType() {
	case "Conv", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool":
		return slices.ContainsFunc(attrInts(n, "strides"), func(v int64) bool { return v > 1 })
	case "SpaceToDepth":
		return true
	}
	return false
}

// scanSubgraphs reports the depthwise convolutions inside the subgraphs of a scope's nodes.
func scanSubgraphs(s *scope, res *Result) error {
	for i, n := range s.nodes {
		for _, a := range n.GetAttribute() {
			subs := a.GetGraphs()
			if a.GetG() != nil {
				subs = append([]*onnxpb.GraphProto{a.GetG()}, subs...)
			}
			for _, g := range subs {
				where := fmt.Sprintf("%s of %s node %s", a.GetName(), n.GetOpType(), label(n, i))
				if s.where != "" {
					where = where + " in " + s.where
				}
				sub, err := newGraphScope(g, s, where)
				if err != nil {
					return err
				}
				sub.collectOutside(res, fmt.Sprintf("it is inside the %s; convolutions in subgraphs are not rewritten", where))
				if err := scanSubgraphs(sub, res); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// scanFunctions reports the depthwise convolutions inside model-local functions.
func scanFunctions(mp *onnxpb.ModelProto, top *scope, res *Result) error {
	// The main graph's calls of each function, found in one pass over its nodes.
	type fnKey struct{ domain, name string }
	calls := map[fnKey][]int{}
	for i, n := range top.nodes {
		k := fnKey{n.GetDomain(), n.GetOpType()}
		calls[k] = append(calls[k], i)
	}
	for _, f := range mp.GetFunctions() {
		where := fmt.Sprintf("model-local function %q", f.GetName())
		s := emptyScope(f.GetNode())
		s.caller, s.fn = top, f
		for _, in := range f.GetInput() {
			s.inputs[in] = true
		}
		var callers []string
		for _, i := range calls[fnKey{f.GetDomain(), f.GetName()}] {
			n := top.nodes[i]
			if len(callers) == 5 {
				callers = append(callers, "...")
				break
			}
			callers = append(callers, label(n, i))
			if len(callers) == 1 { // shapes come from the first call
				for k, in := range f.GetInput() {
					if k < len(n.GetInput()) && n.GetInput()[k] != "" {
						s.formal[in] = n.GetInput()[k]
						delete(s.inputs, in)
					}
				}
			}
		}
		if len(callers) > 0 {
			where += " (called by node " + strings.Join(callers, ", ") + ")"
		}
		s.where = where
		if err := s.index(); err != nil {
			return err
		}
		s.collectOutside(res, fmt.Sprintf("it is inside %s; convolutions in functions are not rewritten", where))
		if err := scanSubgraphs(s, res); err != nil {
			return err
		}
	}
	return nil
}

// collectOutside adds the scope's depthwise convolutions to res.Outside with reason.
func (s *scope) collectOutside(res *Result, reason string) {
	for i := range s.nodes {
		l, ok, err := s.layer(i, res)
		if err != nil {
			// A broken Conv inside a body that is never rewritten: report it, do not refuse.
			res.Warnings = append(res.Warnings, strings.TrimPrefix(err.Error(), ErrInvalidGraph.Error()+": "))
			continue
		}
		if !ok {
			continue
		}
		l.Tensor, l.TensorName, l.SourceKind = nil, "", ""
		l.Skip = reason
		res.Outside = append(res.Outside, l)
	}
}
