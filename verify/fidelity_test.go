package verify

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
)

// Seeded trials per setting. Issue 3 asks that filters drawn from the target pass in at
// least 99% of 200; uniform noise is flagged with a wide margin except in the known gap, so
// fewer trials show it, and keep the tests short under the race detector.
const (
	fidelityTrials = 200
	uniformTrials  = 50
)

// The kernels, σ values (the presets' range, from cifar-patch2's σ0 = 0.08 to fig6's
// σ(1) = 2.5) and filter counts the tests draw from. Checking 9x9 filters costs 50 times
// what 3x3 ones do, so 9x9 takes the two ends of the default preset's range, which the
// ConvMixer's layers span; its other σ values behave alike (measured over 4000 trials).
var (
	fidelityKernels = [][]int{{3, 3}, {5, 5}, {9, 9}}
	fidelitySigmas  = map[int][]float64{
		3: {0.08, 0.15, 0.5, 0.9, 2.5},
		5: {0.08, 0.15, 0.5, 0.9, 2.5},
		9: {0.15, 0.9},
	}
	fidelityCounts = []int{8, 24, 64, 256}
)

// checkRate fails t when rate is below 0.99.
func checkRate(t *testing.T, what string, hits, trials int, detail string) {
	t.Helper()
	rate := float64(hits) / float64(trials)
	result := fmt.Sprintf("%s in %d of %d trials (%.1f%%)", what, hits, trials, 100*rate)
	if rate < 0.99 {
		t.Errorf("%s, want >= 99%%%s", result, detail)
		return
	}
	t.Log(result)
}

// fidelityTarget returns the projected closed-form covariance of kernel at sigma, to draw
// from, and the same distribution as verify's Target, to check against.
func fidelityTarget(t testing.TB, kernel []int, sigma float64) (*inject.Projection, *Target) {
	t.Helper()
	r, err := inject.ClosedForm(kernel, sigma)
	if err != nil {
		t.Fatal(err)
	}
	p, err := inject.Project(r)
	if err != nil {
		t.Fatal(err)
	}
	return p, TargetOf(p.Cov, p.Factor, nil, 1)
}

// check is CheckFidelity at the level of a model with one layer, for float32 filters.
func check(filters []float64, count int, target *Target) (Fidelity, error) {
	return CheckFidelity(filters, count, target, Roundoff(onnxio.Float), DefaultLevel)
}

func kernelName(kernel []int) string {
	s := make([]string, len(kernel))
	for i, k := range kernel {
		s[i] = fmt.Sprint(k)
	}
	return strings.Join(s, "x")
}

// fidelitySetting is one kernel, σ and filter count, with its target.
type fidelitySetting struct {
	kernel, sigma string
	count         int
	k, n          int // the kernel's side, and its taps
	p             *inject.Projection
	target        *Target
	stream        uint64 // the setting's own seed stream
}

// forEachSetting runs f as a parallel subtest for every kernel, σ and count.
func forEachSetting(t *testing.T, counts []int, f func(t *testing.T, s fidelitySetting)) {
	stream := uint64(0)
	for _, kernel := range fidelityKernels {
		for _, sigma := range fidelitySigmas[kernel[0]] {
			p, target := fidelityTarget(t, kernel, sigma)
			for _, count := range counts {
				stream++
				s := fidelitySetting{
					kernel: kernelName(kernel),
					sigma:  fmt.Sprint(sigma),
					count:  count,
					k:      kernel[0],
					n:      kernel[0] * kernel[1],
					p:      p,
					target: target,
					stream: stream,
				}
				t.Run(fmt.Sprintf("%s/σ=%s/H=%d", s.kernel, s.sigma, count), func(t *testing.T) {
					t.Parallel()
					f(t, s)
				})
			}
		}
	}
}

// TestFidelityTargetDraws checks that filters drawn from the target pass: false alarms in at
// most 1% of the trials of each setting.
func TestFidelityTargetDraws(t *testing.T) {
	t.Parallel()
	forEachSetting(t, fidelityCounts, func(t *testing.T, s fidelitySetting) {
		filters := make([]float64, s.count*s.n)
		var alarms []string
		for trial := range fidelityTrials {
			rng := rand.New(rand.NewPCG(uint64(trial), s.stream))
			if err := s.p.Sample(filters, s.count, nil, rng); err != nil {
				t.Fatal(err)
			}
			f, err := check(filters, s.count, s.target)
			if err != nil {
				t.Fatal(err)
			}
			if f.Filters != s.count || f.Taps != s.n {
				t.Fatalf("Filters, Taps = %d, %d, want %d, %d", f.Filters, f.Taps, s.count, s.n)
			}
			if !f.OK {
				alarms = append(alarms, fmt.Sprintf("trial %d: %s", trial, f.Problem))
			}
		}
		checkRate(t, "filters drawn from the target passed",
			fidelityTrials-len(alarms), fidelityTrials, ":\n"+strings.Join(alarms, "\n"))
	})
}

// TestFidelityDetectsWrongFilters checks that filters from the wrong distribution fail from
// 24 filters on: all zeros, and uniform noise U(−1/k, 1/k), PyTorch's default depthwise
// initialization, in at least 99% of the trials.
func TestFidelityDetectsWrongFilters(t *testing.T) {
	t.Parallel()
	forEachSetting(t, fidelityCounts[1:], func(t *testing.T, s fidelitySetting) {
		filters := make([]float64, s.count*s.n)
		f, err := check(filters, s.count, s.target)
		if err != nil {
			t.Fatal(err)
		}
		if f.OK || f.Problem == "" {
			t.Errorf("all-zero filters: OK = %v, problem %q; want flagged", f.OK, f.Problem)
		}

		flagged := 0
		for trial := range uniformTrials {
			rng := rand.New(rand.NewPCG(uint64(trial), s.stream))
			for i := range filters {
				filters[i] = (2*rng.Float64() - 1) / float64(s.k)
			}
			f, err := check(filters, s.count, s.target)
			if err != nil {
				t.Fatal(err)
			}
			if !f.OK {
				flagged++
			}
		}
		what := fmt.Sprintf("uniform noise U(-1/%d, 1/%d) flagged", s.k, s.k)
		checkRate(t, what, flagged, uniformTrials, "")
	})
}

func TestFidelityMean(t *testing.T) {
	t.Parallel()
	const count = 256
	p, target := fidelityTarget(t, []int{5, 5}, 0.5)
	n := 25
	mean := make([]float64, n)
	for i := range mean {
		mean[i] = math.Sqrt(target.Cov[i*n+i]) // one standard deviation: 16 standard errors at 256 filters
	}
	filters := make([]float64, count*n)
	if err := p.Sample(filters, count, mean, rand.New(rand.NewPCG(1, 2))); err != nil {
		t.Fatal(err)
	}
	f, err := check(filters, count, TargetOf(p.Cov, p.Factor, mean, 1))
	if err != nil || !f.OK {
		t.Errorf("filters drawn with the mean they are checked against: %+v, %v; want OK", f, err)
	}
	f, err = check(filters, count, target)
	if err != nil || f.OK || !strings.Contains(f.Problem, "mean") {
		t.Errorf("filters drawn with a mean, checked against zero: %+v, %v; want a problem with "+
			"the mean", f, err)
	}
}

// TestFidelityScale checks that filters drawn at twice the target's scale fail.
func TestFidelityScale(t *testing.T) {
	t.Parallel()
	const count = 64
	p, target := fidelityTarget(t, []int{9, 9}, 0.9)
	filters := make([]float64, count*81)
	if err := p.Sample(filters, count, nil, rand.New(rand.NewPCG(3, 4))); err != nil {
		t.Fatal(err)
	}
	if f, _ := check(filters, count, TargetOf(p.Cov, p.Factor, nil, 1)); !f.OK {
		t.Fatalf("filters drawn from the target: %s", f.Problem)
	}
	for i := range filters {
		filters[i] *= 2
	}
	if f, _ := check(filters, count, target); f.OK {
		t.Errorf("filters at twice the scale passed: %+v", f)
	}
}

// TestFidelityOutside checks that energy in the directions Σ leaves out is flagged: filters
// from the unprojected identity have it, for a 9x9 target with many clipped eigenvalues.
func TestFidelityOutside(t *testing.T) {
	t.Parallel()
	const count = 64
	_, target := fidelityTarget(t, []int{9, 9}, 1.9)
	rng := rand.New(rand.NewPCG(5, 6))
	filters := make([]float64, count*81)
	for i := range filters {
		filters[i] = 0.2 * rng.NormFloat64()
	}
	f, err := check(filters, count, target)
	if err != nil {
		t.Fatal(err)
	}
	if f.OK || f.Directions >= 81 {
		t.Errorf("white noise against a rank-deficient target: %+v; want flagged", f)
	}
}

func TestFidelityNotFinite(t *testing.T) {
	t.Parallel()
	p, target := fidelityTarget(t, []int{3, 3}, 0.5)
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		filters := make([]float64, 64*9)
		if err := p.Sample(filters, 64, nil, rand.New(rand.NewPCG(1, 2))); err != nil {
			t.Fatal(err)
		}
		filters[100] = bad
		f, err := check(filters, 64, target)
		if err != nil {
			t.Fatal(err)
		}
		if f.OK || !strings.Contains(f.Problem, "NaN or Inf") {
			t.Errorf("filters holding %v: OK = %v, problem %q; want flagged as NaN or Inf",
				bad, f.OK, f.Problem)
		}
	}
	one := &Target{Cov: []float64{1}, Factor: []float64{1}}
	f, err := check([]float64{math.NaN()}, 1, one)
	if err != nil || f.OK {
		t.Errorf("a single NaN filter: %+v, %v; want flagged: too few filters to judge the "+
			"distribution is no reason to pass NaN", f, err)
	}
}

// TestFidelityFewFilters: one filter cannot be judged; three zero filters can, since no
// draw from the target has zero variance in every direction.
func TestFidelityFewFilters(t *testing.T) {
	t.Parallel()
	_, target := fidelityTarget(t, []int{3, 3}, 0.5)
	f, err := check(make([]float64, 9), 1, target)
	if err != nil || !f.OK || f.Problem != "" {
		t.Errorf("1 zero filter: %+v, %v; want OK with no problem: one filter cannot be judged", f, err)
	}
	f, err = check(make([]float64, 3*9), 3, target)
	if err != nil || f.OK {
		t.Errorf("3 zero filters: %+v, %v; want flagged", f, err)
	}
}

func TestFidelityErrors(t *testing.T) {
	t.Parallel()
	eye := func(n int) *Target {
		c := make([]float64, n*n)
		for i := range n {
			c[i*n+i] = 1
		}
		return &Target{Cov: c, Factor: c}
	}
	tests := []struct {
		name    string
		filters []float64
		count   int
		target  *Target
		wantErr string
	}{
		{name: "no filters", filters: make([]float64, 9), count: 0, target: eye(9), wantErr: "do not make 0 filters"},
		{name: "negative count", filters: make([]float64, 9), count: -1, target: eye(9), wantErr: "do not make -1 filters"},
		{name: "values do not divide", filters: make([]float64, 10), count: 3, target: eye(3), wantErr: "10 values do not make 3 filters"},
		{name: "target of another kernel", filters: make([]float64, 8*9), count: 8, target: eye(3), wantErr: "filters of 9 taps"},
		{name: "mean of another kernel", filters: make([]float64, 8*9), count: 8,
			target: &Target{Cov: eye(9).Cov, Factor: eye(9).Factor, Mean: make([]float64, 4)}, wantErr: "filters of 9 taps"},
		{name: "no factor", filters: make([]float64, 8*9), count: 8, target: &Target{Cov: eye(9).Cov}, wantErr: "filters of 9 taps"},
		{name: "no target", filters: make([]float64, 8*9), count: 8, wantErr: "filters of 9 taps"},
		{name: "zero covariance", filters: make([]float64, 8*9), count: 8,
			target: &Target{Cov: make([]float64, 81), Factor: make([]float64, 81)}, wantErr: "covariance is zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := check(tt.filters, tt.count, tt.target)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckFidelity = %+v, %v; want an error containing %q", f, err, tt.wantErr)
			}
		})
	}
}
