package inject

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"runtime"
	"sync"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/onnxio"
)

// Distribution is what a layer's filters are drawn from: N(Mean, Projection.Cov) over the
// flattened kernel (row-major taps, the rearranged form).
type Distribution struct {
	Projection *Projection
	Mean       []float64 // nil for a zero mean
	Sigma      float64   // the closed form's σ; NaN for distributions of other kinds
	Note       string    // where the distribution came from, for reports
}

// Source gives each depthwise layer the distribution its filters are drawn from.
// [ClosedFormSource] is the paper's closed-form covariance; a harvested bank is another source.
// Distribution is called concurrently for different layers.
type Source interface {
	Distribution(l *graphscan.Layer) (*Distribution, error)
}

// ClosedFormSource is the Source of the closed-form covariance at σ(d) of a depth schedule.
type ClosedFormSource struct {
	Schedule Schedule
	// StageWise restarts d in each stage: d = (i_s-1)/(D_s-1) with i_s the layer's position
	// among the D_s layers of its stage. Experimental: one reading of the paper's
	// "sawtooth" schedule, which the paper does not define (ALGORITHM.md 3).
	StageWise bool
	// Cache holds the projections; nil means a private one.
	Cache *Cache

	once sync.Once
}

// LayerDepth is the d that the schedule is evaluated at for l.
func (c *ClosedFormSource) LayerDepth(l *graphscan.Layer) float64 {
	if c.StageWise {
		return Depth(l.StageIndex, l.StageSize)
	}
	return l.Depth
}

// Sigma returns σ(d) for layer l.
func (c *ClosedFormSource) Sigma(l *graphscan.Layer) float64 {
	return c.Schedule.Sigma(c.LayerDepth(l))
}

// Distribution returns the projected closed-form covariance at σ(d) for l's kernel.
func (c *ClosedFormSource) Distribution(l *graphscan.Layer) (*Distribution, error) {
	c.once.Do(func() {
		if c.Cache == nil {
			c.Cache = NewCache()
		}
	})
	sigma := c.Sigma(l)
	if !(sigma > 0) || math.IsInf(sigma, 0) {
		return nil, fmt.Errorf("inject: node %s: σ(d=%.4g) = %.4g; the schedule must keep σ positive (check --sigma0, --v, --a)",
			l.Label(), c.LayerDepth(l), sigma)
	}
	p, err := c.Cache.ClosedForm(intKernel(l.Kernel), sigma)
	if err != nil {
		return nil, fmt.Errorf("inject: node %s: %w", l.Label(), err)
	}
	return &Distribution{Projection: p, Sigma: sigma, Note: "closed form"}, nil
}

func intKernel(k []int64) []int {
	out := make([]int, len(k))
	for i, v := range k {
		out[i] = int(v)
	}
	return out
}

// Options control Apply. The zero value rewrites every layer it can with seed 0 and scale 1.
type Options struct {
	// Seed fixes the draws. Layer i draws from its own stream, seeded by (Seed, i), so the
	// result does not depend on which other layers are rewritten or on scheduling.
	Seed uint64
	// Scale multiplies every sampled filter (so the covariance by Scale²); 0 means 1.
	Scale float64
	// Only, when set, restricts the rewrite to layers whose node name, weight name or
	// source tensor name it matches.
	Only *regexp.Regexp
	// Workers bounds the goroutines that compute distributions and draw filters;
	// <= 0 means GOMAXPROCS. The output does not depend on it.
	Workers int
}

// Actions of a layer in a Report.
const (
	ActionRewrite = "rewrite"
	ActionSkip    = "skip"
)

// LayerReport says what Apply did with one depthwise layer.
type LayerReport struct {
	Layer   *graphscan.Layer
	Action  string  // ActionRewrite or ActionSkip
	Reason  string  // why it was skipped
	Sigma   float64 // σ of the closed form for the layer, NaN when not closed-form
	Filters int     // number of filters written
	Note    string  // the distribution's source
}

// Report lists every depthwise layer of the model: the main graph's in order, then those
// outside it.
type Report struct {
	Layers    []LayerReport
	Rewritten int
}

// Apply draws new filters for every rewritable depthwise layer of scan from src and writes
// them into m with SetValues. Layers that scan marked skipped, and layers that opts.Only
// does not select, keep their weights. Nothing is written to disk; call m.Save.
func Apply(m *onnxio.Model, scan *graphscan.Result, src Source, opts Options) (*Report, error) {
	scale := opts.Scale
	if scale == 0 {
		scale = 1
	}
	if math.IsNaN(scale) || math.IsInf(scale, 0) {
		return nil, fmt.Errorf("inject: scale %v is not a finite number", scale)
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}

	rep := &Report{}
	var todo []int // indices into rep.Layers
	for k := range scan.Layers {
		l := &scan.Layers[k]
		lr := LayerReport{Layer: l, Action: ActionSkip, Reason: l.Skip, Sigma: math.NaN()}
		if cf, ok := src.(*ClosedFormSource); ok {
			lr.Sigma = cf.Sigma(l)
		}
		if l.Rewritable() {
			if !Selects(opts.Only, l) {
				lr.Reason = fmt.Sprintf("not selected by --only %q", opts.Only.String())
			} else {
				lr.Action, lr.Reason = ActionRewrite, ""
				todo = append(todo, len(rep.Layers))
			}
		}
		rep.Layers = append(rep.Layers, lr)
	}
	for k := range scan.Outside {
		l := &scan.Outside[k]
		rep.Layers = append(rep.Layers, LayerReport{Layer: l, Action: ActionSkip, Reason: l.Skip, Sigma: math.NaN()})
	}

	// Draw every layer's filters in parallel; each layer has its own random stream.
	samples := make([][]float64, len(rep.Layers))
	errs := make([]error, len(rep.Layers))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, max(len(todo), 1)) {
		wg.Go(func() {
			for k := range jobs {
				samples[k], errs[k] = draw(&rep.Layers[k], src, opts.Seed, scale)
			}
		})
	}
	for _, k := range todo {
		jobs <- k
	}
	close(jobs)
	wg.Wait()

	// Write them into the model, in layer order, once every layer has its filters, so that
	// a failed Apply changes nothing.
	for _, k := range todo {
		if errs[k] != nil && !errors.Is(errs[k], ErrTooManyTaps) {
			return nil, errs[k]
		}
	}
	for _, k := range todo {
		lr := &rep.Layers[k]
		if errs[k] != nil {
			lr.Action, lr.Reason = ActionSkip, fmt.Sprintf("kernel %v has more than %d taps, too many for a covariance", lr.Layer.Kernel, MaxTaps)
			continue
		}
		if err := m.SetValues(lr.Layer.Tensor, samples[k]); err != nil {
			for _, done := range todo {
				m.Discard(rep.Layers[done].Layer.Tensor)
			}
			return nil, fmt.Errorf("inject: node %s: weight %q: %w", lr.Layer.Label(), lr.Layer.TensorName, err)
		}
		rep.Rewritten++
	}
	return rep, nil
}

// Selects reports whether the --only expression re selects layer l: it matches the node's
// name, the weight's name or the source tensor's name. A nil re selects every layer.
func Selects(re *regexp.Regexp, l *graphscan.Layer) bool {
	return re == nil || re.MatchString(l.Name) || re.MatchString(l.Weight) || re.MatchString(l.TensorName)
}

// draw samples the filters of one layer.
func draw(lr *LayerReport, src Source, seed uint64, scale float64) ([]float64, error) {
	l := lr.Layer
	dist, err := src.Distribution(l)
	if err != nil {
		return nil, err
	}
	taps := 1
	for _, k := range l.Kernel {
		taps *= int(k)
	}
	n, _ := dist.Projection.Factor.Dims()
	if n != taps {
		return nil, fmt.Errorf("inject: node %s: distribution has %d taps, kernel %v has %d", l.Label(), n, l.Kernel, taps)
	}
	count := int(l.Channels * l.Multiplier)
	out := make([]float64, count*taps)
	rng := rand.New(rand.NewPCG(seed, uint64(l.Index)))
	if err := dist.Projection.Sample(out, count, dist.Mean, rng); err != nil {
		return nil, fmt.Errorf("inject: node %s: %w", l.Label(), err)
	}
	if scale != 1 {
		for i := range out {
			out[i] *= scale
		}
	}
	lr.Filters = count
	lr.Note = dist.Note
	if !math.IsNaN(dist.Sigma) {
		lr.Sigma = dist.Sigma
	}
	return out, nil
}
