package covtransfer

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
)

// rounding bounds the differences between two float64 evaluations of the same few-term
// linear combinations of entries below 10: a few ulps of 10.
const rounding = 1e-13

// randomCov returns a random PSD n×n matrix, G·Gᵀ/n.
func randomCov(rng *rand.Rand, n int) *mat.SymDense {
	g := mat.NewDense(n, n, nil)
	for i := range n {
		for j := range n {
			g.Set(i, j, rng.NormFloat64())
		}
	}
	s := mat.NewSymDense(n, nil)
	s.SymOuterK(1/float64(n), g)
	return s
}

// synthEntry is an entry of layer i of D whose covariance is cov (count 2, sum 0, outer
// cov gives cov exactly) and whose mean is mean·2/2.
func synthEntry(source string, i, D int, kernel []int, cov *mat.SymDense) *Entry {
	n := cov.SymmetricDim()
	e := &Entry{Source: source, Node: fmt.Sprint("n", i), Kernel: kernel, Index: i, Layers: D, Depth: inject.Depth(i, D),
		Count: 2, Sum: make([]float64, n), Outer: make([]float64, n*n)}
	for p := range n {
		e.Sum[p] = float64(i) // mean i/2 at every tap
	}
	for p := range n {
		for q := range n {
			e.Outer[p*n+q] = cov.At(p, q) + e.Sum[p]*e.Sum[q]/2
		}
	}
	e.derive()
	return e
}

func layerAt(name string, i, D int, kernel ...int64) *graphscan.Layer {
	return &graphscan.Layer{Name: name, Index: i, Depth: inject.Depth(i, D), Kernel: kernel, Channels: 8, Multiplier: 1}
}

func checkSym(t *testing.T, what string, got mat.Matrix, want mat.Matrix, tol float64) {
	t.Helper()
	r, _ := want.Dims()
	rows := make([][]float64, r)
	for i := range rows {
		rows[i] = make([]float64, r)
		for j := range rows[i] {
			rows[i][j] = want.At(i, j)
		}
	}
	checkClose(t, what, got, rows, tol)
}

// TestSeveralModels checks the rule for a bank of several models: per kernel shape, layers at
// equal relative depth are averaged with equal weights, then the target depth is
// interpolated linearly between the nearest depths.
func TestSeveralModels(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(4, 2))
	k3 := []int{3, 3}
	a := make([]*mat.SymDense, 3) // model A: D = 3, depths 0, .5, 1
	b := make([]*mat.SymDense, 5) // model B: D = 5, depths 0, .25, .5, .75, 1
	bank := &Bank{Models: []Model{{Source: "A", Layers: 3}, {Source: "B", Layers: 5}}}
	for i := range a {
		a[i] = randomCov(rng, 9)
		bank.Entries = append(bank.Entries, synthEntry("A", i+1, 3, k3, a[i]))
	}
	for i := range b {
		b[i] = randomCov(rng, 9)
		bank.Entries = append(bank.Entries, synthEntry("B", i+1, 5, k3, b[i]))
	}
	avg := func(x, y *mat.SymDense) *mat.SymDense {
		s := mat.NewSymDense(9, nil)
		s.AddSym(x, y)
		s.ScaleSym(0.5, s)
		return s
	}
	mix := func(x, y *mat.SymDense, w float64) *mat.SymDense { return lerpSym(x, y, w) }
	src, err := NewSource(bank, Options{WithMean: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		i, D     int
		want     *mat.SymDense
		wantMean float64 // at every tap
	}{
		{1, 9, avg(a[0], b[0]), (1 + 1) / 2.0 / 2}, // d = 0: both models' first layers
		{3, 9, b[1], 1}, // d = .25: B's second layer alone
		{4, 9, mix(b[1], avg(a[1], b[2]), 0.5), 0.5*1 + 0.5*(1+1.5)/2},   // d = .375: halfway to d = .5
		{5, 9, avg(a[1], b[2]), (1 + 1.5) / 2},                           // d = .5
		{9, 9, avg(a[2], b[4]), (1.5 + 2.5) / 2},                         // d = 1
		{2, 3, avg(a[1], b[2]), (1 + 1.5) / 2},                           // another target depth
		{1, 1, avg(a[0], b[0]), 0.5},                                     // D = 1: d = 0
		{2, 5, b[1], 1},                                                  // d = .25 from D = 5
		{6, 9, mix(avg(a[1], b[2]), b[3], 0.5), 0.5*1.25 + 0.5*2},        // d = .625
		{7, 9, b[3], 2},                                                  // d = .75
		{8, 9, mix(b[3], avg(a[2], b[4]), 0.5), 0.5*2 + 0.5*(1.5+2.5)/2}, // d = .875
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d_of_%d", tc.i, tc.D), func(t *testing.T) {
			t.Parallel()
			cov, mean, note, err := src.Covariance(layerAt("x", tc.i, tc.D, 3, 3))
			if err != nil {
				t.Fatal(err)
			}
			checkSym(t, "cov", cov, tc.want, rounding)
			for p, m := range mean {
				if math.Abs(m-tc.wantMean) > rounding {
					t.Fatalf("mean[%d] = %g, want %g", p, m, tc.wantMean)
				}
			}
			if want := "bank: depth interpolation of 8 layers of 2 models (3x3), with mean"; note != want {
				t.Errorf("note %q, want %q", note, want)
			}
		})
	}
}

// TestFilterSize: a kernel the bank lacks comes from the nearest square size by 4.4.
func TestFilterSize(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 9))
	bank := &Bank{Models: []Model{{Source: "m", Layers: 4}}}
	for i, k := range []int{3, 3, 7, 9} {
		bank.Entries = append(bank.Entries, synthEntry("m", i+1, 4, []int{k, k}, randomCov(rng, k*k)))
	}
	src, err := NewSource(bank, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kt, from int
		layer    int // of 4
	}{
		{5, 7, 2}, // 3 and 7 are both 2 away: the larger
		{8, 9, 3}, // 7 and 9: the larger
		{11, 9, 4},
		{1, 3, 1},
		{4, 3, 1},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d_from_%d", tc.kt, tc.from), func(t *testing.T) {
			t.Parallel()
			l := layerAt("x", tc.layer, 4, int64(tc.kt), int64(tc.kt))
			got, _, note, err := src.Covariance(l)
			if err != nil {
				t.Fatal(err)
			}
			g := src.groups[kernelString([]int{tc.from, tc.from})]
			c, _ := g.at(l.Depth)
			want, err := ResizeKernel(c, tc.from, tc.kt, AlignCorners)
			if err != nil {
				t.Fatal(err)
			}
			checkSym(t, "cov", got, want, 0)
			if w := fmt.Sprintf("bank: %dx%d to %dx%d filter-size transfer", tc.from, tc.from, tc.kt, tc.kt); !strings.HasPrefix(note, w) {
				t.Errorf("note %q, want it to start %q", note, w)
			}
			d, err := src.Distribution(l)
			if err != nil {
				t.Fatal(err)
			}
			// The projection is PSD and symmetric: its eigenvalues are clipped at 0.
			var eig mat.EigenSym
			if !eig.Factorize(d.Projection.Cov, false) {
				t.Fatal("eigendecomposition failed")
			}
			if lo := eig.Values(nil)[0]; lo < -1e-12 {
				t.Errorf("smallest eigenvalue of the projection %g", lo)
			}
		})
	}
}

// TestKernelRefused: a shape with no layers in the bank and no size transfer is an error
// naming the node and the bank's kernels.
func TestKernelRefused(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 1))
	bank := &Bank{Entries: []*Entry{
		synthEntry("m", 1, 2, []int{9, 9}, randomCov(rng, 81)),
		synthEntry("m", 2, 2, []int{1, 7}, randomCov(rng, 7)),
	}}
	for _, tc := range []struct {
		name   string
		opts   Options
		kernel []int64
		want   string
	}{
		{"1-D", Options{}, []int64{5}, "kernel 5: the bank has no 5 layers"},
		{"rectangular", Options{}, []int64{7, 1}, "the bank's kernels are 9x9, 1x7"},
		{"3-D", Options{}, []int64{3, 3, 3}, "square 2-D kernels"},
		{"Kronecker of 1x7", Options{Kronecker: true}, []int64{1, 7}, "Kronecker factorization"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, err := NewSource(bank, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Distribution(layerAt("dw_odd", 1, 1, tc.kernel...))
			if !errors.Is(err, ErrKernel) || !strings.Contains(err.Error(), "dw_odd") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrKernel naming dw_odd and saying %q", err, tc.want)
			}
		})
	}
	// The 1x7 layer itself transfers.
	src, _ := NewSource(bank, Options{})
	if _, err := src.Distribution(layerAt("dw_1x7", 1, 3, 1, 7)); err != nil {
		t.Errorf("1x7 from a bank with 1x7 layers: %v", err)
	}
	if _, err := NewSource(bank, Options{Align: AlignCentres}); err == nil {
		t.Error("AlignCentres without Layers: no error")
	}
}

// TestKronecker: with Options.Kronecker the covariance is A₊⊗A₊ of the interpolated one.
func TestKroneckerSource(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 5))
	cov := randomCov(rng, 25)
	bank := &Bank{Entries: []*Entry{synthEntry("m", 1, 1, []int{5, 5}, cov)}}
	src, err := NewSource(bank, Options{Kronecker: true})
	if err != nil {
		t.Fatal(err)
	}
	got, mean, note, err := src.Covariance(layerAt("x", 1, 1, 5, 5))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Kronecker(cov, 5)
	if err != nil {
		t.Fatal(err)
	}
	pa, err := inject.Project(a)
	if err != nil {
		t.Fatal(err)
	}
	// The source factors the covariance derived from the entry's moments, equal to cov up to
	// rounding; the top eigenvector moves by about as much.
	checkSym(t, "cov", got, kron(pa.Cov), 1e-12)
	if mean != nil || !strings.HasSuffix(note, "Kronecker factor A⊗A") {
		t.Errorf("mean %v, note %q; want no mean and a note about the factor", mean, note)
	}
}

// TestSourceConcurrent: many goroutines asking for layers get one distribution per
// (kernel, depth), computed once (run with -race).
func TestSourceConcurrent(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(2, 3))
	bank := &Bank{Entries: []*Entry{
		synthEntry("m", 1, 2, []int{3, 3}, randomCov(rng, 9)),
		synthEntry("m", 2, 2, []int{3, 3}, randomCov(rng, 9)),
	}}
	src, err := NewSource(bank, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]*inject.Distribution, 64)
	var wg sync.WaitGroup
	for g := range got {
		wg.Go(func() {
			d, err := src.Distribution(layerAt("x", 1+g%4, 4, 5, 5))
			if err != nil {
				t.Error(err)
			}
			got[g] = d
		})
	}
	wg.Wait()
	for g := range got {
		if got[g] != got[g%4] {
			t.Fatalf("goroutine %d got another distribution than %d for the same layer", g, g%4)
		}
	}
}

// TestTransferDeterministic: the same bank, model and seed give the same bytes; another
// seed gives others.
func TestTransferDeterministic(t *testing.T) {
	t.Parallel()
	bank, _ := harvestFile(t, modelPath(t, "models/convmixer_digits_d64_l4_k9.onnx"), "convmixer")
	write := func(seed uint64, workers int) []byte {
		m, err := onnxio.Load(modelPath(t, "models/fixtures/13b_convmixer_d12_k7.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		scan, err := graphscan.Scan(m)
		if err != nil {
			t.Fatal(err)
		}
		src, err := NewSource(bank, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := inject.Apply(m, scan, src, inject.Options{Seed: seed, Workers: workers}); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b, c := write(3, 1), write(3, 8), write(4, 8)
	if !bytes.Equal(a, b) {
		t.Error("seed 3 on 1 and 8 workers: outputs differ")
	}
	if bytes.Equal(a, c) {
		t.Error("seeds 3 and 4: same output")
	}
}
