package verify

import "math"

// chiSquareTails returns P(X ≤ x) and P(X ≥ x) for X ~ χ² with k degrees of freedom.
// Both are computed directly, not one as 1 minus the other, so that a tiny tail keeps its
// precision.
func chiSquareTails(x float64, k int) (lower, upper float64) {
	if x <= 0 {
		return 0, 1
	}
	return gammaTails(float64(k)/2, x/2)
}

// gammaTails returns the regularized incomplete gamma functions P(a, x) and Q(a, x) for
// a > 0, x > 0: P by its power series where it converges fast (x < a+1), Q by its continued
// fraction elsewhere, the other as the complement.
func gammaTails(a, x float64) (p, q float64) {
	// The common factor x^a e^{-x} / Γ(a), in logs to avoid overflow.
	lg, _ := math.Lgamma(a)
	logFactor := a*math.Log(x) - x - lg
	if x < a+1 {
		sum, term := 1/a, 1/a
		for n := 1; n < 10000; n++ {
			term *= x / (a + float64(n))
			sum += term
			if math.Abs(term) < math.Abs(sum)*1e-16 {
				break
			}
		}
		p = sum * math.Exp(logFactor)
		return p, 1 - p
	}

	// Q(a, x) = e^{-x} x^a / Γ(a) · 1/(x+1-a- 1·(1-a)/(x+3-a- 2·(2-a)/(x+5-a- ...))),
	// evaluated by the modified Lentz method.
	const tiny = 1e-300
	b := x + 1 - a
	c := 1 / tiny
	d := 1 / b
	h := d
	for i := 1; i < 10000; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = b + an/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		step := d * c
		h *= step
		if math.Abs(step-1) < 1e-16 {
			break
		}
	}
	q = h * math.Exp(logFactor)
	return 1 - q, q
}
