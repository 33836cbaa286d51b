package onnxio

import (
	"math"
	"testing"
)

func TestFloat16Bits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		x    float64
		want uint16
	}{
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"zero", 0, 0x0000},
		{"negative zero", math.Copysign(0, -1), 0x8000},
		{"largest normal", 65504, 0x7bff},
		{"rounds up to inf", 65520, 0x7c00},      // halfway between 65504 and 65536: ties to even = inf
		{"rounds down below inf", 65519, 0x7bff}, // just below the halfway point
		{"inf", math.Inf(1), 0x7c00},
		{"minus inf", math.Inf(-1), 0xfc00},
		{"smallest normal", math.Ldexp(1, -14), 0x0400},
		{"largest subnormal", math.Ldexp(1023, -24), 0x03ff},
		{"smallest subnormal", math.Ldexp(1, -24), 0x0001},
		{"half the smallest subnormal ties to zero", math.Ldexp(1, -25), 0x0000},
		{"above half the smallest subnormal", math.Ldexp(1.0000001, -25), 0x0001},
		{"1.5 ulp subnormal ties to even (2)", math.Ldexp(3, -25), 0x0002},
		{"tie between 1 and next rounds to even", 1 + math.Ldexp(1, -11), 0x3c00},
		{"tie rounds up to even", 1 + 3*math.Ldexp(1, -11), 0x3c02},
		{"third", 1.0 / 3, 0x3555},
		{"subnormal rounds into the smallest normal", math.Ldexp(1023.5, -24), 0x0400},
		// A float64 just above a float16 tie: rounding through float32 first would land on
		// the tie and round to even (down); one-step rounding must round up.
		{"no double rounding", 1 + math.Ldexp(1, -11) + math.Ldexp(1, -40), 0x3c01},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Float16Bits(tt.x); got != tt.want {
				t.Errorf("Float16Bits(%g) = %#04x, want %#04x", tt.x, got, tt.want)
			}
		})
	}
	if got := Float16Bits(math.NaN()); got&0x7c00 != 0x7c00 || got&0x03ff == 0 {
		t.Errorf("Float16Bits(NaN) = %#04x, want a NaN pattern", got)
	}
}

func TestBFloat16Bits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		x    float64
		want uint16
	}{
		{"one", 1, 0x3f80},
		{"minus one", -1, 0xbf80},
		{"pi", math.Pi, 0x4049},
		{"tie to even down", 1 + math.Ldexp(1, -8), 0x3f80},
		{"tie to even up", 1 + 3*math.Ldexp(1, -8), 0x3f82},
		{"largest finite", math.Ldexp(255, 120), 0x7f7f},
		{"overflow", math.Ldexp(1, 128), 0x7f80},
		{"smallest subnormal", math.Ldexp(1, -133), 0x0001},
		{"no double rounding", 1 + math.Ldexp(1, -8) + math.Ldexp(1, -40), 0x3f81},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BFloat16Bits(tt.x); got != tt.want {
				t.Errorf("BFloat16Bits(%g) = %#04x, want %#04x", tt.x, got, tt.want)
			}
		})
	}
}

// TestHalfRoundTrip checks every finite bit pattern: decoding then encoding gives the same
// bits, and rounding a value between two neighbours picks the nearer one.
func TestHalfRoundTrip(t *testing.T) {
	t.Parallel()
	formats := []struct {
		name   string
		encode func(float64) uint16
		decode func(uint16) float64
	}{
		{"float16", Float16Bits, Float16Value},
		{"bfloat16", BFloat16Bits, BFloat16Value},
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			for b := 0; b < 1<<16; b++ {
				v := f.decode(uint16(b))
				if math.IsNaN(v) || math.IsInf(v, 0) {
					continue
				}
				if got := f.encode(v); got != uint16(b) && v != 0 {
					t.Fatalf("%s: bits %#04x decode to %g, which encodes to %#04x", f.name, b, v, got)
				}
				// A value a quarter of the way to the next larger magnitude rounds back.
				next := f.decode(uint16(b + 1))
				if b&0x7fff == 0x7fff || math.IsInf(next, 0) || math.IsNaN(next) || math.Signbit(v) != math.Signbit(next) {
					continue
				}
				if got := f.encode(v + (next-v)/4); got != uint16(b) {
					t.Fatalf("%s: %g (just above %#04x) encodes to %#04x", f.name, v+(next-v)/4, b, got)
				}
			}
		})
	}
}

func TestFloat16Value(t *testing.T) {
	t.Parallel()
	tests := []struct {
		bits uint16
		want float64
	}{
		{0x3c00, 1},
		{0xc000, -2},
		{0x7bff, 65504},
		{0x0001, math.Ldexp(1, -24)},
		{0x7c00, math.Inf(1)},
		{0x3555, 0.333251953125},
	}
	for _, tt := range tests {
		if got := Float16Value(tt.bits); got != tt.want {
			t.Errorf("Float16Value(%#04x) = %g, want %g", tt.bits, got, tt.want)
		}
	}
	if !math.IsNaN(Float16Value(0x7e00)) {
		t.Errorf("Float16Value(0x7e00) is not NaN")
	}
}
