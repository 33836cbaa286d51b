package verify

import (
	"math"
	"testing"
)

// TestChiSquareTails checks the tails against closed forms: χ² with 2 degrees of freedom
// has P(X ≥ x) = e^{−x/2}, with 1 degree P(X ≥ x) = erfc(√(x/2)), and with 4 degrees
// P(X ≥ x) = e^{−x/2}(1 + x/2). Both tails must keep their relative precision where they
// are tiny, since verify compares them with levels near 1e-6.
func TestChiSquareTails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		k    int
		x    float64
		want float64 // upper tail
	}{
		{2, 0.001, math.Exp(-0.0005)},
		{2, 1, math.Exp(-0.5)},
		{2, 60, math.Exp(-30)},
		{1, 0.5, math.Erfc(math.Sqrt(0.25))},
		{1, 3, math.Erfc(math.Sqrt(1.5))},
		{1, 80, math.Erfc(math.Sqrt(40))},
		{4, 2, math.Exp(-1) * 2},
		{4, 10, math.Exp(-5) * 6},
		{4, 100, math.Exp(-50) * 51},
	}
	for _, tt := range tests {
		lo, hi := chiSquareTails(tt.x, tt.k)
		// 1e-12 relative: the series and continued fraction converge to 1e-16 per step.
		if math.Abs(hi-tt.want) > 1e-12*tt.want {
			t.Errorf("χ²(%d) upper tail at %g = %.16g, want %.16g", tt.k, tt.x, hi, tt.want)
		}
		if math.Abs(lo-(1-tt.want)) > 1e-12 {
			t.Errorf("χ²(%d) lower tail at %g = %.16g, want %.16g", tt.k, tt.x, lo, 1-tt.want)
		}
	}
	// A tiny lower tail: χ²(2) at x has P(X ≤ x) = 1 − e^{−x/2} ≈ x/2.
	if lo, _ := chiSquareTails(1e-10, 2); math.Abs(lo-(-math.Expm1(-5e-11))) > 1e-22 {
		t.Errorf("χ²(2) lower tail at 1e-10 = %g, want %g", lo, -math.Expm1(-5e-11))
	}
	if lo, hi := chiSquareTails(0, 8); lo != 0 || hi != 1 {
		t.Errorf("χ²(8) tails at 0 = %g, %g, want 0, 1", lo, hi)
	}
}
