package covtransfer

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Align says how source and target line up when interpolating over depth (ALGORITHM.md 4.3)
// or over the blocks of a filter-size transfer (4.4).
type Align int

const (
	// AlignCorners lines up the first and the last layer (or block) of source and target,
	// torch's align_corners=True; the default.
	AlignCorners Align = iota
	// AlignCentres lines up the centres of equal cells, torch's align_corners=False.
	AlignCentres
)

func (a Align) String() string {
	if a == AlignCentres {
		return "align_corners=false"
	}
	return "align_corners=true"
}

// DepthWeights returns the index math of ALGORITHM.md 4.3 for target layer t (0-based) of
// dout interpolated from din source layers: the position x_t, the two source layers i0 and
// i1 (0-based) and the weight w, so that the target is (1−w)·in[i0] + w·in[i1].
//
//	AlignCorners: x = t·(din−1)/(dout−1), and 0 when dout = 1
//	AlignCentres: x = max((t+0.5)·din/dout − 0.5, 0)
//	i0 = floor(x), i1 = min(i0+1, din−1), w = x − i0
//
// It needs 0 <= t < dout and din >= 1. Past the last source layer (AlignCentres) i0 = i1,
// so w, which the goldens keep as x − i0, has no effect.
func DepthWeights(t, dout, din int, align Align) (x float64, i0, i1 int, w float64) {
	switch {
	case align == AlignCentres:
		x = max((float64(t)+0.5)*float64(din)/float64(dout)-0.5, 0)
	case dout > 1:
		x = float64(t) * float64(din-1) / float64(dout-1)
	}
	i0 = min(int(math.Floor(x)), din-1)
	i1 = min(i0+1, din-1)
	return x, i0, i1, x - float64(i0)
}

// InterpolateDepth returns dout covariances linearly interpolated over depth from covs, the
// covariances of din = len(covs) consecutive layers (ALGORITHM.md 4.3). A convex combination
// of PSD matrices is PSD, so the result needs no projection.
func InterpolateDepth(covs []*mat.SymDense, dout int, align Align) ([]*mat.SymDense, error) {
	if len(covs) == 0 || dout < 1 {
		return nil, fmt.Errorf("covtransfer: interpolate %d layers to %d: need at least one of each", len(covs), dout)
	}
	n := covs[0].SymmetricDim()
	for i, c := range covs {
		if c.SymmetricDim() != n {
			return nil, fmt.Errorf("covtransfer: interpolate: layer %d is %d×%d, layer 0 is %d×%d",
				i, c.SymmetricDim(), c.SymmetricDim(), n, n)
		}
	}
	out := make([]*mat.SymDense, dout)
	for t := range out {
		_, i0, i1, w := DepthWeights(t, dout, len(covs), align)
		out[t] = lerpSym(covs[i0], covs[i1], w)
	}
	return out, nil
}

// lerpSym returns (1−w)·a + w·b.
func lerpSym(a, b *mat.SymDense, w float64) *mat.SymDense {
	n := a.SymmetricDim()
	out := mat.NewSymDense(n, nil)
	ra, rb, ro := a.RawSymmetric(), b.RawSymmetric(), out.RawSymmetric()
	for i := range n {
		for j := i; j < n; j++ {
			ro.Data[i*ro.Stride+j] = (1-w)*ra.Data[i*ra.Stride+j] + w*rb.Data[i*rb.Stride+j]
		}
	}
	return out
}

// lerpVec returns (1−w)·a + w·b, or nil when either is nil.
func lerpVec(a, b []float64, w float64) []float64 {
	if a == nil || b == nil {
		return nil
	}
	out := make([]float64, len(a))
	for i := range a {
		out[i] = (1-w)*a[i] + w*b[i]
	}
	return out
}

// sizeWeights is the bilinear index math of ALGORITHM.md 4.4 along one axis: target
// position I of kt from k source positions. A target of size 1 sits at the source's centre
// in both modes [CHOICE: AlignCorners leaves 0/0 there].
func sizeWeights(I, kt, k int, align Align) (i0, i1 int, w float64) {
	var x float64
	switch {
	case align == AlignCentres:
		x = max((float64(I)+0.5)*float64(k)/float64(kt)-0.5, 0)
	case kt == 1:
		x = float64(k-1) / 2
	default:
		x = float64(I) * float64(k-1) / float64(kt-1)
	}
	x = min(x, float64(k-1))
	i0 = int(math.Floor(x))
	i1 = min(i0+1, k-1)
	return i0, i1, x - float64(i0)
}

// padBlocks is step 1 of ALGORITHM.md 4.4 for the k×k covariance r in rearranged form:
// every block (i, j) of the block form, the k×k map of Cov(F[i][j], ·), mean-padded (with
// the block's own mean) or centre-clipped to kt×kt. The result is (k·kt)×(k·kt) with block
// (i, j) at entry [kt·i + l][kt·j + m]. When kt − k is odd the block sits ⌊(kt−k)/2⌋ from
// the top left [CHOICE: the paper's sizes are odd].
func padBlocks(r mat.Matrix, k, kt int) *mat.Dense {
	out := mat.NewDense(k*kt, k*kt, nil)
	for i := range k {
		for j := range k {
			// Block (i, j), entry (l, m) is r[k·i + j][k·l + m].
			at := func(l, m int) float64 { return r.At(k*i+j, k*l+m) }
			if kt >= k {
				p := (kt - k) / 2
				var mean float64
				for l := range k {
					for m := range k {
						mean += at(l, m)
					}
				}
				mean /= float64(k * k)
				for L := range kt {
					for M := range kt {
						v := mean
						if l, m := L-p, M-p; l >= 0 && l < k && m >= 0 && m < k {
							v = at(l, m)
						}
						out.Set(kt*i+L, kt*j+M, v)
					}
				}
				continue
			}
			p := (k - kt) / 2
			for L := range kt {
				for M := range kt {
					out.Set(kt*i+L, kt*j+M, at(p+L, p+M))
				}
			}
		}
	}
	return out
}

// ResizeKernel transfers the covariance r of k×k filters (k²×k², rearranged form) to
// kt×kt filters by ALGORITHM.md 4.4: every block is mean-padded or centre-clipped to kt×kt
// (padBlocks), then, for every position within a block, the k×k grid of blocks is resized
// to kt×kt by bilinear interpolation. The result, kt²×kt² in rearranged form, is in general
// not symmetric: symmetrize and project it before sampling ([inject.Project] does both).
func ResizeKernel(r mat.Matrix, k, kt int, align Align) (*mat.Dense, error) {
	if err := checkSquare(r, k); err != nil {
		return nil, err
	}
	if kt < 1 || kt*kt > maxResizeTaps {
		return nil, fmt.Errorf("covtransfer: resize to %dx%d: need a size from 1 to %d",
			kt, kt, int(math.Sqrt(maxResizeTaps)))
	}
	padded := padBlocks(r, k, kt)
	out := mat.NewDense(kt*kt, kt*kt, nil)
	for I := range kt {
		i0, i1, wy := sizeWeights(I, kt, k, align)
		for J := range kt {
			j0, j1, wx := sizeWeights(J, kt, k, align)
			for L := range kt {
				for M := range kt {
					at := func(i, j int) float64 { return padded.At(kt*i+L, kt*j+M) }
					v := (1-wy)*((1-wx)*at(i0, j0)+wx*at(i0, j1)) + wy*((1-wx)*at(i1, j0)+wx*at(i1, j1))
					out.Set(kt*I+J, kt*L+M, v)
				}
			}
		}
	}
	return out, nil
}

// maxResizeTaps bounds the taps of a filter-size transfer's target (64×64 kernels).
const maxResizeTaps = 4096

// resizeMean transfers a mean filter of k×k taps to kt×kt the way padBlocks treats a
// block: centre-clipped, or padded with its own mean [CHOICE: the paper transfers no mean].
func resizeMean(mean []float64, k, kt int) []float64 {
	if mean == nil {
		return nil
	}
	out := make([]float64, kt*kt)
	var avg float64
	for _, v := range mean {
		avg += v
	}
	avg /= float64(len(mean))
	for L := range kt {
		for M := range kt {
			switch {
			case kt >= k:
				p := (kt - k) / 2
				out[kt*L+M] = avg
				if l, m := L-p, M-p; l >= 0 && l < k && m >= 0 && m < k {
					out[kt*L+M] = mean[k*l+m]
				}
			default:
				p := (k - kt) / 2
				out[kt*L+M] = mean[k*(p+L)+p+M]
			}
		}
	}
	return out
}

// Kronecker returns the k×k matrix A whose Kronecker square A⊗A, in rearranged form
// (Cov(F[i][j], F[l][m]) = A[i][l]·A[j][m]), is nearest to the k²×k² covariance r in
// Frobenius norm (ALGORITHM.md 4.5). The paper fits A by gradient descent; the minimiser is
// closed-form: a = √λ·u for the top eigenpair (λ, u) of the symmetric part of r's block
// form (the Van Loan–Pitsianis rearrangement), A = a reshaped row-major, its sign chosen so
// that trace(A) >= 0. A need not be PSD for every input; project it before use.
func Kronecker(r mat.Matrix, k int) (*mat.Dense, error) {
	if err := checkSquare(r, k); err != nil {
		return nil, err
	}
	n := k * k
	// The block form B[k·i+l][k·j+m] = r[k·i+j][k·l+m], symmetrized.
	b := mat.NewSymDense(n, nil)
	for i := range k {
		for l := range k {
			for j := range k {
				for m := range k {
					p, q := k*i+l, k*j+m
					if p > q {
						continue
					}
					// Bᵀ[p][q] = B[k·j+m][k·i+l] = r[k·j+i][k·m+l].
					b.SetSym(p, q, 0.5*r.At(k*i+j, k*l+m)+0.5*r.At(k*j+i, k*m+l))
				}
			}
		}
	}
	var eig mat.EigenSym
	if !eig.Factorize(b, true) {
		return nil, errors.New("covtransfer: Kronecker factor: eigendecomposition failed")
	}
	values := eig.Values(nil)
	lambda := values[n-1]
	if !(lambda > 0) {
		return nil, fmt.Errorf("covtransfer: Kronecker factor: the largest eigenvalue is %g; no A⊗A fits a covariance without variance", lambda)
	}
	var vecs mat.Dense
	eig.VectorsTo(&vecs)
	a := mat.NewDense(k, k, nil)
	s := math.Sqrt(lambda)
	var trace float64
	for p := range n {
		a.Set(p/k, p%k, s*vecs.At(p, n-1))
	}
	for i := range k {
		trace += a.At(i, i)
	}
	if trace < 0 {
		a.Scale(-1, a)
	}
	return a, nil
}

// kron returns A⊗A for a symmetric A, which is then symmetric too.
func kron(a *mat.SymDense) *mat.SymDense {
	k := a.SymmetricDim()
	out := mat.NewSymDense(k*k, nil)
	for i := range k {
		for j := range k {
			for l := range k {
				for m := range k {
					if p, q := k*i+j, k*l+m; p <= q {
						out.SetSym(p, q, a.At(i, l)*a.At(j, m))
					}
				}
			}
		}
	}
	return out
}

// checkSquare checks that r is the k²×k² covariance of k×k filters with finite entries.
func checkSquare(r mat.Matrix, k int) error {
	if r == nil {
		return errors.New("covtransfer: nil matrix")
	}
	rows, cols := r.Dims()
	if k < 1 || k > 64 || rows != k*k || cols != k*k {
		return fmt.Errorf("covtransfer: matrix is %d×%d: need the %d×%d covariance of %dx%d filters (k from 1 to 64)",
			rows, cols, k*k, k*k, k, k)
	}
	for i := range rows {
		for j := range cols {
			if v := r.At(i, j); math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("covtransfer: entry (%d, %d) is %v: need finite values", i, j, v)
			}
		}
	}
	return nil
}
