package inject

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// sampleChunk bounds the number of Gaussian draws Sample holds at once (512 KiB).
const sampleChunk = 1 << 16

// Sample draws count filters from N(mean, Cov) into dst: filter j is
// dst[j*n : (j+1)*n], in the rearranged (row-major tap) order of [ClosedForm],
// and len(dst) must be count*n. Each filter is f = mean + Factor·g with g ~ N(0, I);
// the g are drawn from rng with NormFloat64 in order, filter by filter and tap by tap,
// so a seed fixes the result. mean may be nil for a zero mean.
//
// The draws are multiplied in batches of whole filters, F = G·Factorᵀ. The sum for
// each tap runs over g in the same order whatever the batch size and GOMAXPROCS,
// so filter j has the same bits however many filters are drawn with it.
// Sample only reads p, so it may run concurrently on one Projection with distinct
// dst and rng.
func (p *Projection) Sample(dst []float64, count int, mean []float64, rng *rand.Rand) error {
	if p == nil || p.Factor == nil {
		return errors.New("inject: sample: projection has no factor")
	}
	n, c := p.Factor.Dims()
	switch {
	case n == 0 || n != c:
		return fmt.Errorf("inject: sample: factor is %d×%d: need a non-empty square matrix", n, c)
	case rng == nil:
		return errors.New("inject: sample: nil rng")
	case count < 0:
		return fmt.Errorf("inject: sample: count %d: must be >= 0", count)
	case count > math.MaxInt/n || len(dst) != count*n:
		return fmt.Errorf("inject: sample: dst has %d values: need count*n = %d*%d", len(dst), count, n)
	case mean != nil && len(mean) != n:
		return fmt.Errorf("inject: sample: mean has %d values: need %d", len(mean), n)
	}
	if count == 0 {
		return nil
	}

	// Gemm without a transpose accumulates tap i of a filter as
	// ((g_0·Factor[i][0]) + g_1·Factor[i][1]) + ... in its serial and parallel paths
	// alike, which keeps the bits independent of the batch split; so copy Factorᵀ.
	// Columns of zeros, those of the clipped eigenvalues, add nothing: leave them and
	// their draws out, which keeps the bits and saves their share of the work.
	raw := p.Factor.RawMatrix()
	ft := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j, v := range raw.Data[i*raw.Stride : i*raw.Stride+n] {
			ft[j*n+i] = v
		}
	}
	var keep []int // the columns of Factor that are not all zero
	for j := range n {
		row := ft[j*n : (j+1)*n]
		if slices.ContainsFunc(row, func(v float64) bool { return v != 0 }) {
			copy(ft[len(keep)*n:], row)
			keep = append(keep, j)
		}
	}
	m := len(keep)

	batch := max(1, sampleChunk/n)
	g := make([]float64, n)
	gk := make([]float64, min(batch, count)*m)
	for first := 0; first < count; first += batch {
		rows := min(batch, count-first)
		for r := range rows {
			for i := range g {
				g[i] = rng.NormFloat64()
			}
			for c, j := range keep {
				gk[r*m+c] = g[j]
			}
		}
		out := dst[first*n : (first+rows)*n]
		if m == 0 {
			clear(out)
		} else {
			blas64.Gemm(blas.NoTrans, blas.NoTrans, 1,
				blas64.General{Rows: rows, Cols: m, Stride: m, Data: gk[:rows*m]},
				blas64.General{Rows: m, Cols: n, Stride: n, Data: ft[:m*n]},
				0, blas64.General{Rows: rows, Cols: n, Stride: n, Data: out})
		}
		if mean != nil {
			for i := range out {
				out[i] += mean[i%n]
			}
		}
	}
	return nil
}
