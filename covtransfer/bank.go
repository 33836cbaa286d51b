package covtransfer

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
)

// ErrBank means a bank file is damaged or not a bank, or banks cannot be merged.
var ErrBank = errors.New("not a valid bank")

// Entry is one harvested depthwise layer: where it came from and the moments of its filters.
// A filter is the layer's k_1×...×k_n kernel flattened row-major (the rearranged form of
// ALGORITHM.md 1), n = Taps() values.
type Entry struct {
	Source     string  // the model file the layer was harvested from, as given to Harvest
	Node       string  // the Conv node's label (graphscan.Layer.Label)
	NodeIndex  int     // its position in the main graph's node list
	Weight     string  // the Conv's weight input
	Tensor     string  // the initializer or Constant node that holds the weight
	DType      string  // the weight's element type, such as FLOAT
	Kernel     []int   // spatial kernel shape
	Index      int     // i: 1-based position among the model's depthwise layers
	Layers     int     // D: the model's depthwise layers
	Depth      float64 // d = (i-1)/(D-1), 0 when D = 1
	Stage      int     // downsampling steps before the layer
	Channels   int64   // C
	Multiplier int64   // m; the layer has C·m filters

	// The moments of the Count finite filters f: Sum = Σ f (n values) and Outer = Σ f·fᵀ
	// (n×n, row-major), in float64. Entries of one layer add.
	Count int
	Sum   []float64
	Outer []float64
	// Filters are the Count filters themselves, filter j at Filters[j*n:(j+1)*n], kept for
	// direct transfer; nil when the bank does not hold them.
	Filters []float64
	// Dropped counts the filters left out because they held NaN or Inf.
	Dropped int

	mean []float64     // Sum/Count; nil when Count == 0
	cov  *mat.SymDense // (Outer − Sum·Sumᵀ/Count)/(Count−1); nil when Count < 2
}

// Taps returns the number of values of one filter, the product of the kernel's dims.
func (e *Entry) Taps() int { return taps(e.Kernel) }

// Mean returns the mean filter, Sum/Count; nil when Count is 0. Do not modify it.
func (e *Entry) Mean() []float64 { return e.mean }

// Cov returns the empirical covariance of the filters with normaliser Count−1 (ALGORITHM.md
// 4.1, as numpy.cov and torch.cov); nil when Count < 2. Do not modify it.
func (e *Entry) Cov() *mat.SymDense { return e.cov }

// KernelString returns the kernel as "9x9".
func (e *Entry) KernelString() string { return kernelString(e.Kernel) }

// derive computes the mean and covariance from the moments.
func (e *Entry) derive() {
	e.mean, e.cov = nil, nil
	n := e.Taps()
	if e.Count == 0 || len(e.Sum) != n || len(e.Outer) != n*n {
		return
	}
	c := float64(e.Count)
	e.mean = make([]float64, n)
	for i, s := range e.Sum {
		e.mean[i] = s / c
	}
	if e.Count < 2 {
		return
	}
	e.cov = mat.NewSymDense(n, nil)
	raw := e.cov.RawSymmetric()
	for i := range n {
		for j := i; j < n; j++ {
			// Halving first keeps a bank written by other tools, whose Outer may be
			// symmetric only to rounding, from overflowing.
			s := 0.5*e.Outer[i*n+j] + 0.5*e.Outer[j*n+i]
			raw.Data[i*raw.Stride+j] = (s - e.Sum[i]*e.Sum[j]/c) / (c - 1)
		}
	}
}

// hasFilters reports whether the entry holds its filters (trivially so when it has none).
func (e *Entry) hasFilters() bool { return len(e.Filters) == e.Count*e.Taps() }

// clone returns a deep copy of e.
func (e *Entry) clone() *Entry {
	c := *e
	c.Kernel = slices.Clone(e.Kernel)
	c.Sum = slices.Clone(e.Sum)
	c.Outer = slices.Clone(e.Outer)
	c.Filters = slices.Clone(e.Filters)
	c.derive()
	return &c
}

// Model is a model harvested into a bank.
type Model struct {
	Source       string         // the model file, as given to Harvest
	Layers       int            // D, its depthwise convolutions in the main graph
	NotHarvested []NotHarvested // its depthwise layers whose filters could not be read
}

// NotHarvested is a depthwise layer whose filters are not in the bank, and why.
type NotHarvested struct {
	Node   string
	Reason string
}

// Bank holds harvested layers of one or more models. The zero Bank is empty.
type Bank struct {
	Models  []Model
	Entries []*Entry // in the order harvested: by model, then by i
}

// Filters returns the number of filters in the bank.
func (b *Bank) Filters() int {
	n := 0
	for _, e := range b.Entries {
		n += e.Count
	}
	return n
}

// Kernels returns the bank's distinct kernel shapes as strings such as "9x9", in the order
// they first appear.
func (b *Bank) Kernels() []string {
	var out []string
	for _, e := range b.Entries {
		if s := e.KernelString(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// HarvestReport says what Harvest did with each depthwise layer of a model.
type HarvestReport struct {
	Source string
	Layers []HarvestedLayer // the main graph's in order, then those outside it
	// Warnings name layers that lost filters to NaN or Inf.
	Warnings []string
}

// HarvestedLayer is one depthwise layer of a HarvestReport.
type HarvestedLayer struct {
	Layer     *graphscan.Layer
	Harvested bool
	Reason    string // why it was not harvested
	Filters   int    // filters added to the bank
	Dropped   int    // filters left out for NaN or Inf
}

// Harvest reads the filters of every depthwise layer of scan's main graph whose source tensor
// is known, including layers that a rewrite would skip because their weight is shared or
// read elsewhere, and returns them as a bank with source as the model's name. Layers
// without a known tensor and layers inside subgraphs or functions are reported as not
// harvested. Filters that hold NaN or Inf are left out, with a warning in the report.
// A model without depthwise convolutions gives an empty bank.
func Harvest(source string, m *onnxio.Model, scan *graphscan.Result) (*Bank, *HarvestReport, error) {
	b := &Bank{Models: []Model{{Source: source, Layers: len(scan.Layers)}}}
	rep := &HarvestReport{Source: source}
	for k := range scan.Layers {
		l := &scan.Layers[k]
		hl := HarvestedLayer{Layer: l}
		if l.Tensor == nil {
			hl.Reason = l.Skip
			if hl.Reason == "" {
				hl.Reason = fmt.Sprintf("the source of weight %q is not known", l.Weight)
			}
			nh := NotHarvested{Node: l.Label(), Reason: hl.Reason}
			b.Models[0].NotHarvested = append(b.Models[0].NotHarvested, nh)
			rep.Layers = append(rep.Layers, hl)
			continue
		}
		e, err := harvestLayer(source, m, l, len(scan.Layers))
		if err != nil {
			return nil, nil, err
		}
		hl.Harvested, hl.Filters, hl.Dropped = true, e.Count, e.Dropped
		if e.Dropped > 0 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: node %s: dropped %d of %d filters that hold NaN or Inf",
				source, l.Label(), e.Dropped, e.Count+e.Dropped))
		}
		b.Entries = append(b.Entries, e)
		rep.Layers = append(rep.Layers, hl)
	}
	for k := range scan.Outside {
		l := &scan.Outside[k]
		rep.Layers = append(rep.Layers, HarvestedLayer{Layer: l, Reason: l.Skip})
	}
	return b, rep, nil
}

// harvestLayer reads one layer's filters and sums their moments.
func harvestLayer(source string, m *onnxio.Model, l *graphscan.Layer, D int) (*Entry, error) {
	kernel := make([]int, len(l.Kernel))
	for i, k := range l.Kernel {
		if k < 1 || k > inject.MaxTaps {
			return nil, fmt.Errorf("covtransfer: %s: node %s: kernel %v cannot be harvested",
				source, l.Label(), l.Kernel)
		}
		kernel[i] = int(k)
	}
	n := taps(kernel)
	if n < 1 || n > inject.MaxTaps {
		return nil, fmt.Errorf("covtransfer: %s: node %s: kernel %v has more than %d taps, too many for a covariance: %w",
			source, l.Label(), l.Kernel, inject.MaxTaps, inject.ErrTooManyTaps)
	}
	values, err := m.Values(l.Tensor)
	if err != nil {
		return nil, fmt.Errorf("covtransfer: %s: node %s: weight %q: %w", source, l.Label(), l.TensorName, err)
	}
	filters := l.Channels * l.Multiplier
	if filters < 1 || int64(len(values)) != filters*int64(n) {
		return nil, fmt.Errorf("covtransfer: %s: node %s: weight %q has %d values, not %d filters of %d taps",
			source, l.Label(), l.TensorName, len(values), filters, n)
	}

	e := &Entry{
		Source:     source,
		Node:       l.Label(),
		NodeIndex:  l.NodeIndex,
		Weight:     l.Weight,
		Tensor:     l.TensorName,
		DType:      onnxio.TypeName(l.Tensor.GetDataType()),
		Kernel:     kernel,
		Index:      l.Index,
		Layers:     D,
		Depth:      l.Depth,
		Stage:      l.Stage,
		Channels:   l.Channels,
		Multiplier: l.Multiplier,
		Sum:        make([]float64, n),
		Outer:      make([]float64, n*n),
	}
	for j := range int(filters) {
		f := values[j*n : (j+1)*n]
		if !allFinite(f) {
			e.Dropped++
			continue
		}
		e.Filters = append(e.Filters, f...)
		e.Count++
		addMoments(e.Sum, e.Outer, f)
	}
	e.derive()
	return e, nil
}

// addMoments adds f to the sum and the upper triangle of the outer product, mirrored.
func addMoments(sum, outer, f []float64) {
	n := len(f)
	for i, x := range f {
		sum[i] += x
		row := outer[i*n : (i+1)*n]
		for j := i; j < n; j++ {
			row[j] += x * f[j]
		}
		for j := 0; j < i; j++ {
			row[j] = outer[j*n+i]
		}
	}
}

func allFinite(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// Merge adds banks into one. Entries of the same layer (same source file and node) add their
// moments and join their filters; other entries are appended in order. So banks harvested
// from parts of a zoo merge into the bank of the whole zoo, in any grouping. Merge returns
// an error wrapping ErrBank when two entries of one layer disagree on its shape or place.
func Merge(banks ...*Bank) (*Bank, error) {
	out := &Bank{}
	models := map[string]int{}
	entries := map[[2]string]*Entry{}
	for _, b := range banks {
		for _, m := range b.Models {
			k, ok := models[m.Source]
			if !ok {
				models[m.Source] = len(out.Models)
				c := Model{Source: m.Source, Layers: m.Layers, NotHarvested: slices.Clone(m.NotHarvested)}
				out.Models = append(out.Models, c)
				continue
			}
			have := &out.Models[k]
			if have.Layers != m.Layers {
				return nil, fmt.Errorf("%w: model %s has %d depthwise layers in one bank and %d in another; were they harvested from different files of the same name?",
					ErrBank, m.Source, have.Layers, m.Layers)
			}
			for _, nh := range m.NotHarvested {
				if !slices.ContainsFunc(have.NotHarvested, func(x NotHarvested) bool { return x.Node == nh.Node }) {
					have.NotHarvested = append(have.NotHarvested, nh)
				}
			}
		}
		for _, e := range b.Entries {
			key := [2]string{e.Source, e.Node}
			have := entries[key]
			if have == nil {
				c := e.clone()
				entries[key] = c
				out.Entries = append(out.Entries, c)
				if _, ok := models[e.Source]; !ok {
					models[e.Source] = len(out.Models)
					out.Models = append(out.Models, Model{Source: e.Source, Layers: e.Layers})
				}
				continue
			}
			if err := have.add(e); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// add adds the moments and filters of another entry of the same layer.
func (e *Entry) add(o *Entry) error {
	if !slices.Equal(e.Kernel, o.Kernel) || e.Index != o.Index || e.Layers != o.Layers ||
		len(o.Sum) != len(e.Sum) || len(o.Outer) != len(e.Outer) {
		return fmt.Errorf("%w: layer %s of %s is layer %d of %d with kernel %s in one bank and layer %d of %d with kernel %s in another",
			ErrBank, e.Node, e.Source, e.Index, e.Layers, e.KernelString(), o.Index, o.Layers, o.KernelString())
	}
	keep := e.hasFilters() && o.hasFilters()
	e.Count += o.Count
	e.Dropped += o.Dropped
	for i, v := range o.Sum {
		e.Sum[i] += v
	}
	for i, v := range o.Outer {
		e.Outer[i] += v
	}
	if keep {
		e.Filters = append(e.Filters, o.Filters...)
	} else {
		e.Filters = nil // filters are kept only while every part has them
	}
	e.derive()
	return nil
}

func taps(kernel []int) int {
	n := 1
	for _, k := range kernel {
		if k < 1 || k > inject.MaxTaps || n > inject.MaxTaps/k {
			return 0
		}
		n *= k
	}
	return n
}

func kernelString(k []int) string {
	parts := make([]string, len(k))
	for i, v := range k {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, "x")
}
