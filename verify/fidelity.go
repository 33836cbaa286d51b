package verify

import (
	"fmt"
	"math"
)

// Thresholds of the fidelity checks. Each compares a statistic with its spread under the
// hypothesis that the filters are independent draws from the target distribution, so a
// correct rewrite fails them only by chance, rarely.
const (
	// frobeniusFactor: the relative Frobenius error of the empirical covariance may be this
	// many times the error that sampling alone gives on average.
	frobeniusFactor = 3
	// maxZ: the largest standardized deviation of a covariance entry, or of a mean entry.
	maxZ = 6
	// minFiltersForZ: below this many filters the entries' deviations are too far from
	// normal for a z bound to mean much, so only the Frobenius and trace checks run.
	minFiltersForZ = 32
	// minFilters: with fewer filters than this nothing can be told apart from noise.
	minFilters = 4
)

// Fidelity is how well one layer's filters match the distribution they were drawn from.
type Fidelity struct {
	Filters int // H, the number of filters
	Taps    int // n, the number of weights per filter

	// RelFrobenius is ‖E − Σ‖_F / ‖Σ‖_F for the empirical covariance E (normalized by
	// H − 1) and the target Σ; Expected is its typical size from sampling alone,
	// √((‖Σ‖_F² + tr(Σ)²)/(H − 1)) / ‖Σ‖_F.
	RelFrobenius, Expected float64
	// TraceRatio is tr(E)/tr(Σ): the filters' total variance against the target's. Under
	// the target it is near 1 within ±TraceSpread (four standard deviations).
	TraceRatio, TraceSpread float64
	// MaxZ is the largest |E_ij − Σ_ij| / √((Σ_ij² + Σ_ii·Σ_jj)/(H − 1)); NaN when there
	// are fewer than 32 filters.
	MaxZ float64
	// MeanZ is the largest |mean_i − µ_i| / √(Σ_ii/H).
	MeanZ float64

	OK      bool
	Problem string // why the layer does not match; "" when OK
}

// CheckFidelity compares filters (count filters of n taps each, filter j at
// filters[j*n:(j+1)*n]) with the distribution N(mean, cov); cov is n×n row-major and mean
// may be nil for zero.
func CheckFidelity(filters []float64, count int, cov, mean []float64) (Fidelity, error) {
	if count <= 0 || len(filters)%count != 0 {
		return Fidelity{}, fmt.Errorf("verify: %d values do not make %d filters", len(filters), count)
	}
	n := len(filters) / count
	if len(cov) != n*n || (mean != nil && len(mean) != n) {
		return Fidelity{}, fmt.Errorf("verify: target has %d covariance entries for filters of %d taps", len(cov), n)
	}
	f := Fidelity{Filters: count, Taps: n, MaxZ: math.NaN(), OK: true}
	for _, v := range filters {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			f.OK, f.Problem = false, "filters hold NaN or Inf"
			return f, nil
		}
	}

	// Empirical mean and covariance.
	mu := make([]float64, n)
	for j := range count {
		for i, v := range filters[j*n : (j+1)*n] {
			mu[i] += v
		}
	}
	for i := range mu {
		mu[i] /= float64(count)
	}
	emp := make([]float64, n*n)
	dev := make([]float64, n)
	for j := range count {
		for i, v := range filters[j*n : (j+1)*n] {
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

	// Frobenius and trace against the target.
	var errSq, normSq, trE, trS, sumLambdaSq float64
	for r := range n {
		for c := range n {
			d := emp[r*n+c] - cov[r*n+c]
			errSq += d * d
			normSq += cov[r*n+c] * cov[r*n+c]
		}
		trE += emp[r*n+r]
		trS += cov[r*n+r]
	}
	sumLambdaSq = normSq // ‖Σ‖_F² = Σλ² for a symmetric Σ
	if normSq == 0 || trS <= 0 {
		return f, fmt.Errorf("verify: the target covariance is zero")
	}
	f.RelFrobenius = math.Sqrt(errSq / normSq)
	f.Expected = math.Sqrt((normSq+trS*trS)/den) / math.Sqrt(normSq)
	f.TraceRatio = trE / trS
	// tr(E)·(H−1) is a weighted sum of χ² variables; with ν = (H−1)·tr(Σ)²/Σλ² effective
	// degrees of freedom, its ratio to the mean has standard deviation √(2/ν).
	nu := den * trS * trS / sumLambdaSq
	f.TraceSpread = 4 * math.Sqrt(2/nu)

	// Entry-wise z scores.
	if count >= minFiltersForZ {
		f.MaxZ = 0
		for r := range n {
			for c := r; c < n; c++ {
				s := cov[r*n+c]
				v := (s*s + cov[r*n+r]*cov[c*n+c]) / den
				if v <= 1e-30 {
					continue
				}
				f.MaxZ = max(f.MaxZ, math.Abs(emp[r*n+c]-s)/math.Sqrt(v))
			}
		}
	}
	for i := range n {
		want := 0.0
		if mean != nil {
			want = mean[i]
		}
		if v := cov[i*n+i] / float64(count); v > 1e-30 {
			f.MeanZ = max(f.MeanZ, math.Abs(mu[i]-want)/math.Sqrt(v))
		}
	}

	// The verdict.
	switch {
	case count < minFilters:
		f.Problem = "" // too few filters to judge; reported, not flagged
	case f.RelFrobenius > frobeniusFactor*f.Expected:
		f.OK, f.Problem = false, fmt.Sprintf("covariance error %.3g is more than %d times the %.3g sampling alone gives", f.RelFrobenius, frobeniusFactor, f.Expected)
	case f.TraceSpread < 1 && math.Abs(f.TraceRatio-1) > f.TraceSpread:
		f.OK, f.Problem = false, fmt.Sprintf("total variance is %.3g times the target's (expected 1 ± %.2g)", f.TraceRatio, f.TraceSpread)
	case f.MaxZ > maxZ:
		f.OK, f.Problem = false, fmt.Sprintf("a covariance entry is %.3g standard deviations from the target", f.MaxZ)
	case f.MeanZ > maxZ:
		f.OK, f.Problem = false, fmt.Sprintf("the mean is %.3g standard deviations from the target", f.MeanZ)
	}
	return f, nil
}
