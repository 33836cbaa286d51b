package inject

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestProjectGoldens checks eigenvalues and R₊ against the covariance goldens, for
// Project and for the symmetry blocks a Cache uses.
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

// TestProjectBlocksMatchesProject compares the block path of the Cache with Project
// of ClosedForm on shapes the goldens do not cover: even, rectangular, 1-D, 3-D with
// two or three equal axes, dims of 1, and four split axes (which fall back to
// Project). Tolerance as for the goldens.
func TestProjectBlocksMatchesProject(t *testing.T) {
	t.Parallel()
	shapes := [][]int{{2}, {6}, {7}, {1, 1}, {1, 7}, {2, 2}, {3, 3}, {4, 4}, {2, 3}, {3, 6},
		{15, 15}, {16, 16}, {5, 1, 5}, {3, 4, 5}, {2, 2, 2}, {3, 3, 3}, {4, 4, 4}, {5, 5, 5},
		{5, 5, 3}, {5, 3, 5}, {4, 5, 5}, {6, 6, 1}, {2, 2, 2, 2}}
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
				got, err := projectBlocks(g, sigma)
				if err != nil {
					t.Fatal(err)
				}
				checkVector(t, "eigenvalues", got.Eigenvalues, want.Eigenvalues, goldenTol)
				var rows [][]float64
				for i := range g.taps {
					rows = append(rows, mat.Row(nil, i, want.Cov))
				}
				checkMatrix(t, "R₊", got.Cov, rows, goldenTol)
				checkFactor(t, "projectBlocks", got)
			})
		}
	}
}

// TestSymmetryBlocks checks that the blocks form an orthonormal basis of the taps,
// PᵀP = I exactly but for the rounding of 1/√2, and that they are as small as the
// kernel's symmetries allow: blocks an axis permutation relates share one eigenproblem.
func TestSymmetryBlocks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		dims   []int
		blocks int
		sizes  []int // of the distinct eigenproblems, in block order
	}{
		{[]int{7}, 2, []int{4, 3}},
		{[]int{1, 6, 1}, 2, []int{3, 3}},
		{[]int{3, 4}, 4, []int{4, 2, 4, 2}},
		{[]int{5, 5}, 6, []int{6, 3, 6, 3, 1}},
		{[]int{4, 4}, 6, []int{3, 1, 4, 3, 1}},
		{[]int{51, 51}, 6, []int{351, 325, 650, 325, 300}},
		{[]int{5, 5, 3}, 12, []int{12, 6, 12, 6, 2, 6, 3, 6, 3, 1}},
		{[]int{3, 3, 3}, 12, []int{6, 2, 3, 1, 2, 1}},
		{[]int{9, 9, 9}, 16, []int{75, 50, 60, 40, 50, 30, 40, 24}},
	} {
		t.Run(fmt.Sprint(c.dims), func(t *testing.T) {
			t.Parallel()
			g, err := newGrid(c.dims)
			if err != nil {
				t.Fatal(err)
			}
			blocks := symmetryBlocks(g)
			var sizes []int
			n := g.taps
			p := mat.NewDense(n, n, nil)
			col := 0
			for i, b := range blocks {
				if i == 0 || b.eig != blocks[i-1].eig {
					sizes = append(sizes, b.eig.size)
				}
				for x, u := range b.index {
					if u >= 0 && col+u < n {
						p.Set(x, col+u, b.coef[x])
					}
				}
				col += b.eig.size
			}
			if len(blocks) != c.blocks || !slices.Equal(sizes, c.sizes) {
				t.Fatalf("got %d blocks with eigenproblems of sizes %v, want %d and %v",
					len(blocks), sizes, c.blocks, c.sizes)
			}
			if col != n {
				t.Fatalf("got %d basis vectors, want %d", col, n)
			}
			var ptp mat.Dense
			ptp.Mul(p.T(), p)
			for i := range n {
				for j := range n {
					want := 0.0
					if i == j {
						want = 1
					}
					if d := math.Abs(ptp.At(i, j) - want); d > 1e-15 {
						t.Fatalf("(PᵀP)[%d][%d]: got %.17g, want %g", i, j, ptp.At(i, j), want)
					}
				}
			}
		})
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
// projection by symmetry blocks.
func BenchmarkCacheClosedForm(b *testing.B) {
	for _, c := range []struct {
		name string
		dims []int
	}{
		{"k=9", []int{9, 9}},
		{"k=31", []int{31, 31}},
		{"k=51", []int{51, 51}},
		{"k=9x9x9", []int{9, 9, 9}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := NewCache().ClosedForm(c.dims, math.Pi/2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBigKernelGoldens compares a Cache's projections of large kernels with numpy's
// (testdata/big_kernels.json, made by testdata/gen_big_kernels.py): extreme
// eigenvalues, trace and Frobenius norm of R₊, and a sample of its entries. Both
// solvers are backward stable, so they agree to about n·ε·‖R‖ ≈ 1e-12 for n = 2601
// and ‖R‖ < 5 (whole matrices differ by 1.2e-15 at most); 1e-10 leaves room. Up to
// 1024 taps it also checks the factor: its products sum n terms, whose rounding
// errors stay near √n·ε·‖R‖ ≈ 1e-14, under checkFactor's 1e-12. The 51×51 case
// takes a second, more under -race, so -short leaves it out.
func TestBigKernelGoldens(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("testdata", "big_kernels.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Cases []struct {
			Dims            []int
			Sigma           float64
			Lowest, Highest []float64
			TracePSD        float64 `json:"trace_psd"`
			FrobeniusPSD    float64 `json:"frobenius_psd"`
			Entries         [][3]float64
		}
	}
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	const tol = 1e-10
	for _, c := range golden.Cases {
		t.Run(fmt.Sprintf("%v/sigma=%.4g", c.Dims, c.Sigma), func(t *testing.T) {
			t.Parallel()
			n := 1
			for _, k := range c.Dims {
				n *= k
			}
			if testing.Short() && n > 1500 {
				t.Skip("slow under -short")
			}
			p, err := NewCache().ClosedForm(c.Dims, c.Sigma)
			if err != nil {
				t.Fatal(err)
			}
			checkVector(t, "lowest eigenvalues", p.Eigenvalues[:len(c.Lowest)], c.Lowest, tol)
			checkVector(t, "highest eigenvalues", p.Eigenvalues[n-len(c.Highest):], c.Highest, tol)
			checkClose(t, "trace R₊", trace(p.Cov), c.TracePSD, tol)
			checkClose(t, "‖R₊‖_F", mat.Norm(p.Cov, 2), c.FrobeniusPSD, tol)
			for _, e := range c.Entries {
				i, j := int(e[0]), int(e[1])
				checkClose(t, fmt.Sprintf("R₊[%d][%d]", i, j), p.Cov.At(i, j), e[2], tol)
			}
			if n <= 1024 {
				checkFactor(t, "Cache", p)
			}
		})
	}
}
