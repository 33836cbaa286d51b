package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// goldenDir holds copies of the project's goldens; see its README.md.
const goldenDir = "../testdata/goldens"

// goldenTol is the absolute tolerance against the goldens, which come from an
// independent float64 numpy implementation. Entries are O(1) and a few roundings
// apart; eigenvalues and R₊ come from backward-stable eigensolvers, whose results
// move by about n·ε·‖R‖ < 1e-13 for n <= 81 (eigenvalues by Weyl's inequality, R₊
// because the projection onto the PSD cone is 1-Lipschitz). The closest competing
// convention differs by more than 1e-2, so 1e-12 cannot hide a wrong formula.
const goldenTol = 1e-12

// readGolden decodes the JSON golden file name into v.
func readGolden(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatalf("reading golden: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding golden %s: %v", name, err)
	}
}

// checkMatrix fails t when got and want differ by more than tol anywhere.
func checkMatrix(t *testing.T, what string, got mat.Matrix, want [][]float64, tol float64) {
	t.Helper()
	r, c := got.Dims()
	if r != len(want) || (r > 0 && c != len(want[0])) {
		t.Errorf("%s: got %d×%d, want %d×%d", what, r, c, len(want), len(want[0]))
		return
	}
	var worst float64
	wi, wj := 0, 0
	for i := range r {
		for j := range c {
			if d := math.Abs(got.At(i, j) - want[i][j]); !(d <= worst) {
				worst, wi, wj = d, i, j
			}
		}
	}
	if !(worst <= tol) {
		t.Errorf("%s: entry (%d, %d): got %.17g, want %.17g (|diff| %.3g > %g)",
			what, wi, wj, got.At(wi, wj), want[wi][wj], worst, tol)
	}
}

// checkVector fails t when got and want differ by more than tol anywhere.
func checkVector(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d values, want %d", what, len(got), len(want))
		return
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); !(d <= tol) {
			t.Errorf("%s[%d]: got %.17g, want %.17g (|diff| %.3g > %g)", what, i, got[i], want[i], d, tol)
			return
		}
	}
}

// checkClose fails t when got and want differ by more than tol.
func checkClose(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if d := math.Abs(got - want); !(d <= tol) {
		t.Errorf("%s: got %.17g, want %.17g (|diff| %.3g > %g)", what, got, want, d, tol)
	}
}

// covGolden is one covariance_k*_sigma_*.json file.
type covGolden struct {
	Inputs struct {
		K     int
		Sigma float64
	}
	Z         [][]float64
	Raw       [][]float64 `json:"sigma_raw_rearranged"`
	Eig       []float64   `json:"eigenvalues_raw_ascending"`
	Clip      [][]float64 `json:"sigma_psd_clip_rearranged"`
	Diag      [][]float64 `json:"diag_raw_as_kxk"`
	TraceRaw  float64     `json:"trace_raw"`
	TraceClip float64     `json:"trace_psd_clip"`
}

// covGoldenFiles lists the covariance_k*_sigma_*.json goldens.
func covGoldenFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(goldenDir, "covariance_k*_sigma_*.json"))
	if err != nil || len(files) != 20 {
		t.Fatalf("covariance goldens: got %d files (err %v), want 20", len(files), err)
	}
	for i, f := range files {
		files[i] = filepath.Base(f)
	}
	return files
}

func flatten(m [][]float64) []float64 {
	var out []float64
	for _, row := range m {
		out = append(out, row...)
	}
	return out
}

func trace(m mat.Matrix) float64 {
	n, _ := m.Dims()
	var s float64
	for i := range n {
		s += m.At(i, i)
	}
	return s
}

func TestClosedFormGoldens(t *testing.T) {
	t.Parallel()
	for _, name := range covGoldenFiles(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var want covGolden
			readGolden(t, name, &want)
			k, sigma := want.Inputs.K, want.Inputs.Sigma
			r, err := ClosedForm([]int{k, k}, sigma)
			if err != nil {
				t.Fatal(err)
			}
			checkMatrix(t, "R", r, want.Raw, goldenTol)

			g, err := newGrid([]int{k, k})
			if err != nil {
				t.Fatal(err)
			}
			checkVector(t, "Z", g.profile(sigma), flatten(want.Z), goldenTol)
			diag := make([]float64, k*k)
			for p := range diag {
				diag[p] = r.At(p, p)
			}
			checkVector(t, "diag R", diag, flatten(want.Diag), goldenTol)
			checkClose(t, "trace R", trace(r), want.TraceRaw, goldenTol)
		})
	}
}

func TestClosedFormAnyShapeGoldens(t *testing.T) {
	t.Parallel()
	var golden struct {
		Cases []struct {
			Shape       []int
			Sigma       float64
			R           [][]float64
			RPSD        [][]float64 `json:"R_psd"`
			Eigenvalues []float64
		}
	}
	readGolden(t, "covariance_any_shape.json", &golden)
	for _, c := range golden.Cases {
		t.Run(fmt.Sprintf("%v/sigma=%g", c.Shape, c.Sigma), func(t *testing.T) {
			r, err := ClosedForm(c.Shape, c.Sigma)
			if err != nil {
				t.Fatal(err)
			}
			checkMatrix(t, "R", r, c.R, goldenTol)
			p, err := Project(r)
			if err != nil {
				t.Fatal(err)
			}
			checkVector(t, "Project eigenvalues", p.Eigenvalues, c.Eigenvalues, goldenTol)
			checkMatrix(t, "Project R₊", p.Cov, c.RPSD, goldenTol)
			cp, err := NewCache().ClosedForm(c.Shape, c.Sigma)
			if err != nil {
				t.Fatal(err)
			}
			checkVector(t, "Cache eigenvalues", cp.Eigenvalues, c.Eigenvalues, goldenTol)
			checkMatrix(t, "Cache R₊", cp.Cov, c.RPSD, goldenTol)
		})
	}
}

// toBlock maps a k²×k² matrix between rearranged and block form (ALGORITHM.md 1):
// B[k·i+l][k·j+m] = R[k·i+j][k·l+m]. The permutation is its own inverse.
func toBlock(r func(p, q int) float64, k int) [][]float64 {
	b := make([][]float64, k*k)
	for i := range k {
		for l := range k {
			b[k*i+l] = make([]float64, k*k)
			for j := range k {
				for m := range k {
					b[k*i+l][k*j+m] = r(k*i+j, k*l+m)
				}
			}
		}
	}
	return b
}

// blockTranspose returns B^B (ALGORITHM.md 1): B^B[k·i+l][k·j+m] = B[k·l+i][k·m+j].
func blockTranspose(b [][]float64, k int) [][]float64 {
	out := make([][]float64, k*k)
	for p := range out {
		out[p] = make([]float64, k*k)
		i, l := p/k, p%k
		for q := range out[p] {
			j, m := q/k, q%k
			out[p][q] = b[k*l+i][k*m+j]
		}
	}
	return out
}

func at(m [][]float64) func(p, q int) float64 {
	return func(p, q int) float64 { return m[p][q] }
}

// TestClosedFormComponents checks the rearranged closed form against the
// Kronecker/Hadamard construction of the paper in block form (ALGORITHM.md 2.1-2.4).
func TestClosedFormComponents(t *testing.T) {
	t.Parallel()
	var golden struct {
		Cases []struct {
			Inputs struct {
				K     int
				Sigma float64
			}
			CBlock      [][]float64 `json:"C_block"`
			CRearranged [][]float64 `json:"C_rearranged"`
			SBlock      [][]float64 `json:"S_block"`
			MBlock      [][]float64 `json:"M_block"`
			Tilde       [][]float64 `json:"SigmaTilde_block"`
			TildeB      [][]float64 `json:"SigmaTilde_blockT_block"`
			SigmaBlock  [][]float64 `json:"Sigma_block"`
			SigmaRearr  [][]float64 `json:"Sigma_rearranged"`
		}
	}
	readGolden(t, "components.json", &golden)
	for _, c := range golden.Cases {
		k, sigma := c.Inputs.K, c.Inputs.Sigma
		t.Run(fmt.Sprintf("k=%d/sigma=%g", k, sigma), func(t *testing.T) {
			g, err := newGrid([]int{k, k})
			if err != nil {
				t.Fatal(err)
			}
			n := k * k
			z := g.profile(sigma)
			cr := func(p, q int) float64 { return math.Exp(-g.wrappedDist2(p, q) / (2 * sigma)) }

			// Our own S = 1⊗Z, M = Z⊗1 and C, in block form.
			sBlock := make([][]float64, n)
			mBlock := make([][]float64, n)
			for a := range n {
				sBlock[a], mBlock[a] = make([]float64, n), make([]float64, n)
				for b := range n {
					sBlock[a][b] = z[k*(a%k)+b%k]
					mBlock[a][b] = z[k*(a/k)+b/k]
				}
			}
			dense := func(m [][]float64) *mat.Dense { return mat.NewDense(n, n, flatten(m)) }
			cBlock := toBlock(cr, k)
			checkMatrix(t, "C rearranged", dense(toBlock(at(cBlock), k)), c.CRearranged, goldenTol)
			checkMatrix(t, "C block", dense(cBlock), c.CBlock, goldenTol)
			checkMatrix(t, "S block", dense(sBlock), c.SBlock, goldenTol)
			checkMatrix(t, "M block", dense(mBlock), c.MBlock, goldenTol)

			// Σ̃ = M ⊙ (C − ½S), and Σ = ½(Σ̃ + Σ̃^B) (Eq. 7-9).
			tilde := make([][]float64, n)
			for a := range n {
				tilde[a] = make([]float64, n)
				for b := range n {
					tilde[a][b] = mBlock[a][b] * (cBlock[a][b] - 0.5*sBlock[a][b])
				}
			}
			tildeB := blockTranspose(tilde, k)
			checkMatrix(t, "Σ̃ block", dense(tilde), c.Tilde, goldenTol)
			checkMatrix(t, "Σ̃^B block", dense(tildeB), c.TildeB, goldenTol)
			sigmaBlock := mat.NewDense(n, n, nil)
			for a := range n {
				for b := range n {
					sigmaBlock.Set(a, b, 0.5*(tilde[a][b]+tildeB[a][b]))
				}
			}
			checkMatrix(t, "Σ block from components", sigmaBlock, c.SigmaBlock, goldenTol)

			// The rearranged closed form is the same matrix.
			r, err := ClosedForm([]int{k, k}, sigma)
			if err != nil {
				t.Fatal(err)
			}
			checkMatrix(t, "R", r, c.SigmaRearr, goldenTol)
			checkMatrix(t, "block(R)", dense(toBlock(r.At, k)), c.SigmaBlock, goldenTol)
			var rows [][]float64
			for a := range n {
				rows = append(rows, mat.Row(nil, a, sigmaBlock))
			}
			checkMatrix(t, "R vs block(Σ from components)", r, toBlock(at(rows), k), goldenTol)
		})
	}
}

// TestClosedFormHandChecks uses the k=3, σ=1 values of ALGORITHM.md 2.4. The
// tolerance is a few ulps of values below 1: each side takes two or three roundings.
func TestClosedFormHandChecks(t *testing.T) {
	t.Parallel()
	r, err := ClosedForm([]int{3, 3}, 1)
	if err != nil {
		t.Fatal(err)
	}
	e := math.Exp
	for _, c := range []struct {
		name string
		p, q int
		want float64
	}{
		{"corner variance", 0, 0, e(-1) - e(-2)/2},
		{"centre variance", 4, 4, 0.5},
		{"centre with right neighbour", 4, 5, e(-1) / 2},
		{"corner with wrapped corner", 0, 2, e(-1.5) - e(-2)/2},
	} {
		checkClose(t, c.name, r.At(c.p, c.q), c.want, 1e-15)
	}
	checkClose(t, "corner variance", r.At(0, 0), 0.3002118, 5e-8)
	checkClose(t, "centre with right neighbour", r.At(4, 5), 0.1839397, 5e-8)
	checkClose(t, "corner with wrapped corner", r.At(0, 2), 0.1554625, 5e-8)
}

// flipPerm returns the tap permutation that reverses axis a of dims.
func flipPerm(dims []int, a int) []int {
	g, _ := newGrid(dims)
	rank := len(dims)
	perm := make([]int, g.taps)
	for p := range perm {
		q := 0
		for b, k := range dims {
			t := g.coords[p*rank+b]
			if b == a {
				t = k - 1 - t
			}
			q = q*k + t
		}
		perm[p] = q
	}
	return perm
}

// axisPerm returns the tap permutation that sends axis b of the kernel to axis
// order[b]; all dims must be equal.
func axisPerm(dims []int, order []int) []int {
	g, _ := newGrid(dims)
	rank := len(dims)
	perm := make([]int, g.taps)
	t := make([]int, rank)
	for p := range perm {
		for b := range rank {
			t[order[b]] = g.coords[p*rank+b]
		}
		q := 0
		for b, k := range dims {
			q = q*k + t[b]
		}
		perm[p] = q
	}
	return perm
}

// TestClosedFormProperties checks symmetry, the centre variance and invariance under
// filter flips and transposes. All are exact: R depends on the taps only through
// squared distances, sums of a few multiples of ¼, which float64 holds exactly.
func TestClosedFormProperties(t *testing.T) {
	t.Parallel()
	shapes := [][]int{{1}, {2}, {7}, {1, 1}, {3, 3}, {4, 4}, {5, 5}, {9, 9}, {2, 3}, {3, 6}, {1, 7},
		{3, 3, 3}, {2, 4, 5}}
	for _, dims := range shapes {
		for _, sigma := range []float64{0.08, 0.5, math.Pi / 2, 4} {
			t.Run(fmt.Sprintf("%v/sigma=%g", dims, sigma), func(t *testing.T) {
				g, err := newGrid(dims)
				if err != nil {
					t.Fatal(err)
				}
				r := g.closedForm(sigma)
				n := g.taps
				for p := range n {
					for q := range n {
						if a, b := g.wrappedDist2(p, q), g.wrappedDist2(q, p); a != b {
							t.Fatalf("wrapped distance (%d, %d): got %g, and %g the other way round",
								p, q, a, b)
						}
					}
				}

				odd := true
				for _, k := range dims {
					odd = odd && k%2 == 1
				}
				if c := (n - 1) / 2; odd && r.At(c, c) != 0.5 {
					t.Errorf("centre variance: got %.17g, want 0.5", r.At(c, c))
				}

				var perms [][]int
				for a := range dims {
					perms = append(perms, flipPerm(dims, a))
				}
				square := true
				for _, k := range dims {
					square = square && k == dims[0]
				}
				if square && len(dims) == 2 {
					perms = append(perms, axisPerm(dims, []int{1, 0}))
				}
				if square && len(dims) == 3 {
					perms = append(perms, axisPerm(dims, []int{1, 2, 0}), axisPerm(dims, []int{0, 2, 1}))
				}
				for i, perm := range perms {
					for p := range n {
						for q := range n {
							if a, b := r.At(perm[p], perm[q]), r.At(p, q); a != b {
								t.Fatalf("permutation %d: R[%d][%d] = %.17g, R[%d][%d] = %.17g",
									i, perm[p], perm[q], a, p, q, b)
							}
						}
					}
				}
			})
		}
	}
}

func TestClosedFormOneByOne(t *testing.T) {
	t.Parallel()
	for _, dims := range [][]int{{1}, {1, 1}, {1, 1, 1}} {
		r, err := ClosedForm(dims, 0.3)
		if err != nil {
			t.Fatal(err)
		}
		if n := r.SymmetricDim(); n != 1 || r.At(0, 0) != 0.5 {
			t.Errorf("ClosedForm(%v): got %v, want [0.5]", dims, mat.Formatted(r))
		}
	}
}

func TestClosedFormErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		kernel []int
		sigma  float64
		says   string // the wrong value, as the message must name it
		is     error
	}{
		{"nil kernel", nil, 1, "[]", nil},
		{"empty kernel", []int{}, 1, "[]", nil},
		{"zero dim", []int{3, 0}, 1, "[3 0]", nil},
		{"negative dim", []int{-1}, 1, "[-1]", nil},
		{"sigma zero", []int{3, 3}, 0, "sigma 0", nil},
		{"sigma negative", []int{3, 3}, -0.5, "sigma -0.5", nil},
		{"sigma NaN", []int{3, 3}, math.NaN(), "sigma NaN", nil},
		{"sigma +Inf", []int{3, 3}, math.Inf(1), "sigma +Inf", nil},
		{"sigma -Inf", []int{3}, math.Inf(-1), "sigma -Inf", nil},
		{"too many taps", []int{65, 64}, 1, "[65 64]", ErrTooManyTaps},
		{"too long", []int{MaxTaps + 1}, 1, "4097", ErrTooManyTaps},
		{"product overflows", []int{1 << 40, 1 << 40}, 1, "[1099511627776 1099511627776]", ErrTooManyTaps},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := ClosedForm(c.kernel, c.sigma)
			if err == nil {
				t.Fatalf("got %v×%v matrix, want an error", r.SymmetricDim(), r.SymmetricDim())
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("got %v, want an error wrapping %v", err, c.is)
			}
			// The brief asks errors to name the wrong value; this checks the message
			// says it, not its wording.
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("got %q, want it to name %q", err, c.says)
			}
		})
	}
	// At the cap itself the kernel is accepted; building R would take 128 MiB, so
	// check the validation ClosedForm runs first.
	for _, kernel := range [][]int{{64, 64}, {MaxTaps}, {16, 16, 16}, {MaxTaps, 1, 1}} {
		if _, err := newGrid(kernel); err != nil {
			t.Errorf("kernel %v at MaxTaps: %v", kernel, err)
		}
	}
}

func BenchmarkClosedForm(b *testing.B) {
	for _, k := range []int{9, 31, 51} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			for b.Loop() {
				if _, err := ClosedForm([]int{k, k}, math.Pi/2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
