package covtransfer

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"gonum.org/v1/gonum/mat"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
)

// ErrKernel means the bank cannot give a distribution for a layer's kernel shape.
var ErrKernel = errors.New("no transfer for this kernel shape")

// Options control a Source. The zero value interpolates endpoint-aligned over depth and
// samples with a zero mean from the full covariance.
type Options struct {
	// Align lines layers up over depth, and blocks over a filter-size transfer:
	// AlignCorners (the default) or AlignCentres.
	Align Align
	// WithMean samples N(µ, Σ) with the bank's interpolated mean, as the paper's section 2
	// does; otherwise the mean is zero.
	WithMean bool
	// Kronecker replaces Σ by its nearest Kronecker square A⊗A (ALGORITHM.md 4.5).
	Kronecker bool
	// Layers is D, the number of depthwise layers of the target model's main graph.
	// AlignCentres needs it: layer i of D sits at relative depth (i−0.5)/D.
	Layers int
}

// Source gives each depthwise layer of a target model a distribution from a bank: it is an
// [inject.Source]. It is safe for concurrent use, and computes each distribution once.
//
// # Which layers are used
//
// The bank's layers with at least 2 filters are grouped by kernel shape. Within a group each
// layer has a relative depth: d = (i−1)/(D−1) in its own model (AlignCorners), or the cell
// centre (i−0.5)/D (AlignCentres). Layers at equal depth, which happens when the bank
// holds several models, are averaged with equal weights: their covariances and their means.
// A target layer at depth d then gets the linear interpolation between the two nearest
// depths of the group, and the first or last one beyond them.
//
// For a bank of one model with D_in layers this is ALGORITHM.md 4.3 exactly: the depths are
// j/(D_in−1), so target layer t of D_out at d = t/(D_out−1) lies between layers
// j = floor(x) and j+1 with weight w = d·(D_in−1) − j = x − j for x = t·(D_in−1)/(D_out−1);
// and likewise for the cell centres. The tests check this against the goldens.
//
// # Kernel shapes
//
// A layer whose kernel shape the bank holds uses that group. A square 2-D kernel the bank
// lacks is transferred from the bank's square 2-D group of the nearest size (the larger on a
// tie, so that clipping keeps measured values rather than padding invents them): its
// interpolated covariance is resized by ALGORITHM.md 4.4 (ResizeKernel), then symmetrized
// and projected to PSD. Other shapes are refused with an error wrapping [ErrKernel].
type Source struct {
	opts    Options
	groups  map[string]*group
	squares []int // k of the square 2-D groups, ascending
	kernels []string

	mu    sync.Mutex
	cache map[distKey]*distEntry
}

// group is the bank's layers of one kernel shape, as knots over depth.
type group struct {
	kernel []int
	pos    []float64 // ascending relative depths
	covs   []*mat.SymDense
	means  [][]float64
	layers int
	models int
}

type distKey struct {
	kernel string
	pos    uint64
}

type distEntry struct {
	once sync.Once
	dist *inject.Distribution
	cov  mat.Matrix
	mean []float64
	note string
	err  error
}

// NewSource prepares the bank's layers for transfer with opts. It fails when the bank has no
// layer with 2 or more filters, or when AlignCentres is asked for without opts.Layers.
func NewSource(b *Bank, opts Options) (*Source, error) {
	if opts.Align != AlignCorners && opts.Align != AlignCentres {
		return nil, fmt.Errorf("covtransfer: align %d is not known", opts.Align)
	}
	if opts.Align == AlignCentres && opts.Layers < 1 {
		return nil, errors.New("covtransfer: AlignCentres needs the target's number of depthwise layers (Options.Layers)")
	}
	s := &Source{opts: opts, groups: map[string]*group{}, cache: map[distKey]*distEntry{}}

	// Collect the layers of each kernel shape at each depth.
	type knot struct {
		covs    []*mat.SymDense
		means   [][]float64
		sources []string
	}
	knots := map[string]map[float64]*knot{}
	for _, e := range b.Entries {
		if e.Cov() == nil {
			continue
		}
		ks := e.KernelString()
		g := s.groups[ks]
		if g == nil {
			g = &group{kernel: slices.Clone(e.Kernel)}
			s.groups[ks] = g
			knots[ks] = map[float64]*knot{}
			s.kernels = append(s.kernels, ks)
		}
		p := position(e.Index, e.Layers, opts.Align)
		kn := knots[ks][p]
		if kn == nil {
			kn = &knot{}
			knots[ks][p] = kn
			g.pos = append(g.pos, p)
		}
		kn.covs = append(kn.covs, e.Cov())
		kn.means = append(kn.means, e.Mean())
		kn.sources = append(kn.sources, e.Source)
		g.layers++
	}
	if len(s.groups) == 0 {
		return nil, fmt.Errorf("covtransfer: the bank has %w: nothing to transfer", errNoCovariance)
	}

	// Average each depth's layers with equal weights.
	for ks, g := range s.groups {
		sort.Float64s(g.pos)
		models := map[string]bool{}
		for _, p := range g.pos {
			kn := knots[ks][p]
			g.covs = append(g.covs, meanSym(kn.covs))
			g.means = append(g.means, meanVec(kn.means))
			for _, src := range kn.sources {
				models[src] = true
			}
		}
		g.models = len(models)
		if len(g.kernel) == 2 && g.kernel[0] == g.kernel[1] {
			s.squares = append(s.squares, g.kernel[0])
		}
	}
	slices.Sort(s.squares)
	return s, nil
}

// position is the relative depth of layer i (1-based) of D under align.
func position(i, D int, align Align) float64 {
	if align == AlignCentres {
		return (float64(i) - 0.5) / float64(D)
	}
	return inject.Depth(i, D)
}

// knotWeights finds the depth pos among the ascending knots: the target is
// (1−w)·knot[j0] + w·knot[j1], clamped to the first and last knot.
func knotWeights(knots []float64, pos float64) (j0, j1 int, w float64) {
	k := len(knots)
	switch {
	case pos <= knots[0]:
		return 0, min(1, k-1), 0
	case pos >= knots[k-1]:
		return k - 1, k - 1, 0
	}
	j := sort.SearchFloat64s(knots, pos) // the first knot >= pos; 0 < j < k
	if knots[j] == pos {
		return j, j + 1, 0
	}
	return j - 1, j, (pos - knots[j-1]) / (knots[j] - knots[j-1])
}

// at interpolates the group at depth pos.
func (g *group) at(pos float64) (*mat.SymDense, []float64) {
	j0, j1, w := knotWeights(g.pos, pos)
	return lerpSym(g.covs[j0], g.covs[j1], w), lerpVec(g.means[j0], g.means[j1], w)
}

func (g *group) describe() string {
	s := fmt.Sprintf("depth interpolation of %d layers", g.layers)
	if g.layers == 1 {
		s = "its one layer"
	}
	if g.models > 1 {
		s += fmt.Sprintf(" of %d models", g.models)
	}
	return s + " (" + kernelString(g.kernel) + ")"
}

// Distribution returns the distribution of layer l's filters: the bank's covariance for its
// depth and kernel, projected to PSD, with the mean when Options.WithMean is set. Sigma is
// NaN; Note says how the covariance was made.
func (s *Source) Distribution(l *graphscan.Layer) (*inject.Distribution, error) {
	e, err := s.entry(l)
	if err != nil {
		return nil, err
	}
	return e.dist, nil
}

// Covariance returns the matrix that Distribution projects for layer l (interpolated, and
// resized and Kronecker-factored as the options and kernel ask; a resized one is not
// symmetric), the mean (nil unless Options.WithMean), and a note on how they were made.
func (s *Source) Covariance(l *graphscan.Layer) (mat.Matrix, []float64, string, error) {
	e, err := s.entry(l)
	if err != nil {
		return nil, nil, "", err
	}
	return e.cov, e.mean, e.note, nil
}

// entry computes, once, what the source gives layer l.
func (s *Source) entry(l *graphscan.Layer) (*distEntry, error) {
	if l.Index < 1 || len(l.Kernel) == 0 {
		return nil, fmt.Errorf("covtransfer: node %s: not a depthwise layer of the main graph with a known kernel",
			l.Label())
	}
	if s.opts.Align == AlignCentres && l.Index > s.opts.Layers {
		return nil, fmt.Errorf("covtransfer: node %s: layer %d of a model said to have %d depthwise layers",
			l.Label(), l.Index, s.opts.Layers)
	}
	kernel := make([]int, len(l.Kernel))
	for i, k := range l.Kernel {
		if k < 1 || k > inject.MaxTaps {
			return nil, fmt.Errorf("covtransfer: node %s: kernel %v: %w", l.Label(), l.Kernel, ErrKernel)
		}
		kernel[i] = int(k)
	}
	pos := l.Depth
	if s.opts.Align == AlignCentres {
		pos = position(l.Index, s.opts.Layers, AlignCentres)
	}
	key := distKey{kernel: kernelString(kernel), pos: math.Float64bits(pos)}
	s.mu.Lock()
	e := s.cache[key]
	if e == nil {
		e = &distEntry{}
		s.cache[key] = e
	}
	s.mu.Unlock()
	e.once.Do(func() { s.compute(e, l, kernel, pos) })
	return e, e.err
}

// compute fills e for the first layer that asked for its kernel and depth.
func (s *Source) compute(e *distEntry, l *graphscan.Layer, kernel []int, pos float64) {
	ks := kernelString(kernel)
	fail := func(format string, args ...any) {
		e.err = fmt.Errorf("covtransfer: node %s: kernel %s: "+format, append([]any{l.Label(), ks}, args...)...)
	}

	// The covariance for the kernel at this depth: the same shape, or a filter-size transfer.
	var cov mat.Matrix
	var mean []float64
	square := len(kernel) == 2 && kernel[0] == kernel[1]
	if g := s.groups[ks]; g != nil {
		c, m := g.at(pos)
		cov, mean, e.note = c, m, "bank: "+g.describe()
	} else {
		if !square || len(s.squares) == 0 {
			fail("the bank has no %s layers, and filter-size transfer (ALGORITHM.md 4.4) needs square 2-D kernels on both sides; the bank's kernels are %s: %w",
				ks, strings.Join(s.kernels, ", "), ErrKernel)
			return
		}
		kt, k := kernel[0], s.nearestSquare(kernel[0])
		g := s.groups[kernelString([]int{k, k})]
		c, m := g.at(pos)
		r, err := ResizeKernel(c, k, kt, s.opts.Align)
		if err != nil {
			fail("%w", err)
			return
		}
		cov, mean = r, resizeMean(m, k, kt)
		e.note = fmt.Sprintf("bank: %dx%d to %dx%d filter-size transfer of %s", k, k, kt, kt, g.describe())
	}

	// The Kronecker square, of a PSD factor.
	if s.opts.Kronecker {
		if !square {
			fail("the Kronecker factorization (ALGORITHM.md 4.5) needs a square 2-D kernel: %w", ErrKernel)
			return
		}
		a, err := Kronecker(cov, kernel[0])
		if err != nil {
			fail("%w", err)
			return
		}
		pa, err := inject.Project(a)
		if err != nil {
			fail("%w", err)
			return
		}
		cov = kron(pa.Cov)
		e.note += ", Kronecker factor A⊗A"
	}
	if !s.opts.WithMean {
		mean = nil
	} else {
		e.note += ", with mean"
	}

	p, err := inject.Project(cov)
	if err != nil {
		fail("%w", err)
		return
	}
	e.cov, e.mean = cov, mean
	e.dist = &inject.Distribution{Projection: p, Mean: mean, Sigma: math.NaN(), Note: e.note}
}

// nearestSquare returns the bank's square kernel size nearest kt, the larger on a tie.
func (s *Source) nearestSquare(kt int) int {
	best := s.squares[0]
	for _, k := range s.squares[1:] {
		if d, bd := abs(k-kt), abs(best-kt); d < bd || (d == bd && k > best) {
			best = k
		}
	}
	return best
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// Kernels returns the kernel shapes the source holds layers of, such as "9x9".
func (s *Source) Kernels() []string { return slices.Clone(s.kernels) }

// meanSym returns the equal-weight average of covs.
func meanSym(covs []*mat.SymDense) *mat.SymDense {
	if len(covs) == 1 {
		return covs[0]
	}
	n := covs[0].SymmetricDim()
	out := mat.NewSymDense(n, nil)
	ro := out.RawSymmetric()
	for _, c := range covs {
		rc := c.RawSymmetric()
		for i := range n {
			for j := i; j < n; j++ {
				ro.Data[i*ro.Stride+j] += rc.Data[i*rc.Stride+j]
			}
		}
	}
	out.ScaleSym(1/float64(len(covs)), out)
	return out
}

// meanVec returns the equal-weight average of vs.
func meanVec(vs [][]float64) []float64 {
	if len(vs) == 1 {
		return vs[0]
	}
	out := make([]float64, len(vs[0]))
	for _, v := range vs {
		for i, x := range v {
			out[i] += x
		}
	}
	for i := range out {
		out[i] /= float64(len(vs))
	}
	return out
}

// DescribeOptions says in words what o does, for reports.
func DescribeOptions(o Options) string {
	parts := []string{"depth " + o.Align.String()}
	if o.WithMean {
		parts = append(parts, "with mean")
	} else {
		parts = append(parts, "zero mean")
	}
	if o.Kronecker {
		parts = append(parts, "Kronecker factor")
	}
	return strings.Join(parts, ", ")
}

var _ inject.Source = (*Source)(nil)
