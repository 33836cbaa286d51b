package inject

import (
	"flag"
	"fmt"
	"math"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestProjectGoldens checks eigenvalues and R₊ against the covariance goldens, for
// Project and for the flip-symmetry blocks a Cache uses.
func TestProjectGoldens(t *testing.T) {
	t.Parallel()
	for _, name := range covGoldenFiles(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var want covGolden
			readGolden(t, name, &want)
			kernel := []int{want.Inputs.K, want.Inputs.K}
			r, err := ClosedForm(kernel, want.Inputs.Sigma)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Project(r)
			if err != nil {
				t.Fatal(err)
			}
			cp, err := NewCache().ClosedForm(kernel, want.Inputs.Sigma)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name string
				p    *Projection
			}{{"Project", p}, {"Cache", cp}} {
				checkVector(t, c.name+" eigenvalues", c.p.Eigenvalues, want.Eig, goldenTol)
				checkMatrix(t, c.name+" R₊", c.p.Cov, want.Clip, goldenTol)
				checkClose(t, c.name+" trace R₊", trace(c.p.Cov), want.TraceClip, goldenTol)
				checkFactor(t, c.name, c.p)
			}
		})
	}
}

// checkFactor checks the documented relations of a projection: Factor·Factorᵀ = Cov,
// and Factorᵀ·Factor = diag(max(λ, 0)) (orthogonal eigenvectors, scaled). The
// products sum n terms of size up to max λ, hence a tolerance of a few 1e-14 for
// n <= 256 and λ <= 2, set at 1e-12 to stay clear of it.
func checkFactor(t *testing.T, what string, p *Projection) {
	t.Helper()
	n := len(p.Eigenvalues)
	var ffT, fTf mat.Dense
	ffT.Mul(p.Factor, p.Factor.T())
	fTf.Mul(p.Factor.T(), p.Factor)
	for i := range n {
		if i > 0 && p.Eigenvalues[i] < p.Eigenvalues[i-1] {
			t.Errorf("%s: eigenvalues not ascending at %d: %g after %g",
				what, i, p.Eigenvalues[i], p.Eigenvalues[i-1])
		}
		for j := range n {
			if d := math.Abs(ffT.At(i, j) - p.Cov.At(i, j)); d > 1e-12 {
				t.Fatalf("%s: (Factor·Factorᵀ)[%d][%d] - Cov = %g", what, i, j, d)
			}
			want := 0.0
			if i == j {
				want = max(p.Eigenvalues[i], 0)
			}
			if d := math.Abs(fTf.At(i, j) - want); d > 1e-12 {
				t.Fatalf("%s: (Factorᵀ·Factor)[%d][%d]: got %g, want %g", what, i, j, fTf.At(i, j), want)
			}
		}
	}
}

// TestProjectFlipsMatchesProject compares the block path of the Cache with Project
// on shapes the goldens do not cover: even, rectangular, 1-D, 3-D, dims of 1, and
// four split axes (which fall back to Project). Tolerance as for the goldens.
func TestProjectFlipsMatchesProject(t *testing.T) {
	t.Parallel()
	shapes := [][]int{{2}, {6}, {7}, {1, 1}, {1, 7}, {4, 4}, {2, 3}, {3, 6}, {15, 15}, {16, 16},
		{5, 1, 5}, {3, 4, 5}, {2, 2, 2, 2}}
	for _, dims := range shapes {
		for _, sigma := range []float64{0.08, 1.3, 4} {
			t.Run(fmt.Sprintf("%v/sigma=%g", dims, sigma), func(t *testing.T) {
				t.Parallel()
				g, err := newGrid(dims)
				if err != nil {
					t.Fatal(err)
				}
				r := g.closedForm(sigma)
				want, err := Project(r)
				if err != nil {
					t.Fatal(err)
				}
				got, err := projectFlips(r, g)
				if err != nil {
					t.Fatal(err)
				}
				checkVector(t, "eigenvalues", got.Eigenvalues, want.Eigenvalues, goldenTol)
				var rows [][]float64
				for i := range g.taps {
					rows = append(rows, mat.Row(nil, i, want.Cov))
				}
				checkMatrix(t, "R₊", got.Cov, rows, goldenTol)
				checkFactor(t, "projectFlips", got)
			})
		}
	}
}

func TestProjectNonSymmetric(t *testing.T) {
	t.Parallel()
	// ½(A+Aᵀ) = [[2, 1], [1, 2]] has eigenvalues 1 and 3, so it is its own projection.
	a := mat.NewDense(2, 2, []float64{2, 0, 2, 2})
	p, err := Project(a)
	if err != nil {
		t.Fatal(err)
	}
	checkVector(t, "eigenvalues", p.Eigenvalues, []float64{1, 3}, 1e-15)
	checkMatrix(t, "R₊", p.Cov, [][]float64{{2, 1}, {1, 2}}, 1e-15)

	// diag(-1, 4) clips to diag(0, 4).
	p, err = Project(mat.NewDiagDense(2, []float64{-1, 4}))
	if err != nil {
		t.Fatal(err)
	}
	checkVector(t, "eigenvalues", p.Eigenvalues, []float64{-1, 4}, 0)
	checkMatrix(t, "R₊", p.Cov, [][]float64{{0, 0}, {0, 4}}, 0)
	checkFactor(t, "diag", p)
}

func TestProjectErrors(t *testing.T) {
	t.Parallel()
	nan := mat.NewSymDense(2, []float64{1, 0, 0, 1})
	nan.SetSym(0, 1, math.NaN())
	inf := mat.NewDense(2, 2, []float64{1, 0, math.Inf(-1), 1})
	for _, c := range []struct {
		name string
		m    mat.Matrix
		says string
	}{
		{"nil", nil, "nil"},
		{"empty", &mat.Dense{}, "0×0"},
		{"not square", mat.NewDense(2, 3, nil), "2×3"},
		{"column", mat.NewVecDense(3, nil), "3×1"},
		{"NaN", nan, "NaN"},
		{"Inf", inf, "-Inf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Project(c.m)
			if err == nil {
				t.Fatalf("got %+v, want an error", p)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("got %q, want it to name %q", err, c.says)
			}
		})
	}
}

// skipSlow skips a benchmark of minutes unless -bench names it, e.g. -bench 'Project/k=51'.
func skipSlow(b *testing.B, name string) {
	if f := flag.Lookup("test.bench"); f == nil || !strings.Contains(f.Value.String(), name) {
		b.Skipf("slow: select it with -bench 'Project/k=%s'", name)
	}
}

func BenchmarkProject(b *testing.B) {
	for _, k := range []int{9, 31, 51} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			if k == 51 {
				skipSlow(b, "51")
			}
			r, err := ClosedForm([]int{k, k}, math.Pi/2)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := Project(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCacheClosedForm measures what a cache miss costs: the closed form and its
// projection by flip-symmetry blocks.
func BenchmarkCacheClosedForm(b *testing.B) {
	for _, k := range []int{9, 31, 51} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			for b.Loop() {
				if _, err := NewCache().ClosedForm([]int{k, k}, math.Pi/2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
