package inject

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"gonum.org/v1/gonum/mat"
)

// ErrFactorize is returned, wrapped, when the eigendecomposition in [Project] fails.
var ErrFactorize = errors.New("eigendecomposition failed")

// Projection is the nearest positive semi-definite matrix, in Frobenius norm, to a
// symmetric matrix, together with the factor that [Projection.Sample] draws with
// (ALGORITHM.md 2.5). With ½(R+Rᵀ) = Q·diag(λ)·Qᵀ:
//
//	Cov    = Q·diag(max(λ, 0))·Qᵀ
//	Factor = Q·diag(√max(λ, 0)), so Cov = Factor·Factorᵀ
//
// A Projection returned by [Project] or a [Cache] is read by many callers: do not
// modify its fields.
type Projection struct {
	// Cov is R₊, the projected covariance.
	Cov *mat.SymDense
	// Factor is the n×n matrix Q·diag(√max(λ, 0)); its column j is the eigenvector of
	// λ_j scaled by √max(λ_j, 0).
	Factor *mat.Dense
	// Eigenvalues are the eigenvalues λ of the symmetrized input, ascending, before
	// clipping; negative ones show how far the input was from PSD.
	Eigenvalues []float64
}

// Project returns the projection of ½(r+rᵀ) onto the positive semi-definite matrices
// by clipping its eigenvalues at 0. r must be square, non-empty and finite; Project
// returns an error, and never panics, when it is not or when the eigendecomposition
// fails (the latter wraps [ErrFactorize]).
func Project(r mat.Matrix) (*Projection, error) {
	p, err := project(r)
	if err != nil {
		return nil, fmt.Errorf("inject: project: %w", err)
	}
	return p, nil
}

// project is Project with errors that do not yet say which call failed.
func project(r mat.Matrix) (*Projection, error) {
	if r == nil {
		return nil, errors.New("nil matrix")
	}
	n, c := r.Dims()
	if n != c || n == 0 {
		return nil, fmt.Errorf("matrix is %d×%d: need a non-empty square matrix", n, c)
	}
	sym, err := symmetrize(r)
	if err != nil {
		return nil, err
	}

	var eig mat.EigenSym
	if !eig.Factorize(sym, true) {
		return nil, fmt.Errorf("%d×%d matrix: %w", n, n, ErrFactorize)
	}
	lambda := eig.Values(nil)
	factor := mat.NewDense(n, n, nil)
	eig.VectorsTo(factor)

	// Scale column j of Q by √max(λ_j, 0), then form Cov = Factor·Factorᵀ.
	raw := factor.RawMatrix()
	scale := make([]float64, n)
	for j, l := range lambda {
		scale[j] = math.Sqrt(max(l, 0))
	}
	for i := 0; i < n; i++ {
		row := raw.Data[i*raw.Stride : i*raw.Stride+n]
		for j := range row {
			row[j] *= scale[j]
		}
	}
	cov := mat.NewSymDense(n, nil)
	cov.SymOuterK(1, factor)
	return &Projection{Cov: cov, Factor: factor, Eigenvalues: lambda}, nil
}

// symmetrize returns ½(r+rᵀ) as a new SymDense, checking that every entry is finite.
func symmetrize(r mat.Matrix) (*mat.SymDense, error) {
	n, _ := r.Dims()
	out := mat.NewSymDense(n, nil)
	raw := out.RawSymmetric()
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			a, b := r.At(i, j), r.At(j, i)
			if math.IsNaN(a) || math.IsInf(a, 0) {
				return nil, fmt.Errorf("entry (%d, %d) is %v: need finite values", i, j, a)
			}
			if math.IsNaN(b) || math.IsInf(b, 0) {
				return nil, fmt.Errorf("entry (%d, %d) is %v: need finite values", j, i, b)
			}
			// Halve first so that huge entries do not overflow; it is exact for a == b.
			raw.Data[i*raw.Stride+j] = 0.5*a + 0.5*b
		}
	}
	return out, nil
}

// maxFlipAxes bounds the axes projectFlips splits on, so 2³ blocks at most.
const maxFlipAxes = 3

// projectFlips returns project(r) for a matrix r over the taps of grid g that is
// invariant under flipping any kernel axis, R[flip(p)][flip(q)] = R[p][q], as the
// closed form is. In the orthonormal basis of tap patterns that are even or odd along
// each axis such a matrix is block diagonal, one block per parity pattern, each about
// n/2^rank on a side. The eigendecomposition is cubic, so projecting the blocks one
// by one, concurrently, is up to 16 times (2-D) or 64 times (3-D) cheaper; the result
// equals project(r) up to rounding. Kernels with more than maxFlipAxes axes of size 2
// or more fall back to project.
func projectFlips(r *mat.SymDense, g *grid) (*Projection, error) {
	var axes []int
	for a, k := range g.dims {
		if k >= 2 {
			axes = append(axes, a)
		}
	}
	if len(axes) == 0 || len(axes) > maxFlipAxes {
		return project(r)
	}

	// Project every parity block on its own goroutine.
	n := g.taps
	blocks := make([]*flipBlock, 1<<len(axes))
	errs := make([]error, len(blocks))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for s := range blocks {
		blocks[s] = newFlipBlock(g, axes, s)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[s] = blocks[s].project(r)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}

	// Order the eigenpairs of all blocks by eigenvalue; the stable sort keeps ties
	// in block order, so the column order is deterministic.
	type pair struct {
		lambda float64
		block  *flipBlock
		col    int
	}
	var pairs []pair
	for _, b := range blocks {
		for j, l := range b.lambda {
			pairs = append(pairs, pair{l, b, j})
		}
	}
	slices.SortStableFunc(pairs, func(x, y pair) int { return cmp.Compare(x.lambda, y.lambda) })

	// Map each block's factor columns and covariance back to taps: tap i enters
	// basis vector index[i] of a block with weight coef[i].
	lambda := make([]float64, n)
	factor := mat.NewDense(n, n, nil)
	fr := factor.RawMatrix()
	for c, pr := range pairs {
		lambda[c] = pr.lambda
		b := pr.block
		for i, u := range b.index {
			if u >= 0 {
				fr.Data[i*fr.Stride+c] = b.coef[i] * b.factor.At(u, pr.col)
			}
		}
	}
	cov := mat.NewSymDense(n, nil)
	cr := cov.RawSymmetric()
	for _, b := range blocks {
		br := b.cov.RawSymmetric()
		for i, u := range b.index {
			if u < 0 {
				continue
			}
			for j := i; j < n; j++ {
				v := b.index[j]
				if v < 0 {
					continue
				}
				bv := br.Data[min(u, v)*br.Stride+max(u, v)]
				cr.Data[i*cr.Stride+j] += b.coef[i] * b.coef[j] * bv
			}
		}
	}
	return &Projection{Cov: cov, Factor: factor, Eigenvalues: lambda}, nil
}

// flipBlock is one parity block of projectFlips: the span of the tap patterns that
// are even (parity bit 0) or odd (bit 1) under the flip of each split axis. Along an
// axis of size k its basis has the vectors (e_t ± e_{k−1−t})/√2 for t < k−1−t, plus
// e_t for the middle tap of an odd k in the even case.
type flipBlock struct {
	size  int
	index []int     // index[i]: basis vector that tap i belongs to, or -1
	coef  []float64 // coef[i]: weight of tap i in that basis vector

	lambda []float64     // eigenvalues of the block, ascending
	factor *mat.Dense    // Q·diag(√max(λ, 0)) of the block
	cov    *mat.SymDense // factor·factorᵀ
}

// newFlipBlock lays out the block with parity bits s over axes of g.
func newFlipBlock(g *grid, axes []int, s int) *flipBlock {
	rank := len(g.dims)
	odd := make([]bool, rank)
	for bit, a := range axes {
		odd[a] = s>>bit&1 == 1
	}
	// Block shape: (k+1)/2 even or k/2 odd patterns per axis, laid out row-major.
	shape := make([]int, rank)
	size := 1
	for a, k := range g.dims {
		shape[a] = (k + 1) / 2
		if odd[a] {
			shape[a] = k / 2
		}
		size *= shape[a]
	}
	b := &flipBlock{size: size, index: make([]int, g.taps), coef: make([]float64, g.taps)}
	for i := range g.taps {
		u, w := 0, 1.0
		for a, k := range g.dims {
			t := g.coords[i*rank+a]
			mirror := k - 1 - t
			switch {
			case t == mirror && odd[a]:
				w = 0
			case t == mirror:
				// The middle tap is its own basis vector.
			case t > mirror && odd[a]:
				w *= -math.Sqrt2 / 2
			default:
				w *= math.Sqrt2 / 2
			}
			u = u*shape[a] + min(t, mirror)
		}
		b.index[i], b.coef[i] = -1, 0
		if w != 0 {
			b.index[i], b.coef[i] = u, w
		}
	}
	return b
}

// project fills the block's eigenpairs, factor and covariance from r.
func (b *flipBlock) project(r *mat.SymDense) error {
	// B = Pᵀ·r·P restricted to the block, upper triangle, in a fixed order.
	blk := mat.NewSymDense(b.size, nil)
	br := blk.RawSymmetric()
	rr := r.RawSymmetric()
	for i, u := range b.index {
		if u < 0 {
			continue
		}
		for j, v := range b.index {
			if v < u {
				continue
			}
			rij := rr.Data[min(i, j)*rr.Stride+max(i, j)]
			br.Data[u*br.Stride+v] += b.coef[i] * b.coef[j] * rij
		}
	}

	p, err := project(blk)
	if err != nil {
		return err
	}
	b.lambda, b.factor, b.cov = p.Eigenvalues, p.Factor, p.Cov
	return nil
}
