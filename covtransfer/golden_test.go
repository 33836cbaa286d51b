package covtransfer

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/internal/testutil"
)

// goldenTol is the tolerance against the goldens: they come from an independent float64
// numpy implementation, so the two differ only by rounding, a few units of 1e-16 times the
// entries' size (at most about 30 here).
const goldenTol = 1e-12

func readGolden(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "testdata", "goldens", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func denseOf(rows [][]float64) *mat.Dense {
	m := mat.NewDense(len(rows), len(rows[0]), nil)
	for i, r := range rows {
		m.SetRow(i, r)
	}
	return m
}

func symOf(rows [][]float64) *mat.SymDense {
	n := len(rows)
	s := mat.NewSymDense(n, nil)
	for i := range n {
		for j := i; j < n; j++ {
			s.SetSym(i, j, rows[i][j])
		}
	}
	return s
}

// checkClose fails when got and want differ by more than tol anywhere.
func checkClose(t *testing.T, what string, got mat.Matrix, want [][]float64, tol float64) {
	t.Helper()
	r, c := got.Dims()
	if r != len(want) || c != len(want[0]) {
		t.Fatalf("%s: got %d×%d, want %d×%d", what, r, c, len(want), len(want[0]))
	}
	worst, wi, wj := 0.0, 0, 0
	for i := range r {
		for j := range c {
			if d := math.Abs(got.At(i, j) - want[i][j]); d > worst || math.IsNaN(d) {
				worst, wi, wj = d, i, j
			}
		}
	}
	if worst > tol || math.IsNaN(worst) {
		t.Errorf("%s: entry (%d, %d) got %.17g, want %.17g (|diff| %.3g > %g)", what, wi, wj, got.At(wi, wj), want[wi][wj], worst, tol)
	}
}

func TestGoldenEmpiricalCovariance(t *testing.T) {
	t.Parallel()
	var g struct {
		Inputs struct {
			H, K    int
			Filters [][][]float64
		}
		Mean     []float64
		CovDdof1 [][]float64 `json:"cov_ddof1"`
	}
	readGolden(t, "empirical_covariance.json", &g)
	k := g.Inputs.K
	e := &Entry{Kernel: []int{k, k}, Sum: make([]float64, k*k), Outer: make([]float64, k*k*k*k)}
	for _, f := range g.Inputs.Filters {
		var flat []float64
		for _, row := range f {
			flat = append(flat, row...) // row-major: F[i][j] -> k·i + j
		}
		addMoments(e.Sum, e.Outer, flat)
		e.Count++
	}
	e.derive()
	if e.Count != g.Inputs.H {
		t.Fatalf("count %d, want %d", e.Count, g.Inputs.H)
	}
	for i, m := range g.Mean {
		if d := math.Abs(e.Mean()[i] - m); d > goldenTol {
			t.Errorf("mean[%d] = %.17g, want %.17g", i, e.Mean()[i], m)
		}
	}
	checkClose(t, "cov (ddof 1)", e.Cov(), g.CovDdof1, goldenTol)
}

type depthGolden struct {
	Inputs struct {
		DIn  int           `json:"D_in"`
		DOut int           `json:"D_out"`
		Covs [][][]float64 `json:"covs"`
	}
	True  depthCase `json:"align_corners_true"`
	False depthCase `json:"align_corners_false"`
	Index []struct {
		DIn   int  `json:"D_in"`
		DOut  int  `json:"D_out"`
		Align bool `json:"align_corners"`
		depthCase
	} `json:"index_tables"`
}

type depthCase struct {
	X    []float64
	I0   []int
	I1   []int
	W    []float64
	Covs [][][]float64
}

func TestGoldenDepthIndexTables(t *testing.T) {
	t.Parallel()
	var g depthGolden
	readGolden(t, "depth_interpolation.json", &g)
	for _, tab := range g.Index {
		align := AlignCorners
		if !tab.Align {
			align = AlignCentres
		}
		t.Run(fmt.Sprintf("%d_to_%d_%v", tab.DIn, tab.DOut, align), func(t *testing.T) {
			t.Parallel()
			// The spec's own index math, and the bank's rule in relative depth, which for
			// one model must pick the same layers with the same weights.
			knots := make([]float64, tab.DIn)
			for j := range knots {
				knots[j] = position(j+1, tab.DIn, align)
			}
			for i := range tab.DOut {
				x, i0, i1, w := DepthWeights(i, tab.DOut, tab.DIn, align)
				if i0 != tab.I0[i] || i1 != tab.I1[i] || math.Abs(x-tab.X[i]) > goldenTol || math.Abs(w-tab.W[i]) > goldenTol {
					t.Errorf("t=%d: DepthWeights got x %g, i0 %d, i1 %d, w %g; want %g, %d, %d, %g", i, x, i0, i1, w, tab.X[i], tab.I0[i], tab.I1[i], tab.W[i])
				}
				j0, j1, v := knotWeights(knots, position(i+1, tab.DOut, align))
				want := tab.W[i]
				if tab.I0[i] == tab.I1[i] {
					want = v // one layer either way: the weight does not matter
				}
				if j0 != tab.I0[i] || j1 != tab.I1[i] || math.Abs(v-want) > goldenTol {
					t.Errorf("t=%d: bank rule got i0 %d, i1 %d, w %g; want %d, %d, %g", i, j0, j1, v, tab.I0[i], tab.I1[i], tab.W[i])
				}
			}
		})
	}
}

func TestGoldenDepthInterpolation(t *testing.T) {
	t.Parallel()
	var g depthGolden
	readGolden(t, "depth_interpolation.json", &g)
	var covs []*mat.SymDense
	for _, c := range g.Inputs.Covs {
		covs = append(covs, symOf(c))
	}
	for _, tc := range []struct {
		align Align
		want  depthCase
	}{
		{AlignCorners, g.True},
		{AlignCentres, g.False},
	} {
		t.Run(tc.align.String(), func(t *testing.T) {
			t.Parallel()
			got, err := InterpolateDepth(covs, g.Inputs.DOut, tc.align)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				checkClose(t, fmt.Sprintf("layer %d", i), got[i], tc.want.Covs[i], goldenTol)
			}

			// A bank of one model with these covariances (count 2, sum 0, outer = Σ gives
			// exactly Σ) gives the same through the bank's rule in relative depth.
			b := &Bank{Models: []Model{{Source: "m", Layers: g.Inputs.DIn}}}
			for i, c := range g.Inputs.Covs {
				e := &Entry{Source: "m", Node: fmt.Sprint(i), Kernel: []int{3, 3}, Index: i + 1, Layers: g.Inputs.DIn,
					Depth: inject.Depth(i+1, g.Inputs.DIn), Count: 2, Sum: make([]float64, 9)}
				for _, row := range c {
					e.Outer = append(e.Outer, row...)
				}
				e.derive()
				b.Entries = append(b.Entries, e)
			}
			src, err := NewSource(b, Options{Align: tc.align, Layers: g.Inputs.DOut})
			if err != nil {
				t.Fatal(err)
			}
			for i := range g.Inputs.DOut {
				l := &graphscan.Layer{Name: fmt.Sprint(i), Index: i + 1, Depth: inject.Depth(i+1, g.Inputs.DOut), Kernel: []int64{3, 3}}
				cov, _, _, err := src.Covariance(l)
				if err != nil {
					t.Fatal(err)
				}
				checkClose(t, fmt.Sprintf("bank, layer %d", i), cov, tc.want.Covs[i], goldenTol)
			}
		})
	}
}

func TestGoldenFilterSizeTransfer(t *testing.T) {
	t.Parallel()
	type result struct {
		Block      [][]float64 `json:"result_block"`
		Rearranged [][]float64 `json:"result_rearranged"`
		Asymmetry  float64     `json:"asymmetry_max_abs"`
		Projected  [][]float64 `json:"result_sym_psd_clip_rearranged"`
	}
	var g struct {
		Cases []struct {
			Inputs struct {
				K, Kt int
				Cov   [][]float64 `json:"cov_rearranged"`
			}
			Padded [][]float64 `json:"padded_block"`
			True   result      `json:"align_corners_true"`
			False  result      `json:"align_corners_false"`
		}
	}
	readGolden(t, "filter_size_transfer.json", &g)
	for _, c := range g.Cases {
		k, kt := c.Inputs.K, c.Inputs.Kt
		r := denseOf(c.Inputs.Cov)
		t.Run(fmt.Sprintf("%d_to_%d_padded", k, kt), func(t *testing.T) {
			t.Parallel()
			checkClose(t, "padded blocks", padBlocks(r, k, kt), c.Padded, goldenTol)
		})
		for _, tc := range []struct {
			align Align
			want  result
		}{{AlignCorners, c.True}, {AlignCentres, c.False}} {
			t.Run(fmt.Sprintf("%d_to_%d_%v", k, kt, tc.align), func(t *testing.T) {
				t.Parallel()
				got, err := ResizeKernel(r, k, kt, tc.align)
				if err != nil {
					t.Fatal(err)
				}
				checkClose(t, "result", got, tc.want.Rearranged, goldenTol)
				var asym float64
				for i := range kt * kt {
					for j := range kt * kt {
						asym = max(asym, math.Abs(got.At(i, j)-got.At(j, i)))
					}
				}
				if math.Abs(asym-tc.want.Asymmetry) > goldenTol {
					t.Errorf("asymmetry %g, want %g", asym, tc.want.Asymmetry)
				}
				p, err := inject.Project(got)
				if err != nil {
					t.Fatal(err)
				}
				checkClose(t, "symmetrized and projected", p.Cov, tc.want.Projected, goldenTol)
			})
		}
	}
}

func TestGoldenKronecker(t *testing.T) {
	t.Parallel()
	var g struct {
		Cases []struct {
			Name  string
			K     int
			Input [][]float64 `json:"input_rearranged"`
			A     [][]float64
			Kron  [][]float64 `json:"kron_A_A_rearranged"`
			MSE   float64
			AEigs []float64 `json:"A_eigenvalues"`
		}
	}
	readGolden(t, "kronecker.json", &g)
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			r := denseOf(c.Input)
			a, err := Kronecker(r, c.K)
			if err != nil {
				t.Fatal(err)
			}
			checkClose(t, "A", a, c.A, goldenTol)
			// Both stored cases give a symmetric A, so A⊗A is the covariance itself.
			as := mat.NewSymDense(c.K, nil)
			for i := range c.K {
				for j := i; j < c.K; j++ {
					as.SetSym(i, j, 0.5*a.At(i, j)+0.5*a.At(j, i))
				}
			}
			kk := kron(as)
			checkClose(t, "A⊗A", kk, c.Kron, goldenTol)
			var sse float64
			n := c.K * c.K
			for i := range n {
				for j := range n {
					d := kk.At(i, j) - r.At(i, j)
					sse += d * d
				}
			}
			if mse := sse / float64(n*n); math.Abs(mse-c.MSE) > goldenTol*max(1, c.MSE) {
				t.Errorf("mse %.17g, want %.17g", mse, c.MSE)
			}
		})
	}
}
