package inject

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// TestSampleStatistics draws N = 200000 filters for each (k, σ) of
// sampling_stats.json and compares the empirical covariance E = FᵀF/N (the mean is
// known to be zero) with R₊ = S. The tolerance is that file's recommendation
// (ALGORITHM.md 6): each entry within 0.01, or within 6 standard errors
// se = √((S_pp·S_qq + S_pq²)/N); numpy's worst over 5 seeds was 0.0046 and z = 4.6.
// Each coordinate's mean must lie within 6·√(S_pp/N) of 0.
func TestSampleStatistics(t *testing.T) {
	t.Parallel()
	var golden struct {
		Runs []struct {
			K     int
			Sigma float64
			N     int
		}
	}
	readGolden(t, "sampling_stats.json", &golden)
	if len(golden.Runs) != 12 {
		t.Fatalf("sampling_stats.json: got %d runs, want 12", len(golden.Runs))
	}
	cache := NewCache()
	for _, run := range golden.Runs {
		t.Run(fmt.Sprintf("k=%d/sigma=%.4g", run.K, run.Sigma), func(t *testing.T) {
			t.Parallel()
			p, err := cache.ClosedForm([]int{run.K, run.K}, run.Sigma)
			if err != nil {
				t.Fatal(err)
			}
			n := run.K * run.K
			rng := rand.New(rand.NewPCG(uint64(run.K), math.Float64bits(run.Sigma)))
			const chunk = 10000
			buf := make([]float64, chunk*n)
			e := blas64.Symmetric{Uplo: blas.Upper, N: n, Stride: n, Data: make([]float64, n*n)}
			sum := make([]float64, n)
			for drawn := 0; drawn < run.N; drawn += chunk {
				if err := p.Sample(buf, chunk, nil, rng); err != nil {
					t.Fatal(err)
				}
				blas64.Syrk(blas.Trans, 1, blas64.General{Rows: chunk, Cols: n, Stride: n, Data: buf}, 1, e)
				for i, v := range buf {
					sum[i%n] += v
				}
			}

			N := float64(run.N)
			var worstAbs, worstZ float64
			for i := range n {
				sii := p.Cov.At(i, i)
				if m := sum[i] / N; math.Abs(m) > 6*math.Sqrt(sii/N)+1e-12 {
					t.Errorf("mean of tap %d: got %g, want |m| <= %g", i, m, 6*math.Sqrt(sii/N))
				}
				for j := i; j < n; j++ {
					s := p.Cov.At(i, j)
					d := math.Abs(e.Data[i*n+j]/N - s)
					z := d / math.Sqrt((sii*p.Cov.At(j, j)+s*s)/N)
					if d > 0.01 && !(z <= 6) {
						t.Errorf("E[%d][%d]: got %.6f, want %.6f (|diff| %.4f, z %.2f)",
							i, j, e.Data[i*n+j]/N, s, d, z)
					}
					worstAbs = max(worstAbs, d)
					if !math.IsNaN(z) {
						worstZ = max(worstZ, z)
					}
				}
			}
			t.Logf("max |E - R₊| = %.5f, max z = %.2f", worstAbs, worstZ)
		})
	}
}

// TestSampleDrawOrder checks that g is drawn filter by filter, tap by tap: with an
// identity factor the filters are the draws themselves, exactly.
func TestSampleDrawOrder(t *testing.T) {
	t.Parallel()
	const n, count = 3, 5
	p := &Projection{Factor: identity(n)}
	got := make([]float64, n*count)
	if err := p.Sample(got, count, nil, rand.New(rand.NewPCG(1, 2))); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range got {
		if want := rng.NormFloat64(); got[i] != want {
			t.Fatalf("value %d (filter %d, tap %d): got %v, want draw %d = %v", i, i/n, i%n, got[i], i, want)
		}
	}
}

func identity(n int) *mat.Dense {
	m := mat.NewDense(n, n, nil)
	for i := range n {
		m.Set(i, i, 1)
	}
	return m
}

// TestSampleBatchInvariance checks that a filter's bits do not depend on how many
// filters are drawn with it: whole batches, one at a time, and odd splits that
// cross the internal batch size all give the same bits.
func TestSampleBatchInvariance(t *testing.T) {
	t.Parallel()
	for _, dims := range [][]int{{3, 3}, {9, 9}, {16, 16}} {
		t.Run(fmt.Sprint(dims), func(t *testing.T) {
			t.Parallel()
			p, err := NewCache().ClosedForm(dims, 1.9)
			if err != nil {
				t.Fatal(err)
			}
			n := p.Factor.RawMatrix().Rows
			count := 2*max(1, sampleChunk/n) + 3
			whole := make([]float64, count*n)
			if err := p.Sample(whole, count, nil, rand.New(rand.NewPCG(7, 8))); err != nil {
				t.Fatal(err)
			}
			for _, split := range []int{1, 7, count - 1} {
				got := make([]float64, count*n)
				rng := rand.New(rand.NewPCG(7, 8))
				for first := 0; first < count; first += split {
					m := min(split, count-first)
					if err := p.Sample(got[first*n:(first+m)*n], m, nil, rng); err != nil {
						t.Fatal(err)
					}
				}
				for i := range got {
					if math.Float64bits(got[i]) != math.Float64bits(whole[i]) {
						t.Fatalf("split %d: filter %d tap %d: got %v, want %v",
							split, i/n, i%n, got[i], whole[i])
					}
				}
			}
		})
	}
}

// TestSampleSkipsZeroColumns checks that leaving out the zero columns of Factor (the
// clipped eigenvalues) gives the same bits as multiplying by the whole Factor.
func TestSampleSkipsZeroColumns(t *testing.T) {
	t.Parallel()
	for _, dims := range [][]int{{9, 9}, {17, 17}} {
		t.Run(fmt.Sprint(dims), func(t *testing.T) {
			t.Parallel()
			p, err := NewCache().ClosedForm(dims, math.Pi/2)
			if err != nil {
				t.Fatal(err)
			}
			n := len(p.Eigenvalues)
			if p.Eigenvalues[0] >= 0 {
				t.Fatalf("got λ_min = %g, want a clipped eigenvalue", p.Eigenvalues[0])
			}
			const count = 300
			got := make([]float64, count*n)
			if err := p.Sample(got, count, nil, rand.New(rand.NewPCG(5, 6))); err != nil {
				t.Fatal(err)
			}

			rng := rand.New(rand.NewPCG(5, 6))
			g := make([]float64, count*n)
			for i := range g {
				g[i] = rng.NormFloat64()
			}
			var ft mat.Dense
			ft.CloneFrom(p.Factor.T())
			want := make([]float64, count*n)
			blas64.Gemm(blas.NoTrans, blas.NoTrans, 1,
				blas64.General{Rows: count, Cols: n, Stride: n, Data: g}, ft.RawMatrix(),
				0, blas64.General{Rows: count, Cols: n, Stride: n, Data: want})
			for i := range got {
				if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
					t.Fatalf("filter %d tap %d: got %v, want %v", i/n, i%n, got[i], want[i])
				}
			}
		})
	}
}

func TestSampleMean(t *testing.T) {
	t.Parallel()
	p, err := NewCache().ClosedForm([]int{3, 3}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	const count = 4
	mean := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}
	zero := make([]float64, count*9)
	shifted := make([]float64, count*9)
	if err := p.Sample(zero, count, nil, rand.New(rand.NewPCG(3, 4))); err != nil {
		t.Fatal(err)
	}
	if err := p.Sample(shifted, count, mean, rand.New(rand.NewPCG(3, 4))); err != nil {
		t.Fatal(err)
	}
	for i := range zero {
		if want := zero[i] + mean[i%9]; shifted[i] != want {
			t.Fatalf("value %d: got %v, want %v", i, shifted[i], want)
		}
	}
}

func TestSampleErrors(t *testing.T) {
	t.Parallel()
	p, err := NewCache().ClosedForm([]int{3}, 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, c := range []struct {
		name  string
		p     *Projection
		dst   []float64
		count int
		mean  []float64
		rng   *rand.Rand
	}{
		{"nil projection", nil, make([]float64, 3), 1, nil, rng},
		{"no factor", &Projection{}, make([]float64, 3), 1, nil, rng},
		{"empty factor", &Projection{Factor: &mat.Dense{}}, nil, 0, nil, rng},
		{"non-square factor", &Projection{Factor: mat.NewDense(3, 2, nil)}, make([]float64, 3), 1, nil, rng},
		{"nil rng", p, make([]float64, 3), 1, nil, nil},
		{"negative count", p, nil, -1, nil, rng},
		{"short dst", p, make([]float64, 5), 2, nil, rng},
		{"long dst", p, make([]float64, 7), 2, nil, rng},
		{"count overflows", p, make([]float64, 3), math.MaxInt/2 + 1, nil, rng},
		{"short mean", p, make([]float64, 3), 1, []float64{0, 0}, rng},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.p.Sample(c.dst, c.count, c.mean, c.rng); err == nil {
				t.Errorf("got no error")
			}
		})
	}
	if err := p.Sample(nil, 0, nil, rng); err != nil {
		t.Errorf("count 0: %v", err)
	}
}

func BenchmarkSample(b *testing.B) {
	const count = 1024 // a wide layer's channels
	for _, k := range []int{3, 7, 9, 31} {
		b.Run(fmt.Sprintf("k=%d/count=%d", k, count), func(b *testing.B) {
			p, err := NewCache().ClosedForm([]int{k, k}, math.Pi/2)
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]float64, count*k*k)
			rng := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				if err := p.Sample(dst, count, nil, rng); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(count*b.N)/b.Elapsed().Seconds(), "filters/s")
		})
	}
}
