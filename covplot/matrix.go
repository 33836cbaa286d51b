package covplot

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// BlockForm returns the block form of r, the k²×k² covariance of k×k filters in rearranged
// form (ALGORITHM.md 1): B[k·i+l][k·j+m] = R[k·i+j][k·l+m]. The permutation is its own
// inverse, so BlockForm also turns a block form back into the rearranged one.
func BlockForm(r mat.Matrix, k int) (*mat.Dense, error) {
	rows, cols := r.Dims()
	if k < 1 || rows != k*k || cols != k*k {
		return nil, fmt.Errorf("covplot: block form of a %d×%d matrix for %d×%d filters: want %d×%d",
			rows, cols, k, k, k*k, k*k)
	}
	b := mat.NewDense(rows, cols, nil)
	for i := range k {
		for j := range k {
			for l := range k {
				for m := range k {
					b.Set(k*i+l, k*j+m, r.At(k*i+j, k*l+m))
				}
			}
		}
	}
	return b, nil
}

// Mosaic tiles count filters of h×w values each (filter j is filters[j·h·w:(j+1)·h·w],
// row-major) into a matrix of columns tiles per row, filter j in tile row j/columns and
// tile column j%columns, for a Panel with BlockRows h and BlockCols w. Tiles past the last
// filter hold NaN and are drawn empty. columns < 1 chooses a near-square grid.
func Mosaic(filters []float64, count, h, w, columns int) (*mat.Dense, error) {
	if count < 1 || h < 1 || w < 1 || len(filters) < count*h*w {
		return nil, fmt.Errorf("covplot: mosaic of %d filters of %d×%d from %d values", count, h, w, len(filters))
	}
	if columns < 1 {
		columns = int(math.Ceil(math.Sqrt(float64(count))))
	}
	columns = min(columns, count)
	tileRows := (count + columns - 1) / columns
	m := mat.NewDense(tileRows*h, columns*w, nil)
	for i := range tileRows * h {
		for j := range columns * w {
			m.Set(i, j, math.NaN())
		}
	}
	for f := range count {
		r0, c0 := (f/columns)*h, (f%columns)*w
		for i := range h {
			for j := range w {
				m.Set(r0+i, c0+j, filters[f*h*w+i*w+j])
			}
		}
	}
	return m, nil
}
