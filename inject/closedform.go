package inject

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// MaxTaps is the largest kernel, counted in taps (the product of its dims), that
// [ClosedForm] and [Cache] accept. The covariance has MaxTaps² entries and its
// projection needs an eigendecomposition: at 4096 taps each n×n matrix takes 128 MiB,
// and a [Cache] projects a 64×64 kernel in about 3 s on two cores (51×51: 0.4 s;
// 16×16×16: 0.3 s), a 1-D kernel, whose two blocks are n/2 on a side, in 13 s.
// [Project] on the same matrix, without the symmetry blocks a Cache uses, takes many
// minutes. Four times the cap would take 2 GiB per matrix and hours.
const MaxTaps = 4096

// ErrTooManyTaps is returned, wrapped, for kernels with more than [MaxTaps] taps.
var ErrTooManyTaps = errors.New("too many taps")

// ClosedForm returns R, the closed-form covariance of ALGORITHM.md 2.4 and its
// any-shape extension 2.9, in rearranged form: row p and column q index the taps of
// the kernel flattened row-major, so for a k×k kernel tap (i, j) is p = k·i + j.
//
// kernel is the spatial shape (k_1, ..., k_n): any rank >= 1 and any dims >= 1, odd
// or even, square or not. sigma acts as a variance (the Gaussians divide by 2σ, not
// 2σ²) and must be finite and > 0. With z the row-major flattening of the centred,
// unnormalized Gaussian and C the Gaussian of the wrapped tap difference,
//
//	R[p][q] = ½·((z_p + z_q)·C[p][q] − z_p·z_q)
//
// R is symmetric but not positive semi-definite in general (for 5×5 and larger
// kernels it has negative eigenvalues); [Project] makes it so. A 1×1 kernel gives [0.5].
// Kernels with more than [MaxTaps] taps are refused with an error wrapping
// [ErrTooManyTaps].
func ClosedForm(kernel []int, sigma float64) (*mat.SymDense, error) {
	g, err := newGrid(kernel)
	if err != nil {
		return nil, err
	}
	if err := checkSigma(sigma); err != nil {
		return nil, fmt.Errorf("inject: kernel %v: %w", kernel, err)
	}
	return g.closedForm(sigma), nil
}

// closedForm is ClosedForm for a validated grid and sigma.
func (g *grid) closedForm(sigma float64) *mat.SymDense {
	// Fill the upper triangle; SymDense mirrors it. The squared wrapped distances are
	// whole numbers, so C reads a table of exp(−d/(2σ)) by distance: the same bits as
	// calling exp for every pair, with far fewer calls.
	n := g.taps
	z := g.profile(sigma)
	c := g.movingTable(sigma)
	r := mat.NewSymDense(n, nil)
	raw := r.RawSymmetric()
	for p := 0; p < n; p++ {
		row := raw.Data[p*raw.Stride : p*raw.Stride+n]
		for q := p; q < n; q++ {
			cpq := c[int(g.wrappedDist2(p, q))]
			row[q] = 0.5 * ((z[p]+z[q])*cpq - z[p]*z[q])
		}
	}
	return r
}

// movingTable returns c with c[d] = exp(−d/(2σ)) for every whole d up to the largest
// squared wrapped distance, Σ_a ⌊k_a/2⌋², which is at most n²/4 for n taps.
func (g *grid) movingTable(sigma float64) []float64 {
	var most float64
	for _, w := range g.wrap2 {
		most += slices.Max(w)
	}
	c := make([]float64, int(most)+1)
	for d := range c {
		c[d] = math.Exp(-float64(d) / (2 * sigma))
	}
	return c
}

// checkSigma reports whether sigma is usable as the variance parameter.
func checkSigma(sigma float64) error {
	if math.IsNaN(sigma) || math.IsInf(sigma, 0) || sigma <= 0 {
		return fmt.Errorf("sigma %v: must be finite and > 0", sigma)
	}
	return nil
}

// grid is a validated kernel shape with the per-axis geometry the closed form needs.
type grid struct {
	dims   []int
	taps   int
	coords []int // coords[p*rank+a] is the index of tap p along axis a
	// wrap2[a][t] is w_a(t)² for t in [0, k_a): the squared wrapped difference of
	// ALGORITHM.md 2.9, indexed by (q_a − p_a) mod k_a.
	wrap2 [][]float64
}

// newGrid validates kernel and precomputes its geometry. It refuses an empty
// kernel, dims < 1, and more than MaxTaps taps.
func newGrid(kernel []int) (*grid, error) {
	if len(kernel) == 0 {
		return nil, errors.New("inject: kernel []: need at least one dim")
	}
	taps := 1
	for _, k := range kernel {
		if k < 1 {
			return nil, fmt.Errorf("inject: kernel %v: dims must be >= 1", kernel)
		}
		if k > MaxTaps || taps*k > MaxTaps {
			return nil, fmt.Errorf("inject: kernel %v: more than %d taps: %w",
				kernel, MaxTaps, ErrTooManyTaps)
		}
		taps *= k
	}

	g := &grid{dims: append([]int(nil), kernel...), taps: taps}
	rank := len(kernel)
	g.coords = make([]int, taps*rank)
	idx := make([]int, rank)
	for p := 0; p < taps; p++ {
		copy(g.coords[p*rank:], idx)
		// Advance the row-major odometer: the last axis varies fastest.
		for a := rank - 1; a >= 0; a-- {
			idx[a]++
			if idx[a] < kernel[a] {
				break
			}
			idx[a] = 0
		}
	}
	g.wrap2 = make([][]float64, rank)
	for a, k := range kernel {
		h := k / 2
		g.wrap2[a] = make([]float64, k)
		for t := range k {
			w := float64((t+h)%k - h)
			g.wrap2[a][t] = w * w
		}
	}
	return g, nil
}

// profile returns z, the row-major flattening of the centred Gaussian
// exp(−Σ_a (p_a − c_a)² / (2σ)) with c_a = (k_a − 1)/2; z is 1 at the centre of an
// odd kernel and is not normalized.
func (g *grid) profile(sigma float64) []float64 {
	rank := len(g.dims)
	z := make([]float64, g.taps)
	for p := range z {
		var s float64
		for a, k := range g.dims {
			d := float64(g.coords[p*rank+a]) - float64(k-1)/2
			s += d * d
		}
		z[p] = math.Exp(-s / (2 * sigma))
	}
	return z
}

// wrappedDist2 returns Σ_a w_a(q_a − p_a)², the squared wrapped distance between
// taps p and q that the moving component C[p][q] = exp(−wrappedDist2/(2σ)) uses.
func (g *grid) wrappedDist2(p, q int) float64 {
	rank := len(g.dims)
	var s float64
	for a, k := range g.dims {
		t := g.coords[q*rank+a] - g.coords[p*rank+a]
		if t < 0 {
			t += k
		}
		s += g.wrap2[a][t]
	}
	return s
}
