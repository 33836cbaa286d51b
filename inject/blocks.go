package inject

import (
	"cmp"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// maxSplitAxes bounds the axes projectBlocks splits on, so 2³ parity patterns at most.
const maxSplitAxes = 3

// projectBlocks returns project(g.closedForm(sigma)), the projection of the closed
// form of the kernel g, computed by blocks. The closed form is unchanged by the
// kernel's symmetries: flipping any axis, and permuting axes of the same size
// (transposing a square kernel). In a basis adapted to them, which [symmetryBlocks]
// builds, it is block diagonal; the eigendecomposition is cubic, so solving the blocks
// one by one, concurrently, is far cheaper: about 40 times for a square kernel. Blocks
// that an axis permutation maps onto each other have the same matrix and are solved
// once. The blocks are filled from the kernel's per-axis factors (ALGORITHM.md 2.9),
// without forming the n×n closed form. The result equals project(g.closedForm(sigma))
// up to rounding. Kernels with more than maxSplitAxes axes of size 2 or more fall back
// to project.
func projectBlocks(g *grid, sigma float64) (*Projection, error) {
	blocks := symmetryBlocks(g)
	if blocks == nil {
		return project(g.closedForm(sigma))
	}

	// Solve every distinct eigenproblem on its own goroutine, the biggest first: it
	// takes most of the time, and the others fit beside it.
	var eigs []*eigBlock
	for i, b := range blocks {
		if i == 0 || b.eig != blocks[i-1].eig {
			eigs = append(eigs, b.eig)
		}
	}
	slices.SortStableFunc(eigs, func(x, y *eigBlock) int { return cmp.Compare(y.size, x.size) })
	axes := g.axisFactors(sigma)
	errs := make([]error, len(eigs))
	parallelFor(len(eigs), 1, func(i int) { errs[i] = eigs[i].solve(axes) })
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}

	// Order the eigenpairs of all blocks by eigenvalue; the stable sort keeps ties
	// in block order, so the column order is deterministic.
	n := g.taps
	type pair struct {
		lambda float64
		block  int
		col    int
	}
	pairs := make([]pair, 0, n)
	for bi, b := range blocks {
		for j, l := range b.eig.lambda {
			pairs = append(pairs, pair{l, bi, j})
		}
	}
	slices.SortStableFunc(pairs, func(x, y pair) int { return cmp.Compare(x.lambda, y.lambda) })
	lambda := make([]float64, n)
	colBlock := make([]int, n)
	colIndex := make([]int, n)
	for c, p := range pairs {
		lambda[c], colBlock[c], colIndex[c] = p.lambda, p.block, p.col
	}
	// Columns before first have λ <= 0 and are zero.
	first, _ := slices.BinarySearch(lambda, math.SmallestNonzeroFloat64)

	// Map the factor columns and the covariance back to taps, row by row: tap i enters
	// basis vector index[i] of each block with weight coef[i]. Each row is written by
	// one goroutine in a fixed order, so the bits do not depend on the split.
	factor := mat.NewDense(n, n, nil)
	fr := factor.RawMatrix()
	cov := mat.NewSymDense(n, nil)
	cr := cov.RawSymmetric()
	parallelFor(n, 16, func(i int) {
		frow := fr.Data[i*fr.Stride : i*fr.Stride+n]
		for c := first; c < n; c++ {
			b := &blocks[colBlock[c]]
			if u := b.index[i]; u >= 0 {
				f := b.eig.factor
				frow[c] = b.coef[i] * f.Data[u*f.Stride+colIndex[c]]
			}
		}

		crow := cr.Data[i*cr.Stride : i*cr.Stride+n]
		for _, b := range blocks {
			u := b.index[i]
			if u < 0 {
				continue
			}
			ci := b.coef[i]
			bc := b.eig.cov
			brow := bc.Data[u*bc.Stride : u*bc.Stride+bc.Cols]
			for j := i; j < n; j++ {
				if v := b.index[j]; v >= 0 {
					crow[j] += ci * b.coef[j] * brow[v]
				}
			}
		}
	})
	return &Projection{Cov: cov, Factor: factor, Eigenvalues: lambda}, nil
}

// parallelFor calls f(i) for every i in [0, n) on GOMAXPROCS goroutines, which take
// chunks of consecutive i in increasing order.
func parallelFor(n, chunk int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), (n+chunk-1)/chunk) {
		wg.Go(func() {
			for {
				lo := int(next.Add(int64(chunk))) - chunk
				if lo >= n {
					return
				}
				for i := lo; i < min(lo+chunk, n); i++ {
					f(i)
				}
			}
		})
	}
	wg.Wait()
}

// axisFactor is the closed form's factor along one axis of size k, in the basis of
// vectors that are even or odd under the axis's flip (see [symmetryBlocks]). The
// closed form is R = ½(⊗_a A_a + ⊗_a A_aᵀ) − ½·(⊗_a z_a)(⊗_a z_a)ᵀ, with z_a the
// Gaussian profile along axis a and A_a[i][j] = z_a[i]·exp(−w_a(j−i)²/(2σ)). Each A_a
// commutes with the flip, so it is zero between even and odd vectors, and z_a is even.
type axisFactor struct {
	even, odd []float64 // A_a between even and between odd vectors, row-major
	z         []float64 // z_a against the even vectors
}

// axisFactors returns the factors of every axis of g at sigma.
func (g *grid) axisFactors(sigma float64) []axisFactor {
	out := make([]axisFactor, len(g.dims))
	for ax, k := range g.dims {
		z := make([]float64, k)
		for i := range z {
			d := float64(i) - float64(k-1)/2
			z[i] = math.Exp(-d * d / (2 * sigma))
		}
		c := make([]float64, k) // c[t] = exp(−w_a(t)²/(2σ)), t = (j−i) mod k
		for t := range c {
			c[t] = math.Exp(-g.wrap2[ax][t] / (2 * sigma))
		}
		at := func(i, j int) float64 { return z[i] * c[(j-i+k)%k] }

		// Vector t has taps t and k−1−t, one tap in the middle of an odd k; sum over
		// their taps with signs ±1 and scale by 2^(−h/2) for h halvings.
		taps := func(t int, odd bool) (p, q int, s float64, h int) {
			if t == k-1-t {
				return t, -1, 0, 0
			}
			s = 1
			if odd {
				s = -1
			}
			return t, k - 1 - t, s, 1
		}
		restrict := func(odd bool) []float64 {
			m := (k + 1) / 2
			if odd {
				m = k / 2
			}
			a := make([]float64, m*m)
			for t := range m {
				p, q, s, h := taps(t, odd)
				for u := range m {
					p2, q2, s2, h2 := taps(u, odd)
					v := at(p, p2)
					if q2 >= 0 {
						v += s2 * at(p, q2)
					}
					if q >= 0 {
						v += s * at(q, p2)
						if q2 >= 0 {
							v += s * s2 * at(q, q2)
						}
					}
					a[t*m+u] = halfPower(h+h2) * v
				}
			}
			return a
		}
		out[ax].even, out[ax].odd = restrict(false), restrict(true)
		out[ax].z = make([]float64, (k+1)/2)
		for t := range out[ax].z {
			p, q, _, h := taps(t, false)
			v := z[p]
			if q >= 0 {
				v += z[q]
			}
			out[ax].z[t] = halfPower(h) * v
		}
	}
	return out
}

// eigBlock is one eigenproblem of the symmetry-adapted basis, shared by the blocks
// that an axis permutation maps onto each other. Its basis vectors are sums of the
// products of per-axis even and odd vectors, named by their per-axis positions.
type eigBlock struct {
	odd     []bool   // parity of each axis
	shape   []int    // number of even or odd vectors along each axis
	vectors [][]term // vectors[u]: the products that make up basis vector u

	size   int
	lambda []float64      // eigenvalues, ascending
	factor blas64.General // size×size, Q·diag(√max(λ, 0))
	cov    blas64.General // size×size, factor·factorᵀ, both triangles
}

// term is a product of per-axis vectors, named row-major over eigBlock.shape, with
// its weight in a basis vector.
type term struct {
	name   int
	weight float64
}

// solve fills e from the closed form's factors along each axis: B = Pᵀ·R·P over the
// block's basis, then its eigenpairs.
func (e *eigBlock) solve(axes []axisFactor) error {
	// The closed form between two products of per-axis vectors, the names' positions
	// decoded once.
	rank := len(e.shape)
	names := 1
	for _, m := range e.shape {
		names *= m
	}
	pos := make([]int, names*rank)
	for f := range names {
		for a, rest := rank-1, f; a >= 0; a-- {
			pos[f*rank+a], rest = rest%e.shape[a], rest/e.shape[a]
		}
	}
	factors := make([][]float64, rank)
	allEven := true
	for a, ax := range axes {
		factors[a] = ax.even
		if e.odd[a] {
			factors[a], allEven = ax.odd, false
		}
	}
	var zz []float64 // z against each product, when all axes are even
	if allEven {
		zz = make([]float64, names)
		for f := range zz {
			zz[f] = 1
			for a := range rank {
				zz[f] *= axes[a].z[pos[f*rank+a]]
			}
		}
	}
	closedForm := func(f, h int) float64 {
		p, q := 1.0, 1.0
		for a, m := range e.shape {
			i, j := pos[f*rank+a], pos[h*rank+a]
			p *= factors[a][i*m+j]
			q *= factors[a][j*m+i]
		}
		v := 0.5 * (p + q)
		if zz != nil {
			v -= 0.5 * zz[f] * zz[h]
		}
		return v
	}

	m := e.size
	blk := mat.NewSymDense(m, nil)
	br := blk.RawSymmetric()
	for u, tu := range e.vectors {
		row := br.Data[u*br.Stride : u*br.Stride+m]
		for v := u; v < m; v++ {
			var s float64
			for _, x := range tu {
				for _, y := range e.vectors[v] {
					s += x.weight * y.weight * closedForm(x.name, y.name)
				}
			}
			row[v] = s
		}
	}

	p, err := factorize(blk)
	if err != nil {
		return err
	}
	e.lambda = p.Eigenvalues
	e.factor = p.Factor.RawMatrix()
	// Mirror the covariance so that the tap mapping reads rows only.
	cr := p.Cov.RawSymmetric()
	for i := range m {
		for j := i + 1; j < m; j++ {
			cr.Data[j*cr.Stride+i] = cr.Data[i*cr.Stride+j]
		}
	}
	e.cov = blas64.General{Rows: m, Cols: m, Stride: cr.Stride, Data: cr.Data}
	return nil
}

// basisBlock is one block of the symmetry-adapted basis, laid out over the taps: tap i
// enters basis vector index[i] with weight coef[i], or none when index[i] < 0.
type basisBlock struct {
	index []int
	coef  []float64
	eig   *eigBlock
}

// symmetryBlocks returns a basis of the taps of g adapted to the symmetries of the
// closed form, as blocks, or nil when g has no axis of size 2 or more or more than
// maxSplitAxes of them. Blocks that share an eigBlock are adjacent.
//
// Flipping an axis of size k maps tap t to k−1−t. The vectors (e_t + e_{k−1−t})/√2
// for t < k−1−t, and e_t for the middle tap of an odd k, are even under the flip; the
// vectors (e_t − e_{k−1−t})/√2 are odd. Their products over the axes form one block
// per parity pattern (even or odd along each axis), each about n/2^rank on a side.
//
// Axes of the same size can be permuted too. A permutation maps the block of one
// parity pattern onto the block of the permuted pattern, with the same matrix, so of
// each such orbit of patterns only the block whose equal-size axes list their even
// ones first is solved. A transposition of two axes with the same size and parity
// maps that block onto itself; it splits into the vectors symmetric and antisymmetric
// under the swap, (x ± swap(x))/√2. Of each class of equal-size axes with equal
// parity, axes are paired in order and every pair is split, so a square kernel gives
// the blocks of the dihedral group of the square: five distinct ones, the biggest a
// quarter of the taps, instead of four of a quarter each. (Three axes of one size and
// parity are split by one pair only, which leaves some savings on the table.)
func symmetryBlocks(g *grid) []basisBlock {
	var axes []int
	for a, k := range g.dims {
		if k >= 2 {
			axes = append(axes, a)
		}
	}
	if len(axes) == 0 || len(axes) > maxSplitAxes {
		return nil
	}
	perms := axisPerms(g.dims, axes)

	var blocks []basisBlock
	rank := len(g.dims)
	for s := range 1 << len(axes) {
		odd := make([]bool, rank)
		for bit, a := range axes {
			odd[a] = s>>bit&1 == 1
		}
		if !evensFirst(g.dims, axes, odd) {
			continue
		}

		// The patterns of the orbit, each with the first permutation reaching it;
		// the identity comes first.
		var orbit [][]int
		seen := map[string]bool{}
		for _, perm := range perms {
			key := make([]byte, rank)
			for a, to := range perm {
				if odd[a] {
					key[to] = 1
				}
			}
			if !seen[string(key)] {
				seen[string(key)] = true
				orbit = append(orbit, perm)
			}
		}

		pairs := swapPairs(g.dims, axes, odd)
		for signs := range 1 << len(pairs) {
			e, index, coef := parityLayout(g, odd, pairs, signs)
			if e.size == 0 {
				continue
			}
			for _, perm := range orbit {
				pi, pc := permuteLayout(g, index, coef, perm)
				blocks = append(blocks, basisBlock{index: pi, coef: pc, eig: e})
			}
		}
	}
	return blocks
}

// axisPerms returns the permutations of the axes of dims that move only the given
// axes and only among axes of the same size, identity first: perm[a] is where axis a
// goes.
func axisPerms(dims, axes []int) [][]int {
	var perms [][]int
	perm := make([]int, len(dims))
	for a := range perm {
		perm[a] = a
	}
	used := make([]bool, len(dims))
	var place func(i int)
	place = func(i int) {
		if i == len(axes) {
			perms = append(perms, slices.Clone(perm))
			return
		}
		a := axes[i]
		for _, to := range axes {
			if !used[to] && dims[to] == dims[a] {
				used[to], perm[a] = true, to
				place(i + 1)
				used[to] = false
			}
		}
	}
	place(0)
	return perms
}

// evensFirst reports whether, among the given axes of each size, the even ones all
// come before the odd ones: the representative of an orbit of parity patterns.
func evensFirst(dims, axes []int, odd []bool) bool {
	for i, a := range axes {
		for _, b := range axes[i+1:] {
			if dims[a] == dims[b] && odd[a] && !odd[b] {
				return false
			}
		}
	}
	return true
}

// swapPairs pairs, in order, the given axes that share their size and parity.
func swapPairs(dims, axes []int, odd []bool) [][2]int {
	var pairs [][2]int
	paired := make([]bool, len(dims))
	for i, a := range axes {
		if paired[a] {
			continue
		}
		for _, b := range axes[i+1:] {
			if !paired[b] && dims[a] == dims[b] && odd[a] == odd[b] {
				paired[a], paired[b] = true, true
				pairs = append(pairs, [2]int{a, b})
				break
			}
		}
	}
	return pairs
}

// parityLayout lays out the block of the parity pattern odd, split by the swaps of
// pairs: bit j of signs picks the vectors antisymmetric under pairs[j]. The products
// of per-axis vectors are named by their positions t_a = min(x_a, k_a−1−x_a) for their
// taps x. A basis vector is the signed, normalized sum of the products that the swaps
// reach from a name with t_a <= t_b for every pair (a, b), strictly when antisymmetric;
// vectors are numbered in the row-major order of these names. It returns the block's
// eigenproblem, with its basis, and the layout over the taps.
func parityLayout(g *grid, odd []bool, pairs [][2]int, signs int) (e *eigBlock, index []int, coef []float64) {
	rank := len(g.dims)
	e = &eigBlock{odd: odd, shape: make([]int, rank)}
	names := 1
	for a, k := range g.dims {
		e.shape[a] = (k + 1) / 2
		if odd[a] {
			e.shape[a] = k / 2
		}
		names *= e.shape[a]
	}
	name := func(t []int) int {
		f := 0
		for a, m := range e.shape {
			f = f*m + t[a]
		}
		return f
	}

	// Number the ordered names and list the products each vector sums.
	number := make([]int, names)
	t := make([]int, rank)
	for f := range number {
		for a, rest := rank-1, f; a >= 0; a-- {
			t[a], rest = rest%e.shape[a], rest/e.shape[a]
		}
		number[f] = -1
		if !ordered(t, pairs, signs) {
			continue
		}
		number[f] = e.size
		e.size++
		var swaps []int // pairs whose swap changes the name
		for j, p := range pairs {
			if t[p[0]] != t[p[1]] {
				swaps = append(swaps, j)
			}
		}
		w := halfPower(len(swaps))
		vec := make([]term, 0, 1<<len(swaps))
		for set := range 1 << len(swaps) {
			s := slices.Clone(t)
			sign := 1.0
			for bit, j := range swaps {
				if set>>bit&1 == 1 {
					a, b := pairs[j][0], pairs[j][1]
					s[a], s[b] = s[b], s[a]
					if signs>>j&1 == 1 {
						sign = -sign
					}
				}
			}
			vec = append(vec, term{name: name(s), weight: sign * w})
		}
		e.vectors = append(e.vectors, vec)
	}

	// Each tap lies in one per-axis vector along each axis, so in one product.
	index = make([]int, g.taps)
	coef = make([]float64, g.taps)
	for x := range g.taps {
		index[x] = -1
		negative, halvings, in := false, 0, true
		for a, k := range g.dims {
			pos := g.coords[x*rank+a]
			mirror := k - 1 - pos
			t[a] = min(pos, mirror)
			switch {
			case pos == mirror:
				in = in && !odd[a] // the middle tap of an odd k is even
			case pos > mirror:
				negative = negative != odd[a]
				halvings++
			default:
				halvings++
			}
		}
		for j, p := range pairs {
			anti := signs>>j&1 == 1
			a, b := p[0], p[1]
			switch {
			case t[a] == t[b]:
				in = in && !anti
			case t[a] > t[b]:
				t[a], t[b] = t[b], t[a]
				negative = negative != anti
				halvings++
			default:
				halvings++
			}
		}
		if !in {
			continue
		}
		index[x] = number[name(t)]
		coef[x] = halfPower(halvings)
		if negative {
			coef[x] = -coef[x]
		}
	}
	return e, index, coef
}

// ordered reports whether t[a] <= t[b] for every pair (a, b), strictly where signs
// marks the pair antisymmetric.
func ordered(t []int, pairs [][2]int, signs int) bool {
	for j, p := range pairs {
		if t[p[0]] > t[p[1]] || (signs>>j&1 == 1 && t[p[0]] == t[p[1]]) {
			return false
		}
	}
	return true
}

// halfPower returns 2^(−h/2), the norm of a sum of 2^h taps with weights ±1.
func halfPower(h int) float64 {
	if h%2 == 1 {
		return math.Ldexp(math.Sqrt2/2, -(h-1)/2)
	}
	return math.Ldexp(1, -h/2)
}

// permuteLayout returns the layout of the block that the axis permutation perm maps
// the given layout onto: tap x' has the index and weight of the tap x with
// x'[perm[a]] = x[a].
func permuteLayout(g *grid, index []int, coef []float64, perm []int) ([]int, []float64) {
	identity := true
	for a, to := range perm {
		identity = identity && a == to
	}
	if identity {
		return index, coef
	}
	rank := len(g.dims)
	pi := make([]int, g.taps)
	pc := make([]float64, g.taps)
	t := make([]int, rank)
	for x := range g.taps {
		for a, to := range perm {
			t[to] = g.coords[x*rank+a]
		}
		y := 0
		for a, k := range g.dims {
			y = y*k + t[a]
		}
		pi[y], pc[y] = index[x], coef[x]
	}
	return pi, pc
}
