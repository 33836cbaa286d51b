package verify

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// DefaultLevel is the chance, for a whole model, that Check flags a correct rewrite: it
// is split evenly between the rewritten layers, and within a layer between its tests.
const DefaultLevel = 1e-3

// Target is the distribution a rewritten layer's filters should follow, over the
// flattened kernel (row-major taps).
type Target struct {
	Cov  []float64 // n×n, row-major
	Mean []float64 // n values; nil for a zero mean
	// Factor is n×n, row-major, with Cov = Factor·Factorᵀ and orthogonal columns: column j
	// is the eigenvector of eigenvalue λ_j scaled by √λ_j, as inject's Projection has it.
	Factor []float64
}

// TargetOf makes the Target of N(mean·scale, cov·scale²) from a covariance and its factor
// (cov = factor·factorᵀ, orthogonal columns), as inject's Projection holds them. mean may
// be nil for zero.
func TargetOf(cov mat.Symmetric, factor mat.Matrix, mean []float64, scale float64) *Target {
	n := cov.SymmetricDim()
	t := &Target{Cov: make([]float64, n*n), Factor: make([]float64, n*n)}
	for i := range n {
		for j := range n {
			t.Cov[i*n+j] = cov.At(i, j) * scale * scale
			t.Factor[i*n+j] = factor.At(i, j) * scale
		}
	}
	for _, m := range mean {
		t.Mean = append(t.Mean, m*scale)
	}
	return t
}

// Fidelity is how well one layer's filters match the distribution they were drawn from.
//
// The verdict rests on whitened coordinates. Each filter f is written in the eigenbasis of
// Σ and divided by the standard deviation there, y_j = q_jᵀ(f − µ)/√λ_j, for every direction
// whose λ_j stands clear of the rounding of the tensor's type. Under the target the y_j of
// H filters are independent standard normals, so Σ_i y_ij² is χ² with H degrees of freedom
// and the mean of y_j is normal with variance 1/H: exact tests, two-sided for the variance.
// Their smallest p-value, multiplied by their number (Bonferroni), is PValue, and a layer
// is a mismatch when PValue falls below its share of the model's level. The energy of the
// filters in the directions Σ leaves out must also be as small as Σ says. The other fields
// describe the fit and do not decide it.
type Fidelity struct {
	Filters    int // H, the number of filters
	Taps       int // n, the number of weights per filter
	Directions int // eigen-directions of Σ tested

	// RelFrobenius is ‖E − Σ‖_F / ‖Σ‖_F for the empirical covariance E (normalized by
	// H − 1); Expected is its typical size from sampling alone,
	// √((‖Σ‖_F² + tr(Σ)²)/(H − 1)) / ‖Σ‖_F.
	RelFrobenius, Expected float64
	// TraceRatio is tr(E)/tr(Σ), the filters' total variance against the target's.
	TraceRatio float64
	// MaxZ is the largest |E_ij − Σ_ij| / √((Σ_ij² + Σ_ii·Σ_jj)/(H − 1)); NaN with fewer
	// than 32 filters, where it means little.
	MaxZ float64
	// PValue is the Bonferroni-adjusted smallest p-value of the whitened tests (at most 1).
	PValue float64
	// Outside is the filters' mean energy in the directions that were not tested, and
	// OutsideExpected what Σ and rounding allow there.
	Outside, OutsideExpected float64

	OK      bool
	Problem string // why the layer does not match; "" when OK
}

// CheckFidelity compares filters (count filters of n taps each, filter j at
// filters[j*n:(j+1)*n]) with the target distribution. roundoff is the unit roundoff of the
// type the filters were stored in (2⁻²⁴ for float32, 2⁻¹¹ for float16; 0 when exact), and
// level the chance of flagging a correct layer, such as DefaultLevel divided by the number
// of layers checked.
func CheckFidelity(filters []float64, count int, t *Target, roundoff, level float64) (Fidelity, error) {
	if count <= 0 || len(filters)%count != 0 {
		return Fidelity{}, fmt.Errorf("verify: %d values do not make %d filters", len(filters), count)
	}
	n := len(filters) / count
	if t == nil || len(t.Cov) != n*n || len(t.Factor) != n*n || (t.Mean != nil && len(t.Mean) != n) {
		return Fidelity{}, fmt.Errorf("verify: the target does not describe filters of %d taps", n)
	}
	f := Fidelity{Filters: count, Taps: n, MaxZ: math.NaN(), PValue: 1, OK: true}
	for _, v := range filters {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			f.OK, f.Problem = false, "filters hold NaN or Inf"
			return f, nil
		}
	}
	cov := t.Cov
	mean := t.Mean
	if mean == nil {
		mean = make([]float64, n)
	}

	// Centre the filters on the target's mean.
	x := make([]float64, len(filters))
	for j := range count {
		for i := range n {
			x[j*n+i] = filters[j*n+i] - mean[i]
		}
	}

	describe(&f, x, count, n, cov)

	// Whitened tests in every direction that stands clear of rounding.
	lambda := make([]float64, n)
	maxDiag, trace := 0.0, 0.0
	for i := range n {
		maxDiag = max(maxDiag, cov[i*n+i])
		trace += cov[i*n+i]
		for k := range n {
			lambda[i] += t.Factor[k*n+i] * t.Factor[k*n+i]
		}
	}
	if trace <= 0 {
		return f, fmt.Errorf("verify: the target covariance is zero")
	}
	lambdaMax := 0.0
	for _, l := range lambda {
		lambdaMax = max(lambdaMax, l)
	}
	rounding := roundoff * roundoff * maxDiag / 3 // variance of rounding to the type, per direction, at most
	cutoff := max(100*rounding, 1e-9*lambdaMax)
	if count < 2 {
		f.Problem = "" // a single filter cannot be judged
		return f, nil
	}
	tests := 0
	minP := 1.0
	worst := "" // what the smallest p-value says
	var outside, outsideExpected float64
	for j := range n {
		if lambda[j] < cutoff {
			outsideExpected += max(lambda[j], 0)
			continue
		}
		f.Directions++
		var sumSq, sum float64
		for i := range count {
			y := 0.0
			for k := range n {
				y += t.Factor[k*n+j] * x[i*n+k]
			}
			y /= lambda[j] // F_jᵀx/λ_j = q_jᵀx/√λ_j
			sumSq += y * y
			sum += y
		}
		lo, hi := chiSquareTails(sumSq, count)
		if p := 2 * min(lo, hi); p < minP {
			minP, worst = p, fmt.Sprintf("their variance along eigenvector %d of Σ is %.3g times Σ's", j+1, sumSq/float64(count))
		}
		mz := math.Abs(sum) / math.Sqrt(float64(count))
		if p := math.Erfc(mz / math.Sqrt2); p < minP {
			minP, worst = p, fmt.Sprintf("their mean along eigenvector %d of Σ is %.3g standard errors from the target's", j+1, mz)
		}
		tests += 2
	}

	// Energy outside the tested directions: ‖x‖² less its part inside them.
	if f.Directions < n {
		for i := range count {
			xi := x[i*n : (i+1)*n]
			total := 0.0
			for _, v := range xi {
				total += v * v
			}
			inside := 0.0
			for j := range n {
				if lambda[j] < cutoff {
					continue
				}
				p := 0.0
				for k := range n {
					p += t.Factor[k*n+j] * xi[k]
				}
				inside += p * p / lambda[j]
			}
			outside += max(total-inside, 0)
		}
		outside /= float64(count)
	}
	outsideExpected += float64(n) * rounding
	f.Outside, f.OutsideExpected = outside, outsideExpected
	f.PValue = min(1, minP*float64(max(tests, 1)))

	// The verdict.
	switch {
	case f.PValue < level:
		f.OK, f.Problem = false, fmt.Sprintf("%s (adjusted p = %.2g, below %.2g); covariance error %.3g against %.3g from sampling alone, variance ratio %.3g",
			worst, f.PValue, level, f.RelFrobenius, f.Expected, f.TraceRatio)
	case outside > 10*outsideExpected+1e-12*trace:
		f.OK, f.Problem = false, fmt.Sprintf("the filters have energy %.3g in directions where Σ allows %.3g", outside, outsideExpected)
	}
	return f, nil
}

// describe fills the descriptive statistics of the fit: the relative Frobenius error of the
// empirical covariance, its typical size, the variance ratio and the largest entry z.
func describe(f *Fidelity, x []float64, count, n int, cov []float64) {
	mu := make([]float64, n)
	for j := range count {
		for i, v := range x[j*n : (j+1)*n] {
			mu[i] += v
		}
	}
	for i := range mu {
		mu[i] /= float64(count)
	}
	emp := make([]float64, n*n)
	dev := make([]float64, n)
	for j := range count {
		for i, v := range x[j*n : (j+1)*n] {
			dev[i] = v - mu[i]
		}
		for r := range n {
			row := emp[r*n : r*n+n]
			for c := r; c < n; c++ {
				row[c] += dev[r] * dev[c]
			}
		}
	}
	den := float64(max(count-1, 1))
	for r := range n {
		for c := r; c < n; c++ {
			emp[r*n+c] /= den
			emp[c*n+r] = emp[r*n+c]
		}
	}
	var errSq, normSq, trE, trS float64
	for r := range n {
		for c := range n {
			d := emp[r*n+c] - cov[r*n+c]
			errSq += d * d
			normSq += cov[r*n+c] * cov[r*n+c]
		}
		trE += emp[r*n+r]
		trS += cov[r*n+r]
	}
	if normSq == 0 || trS <= 0 {
		return
	}
	f.RelFrobenius = math.Sqrt(errSq / normSq)
	f.Expected = math.Sqrt((normSq+trS*trS)/den) / math.Sqrt(normSq)
	f.TraceRatio = trE / trS
	if count >= 32 {
		f.MaxZ = 0
		for r := range n {
			for c := r; c < n; c++ {
				s := cov[r*n+c]
				v := (s*s + cov[r*n+r]*cov[c*n+c]) / den
				if v > 1e-30 {
					f.MaxZ = max(f.MaxZ, math.Abs(emp[r*n+c]-s)/math.Sqrt(v))
				}
			}
		}
	}
}
