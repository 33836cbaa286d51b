package inject

import (
	"errors"
	"fmt"
	"math"
	"slices"

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

	return factorize(sym)
}

// factorize returns the projection of the symmetric matrix sym.
func factorize(sym *mat.SymDense) (*Projection, error) {
	n := sym.SymmetricDim()
	var eig mat.EigenSym
	if !eig.Factorize(sym, true) {
		return nil, fmt.Errorf("%d×%d matrix: %w", n, n, ErrFactorize)
	}
	lambda := eig.Values(nil)
	factor := mat.NewDense(n, n, nil)
	eig.VectorsTo(factor)

	// Scale column j of Q by √max(λ_j, 0), then form Cov = Factor·Factorᵀ from the
	// columns of positive λ, the last ones since λ ascends; the others are zero.
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
	if first, _ := slices.BinarySearch(lambda, math.SmallestNonzeroFloat64); first < n {
		cov.SymOuterK(1, factor.Slice(0, n, first, n))
	}
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
