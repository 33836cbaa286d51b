package inject

import (
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

func TestCacheComputesOnce(t *testing.T) {
	t.Parallel()
	c := NewCache()
	const callers = 16
	got := make([]*Projection, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			// Fresh slices each time: keys compare by value.
			p, err := c.ClosedForm([]int{9, 9}, 1.25)
			if err != nil {
				t.Error(err)
			}
			got[i] = p
		})
	}
	wg.Wait()
	for i, p := range got {
		if p == nil || p != got[0] {
			t.Fatalf("caller %d: got projection %p, want the shared %p", i, p, got[0])
		}
	}
	if len(c.entries) != 1 {
		t.Errorf("got %d entries, want 1", len(c.entries))
	}
}

func TestCacheKeys(t *testing.T) {
	t.Parallel()
	var c Cache // the zero Cache is ready to use
	get := func(kernel []int, sigma float64) *Projection {
		t.Helper()
		p, err := c.ClosedForm(kernel, sigma)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := get([]int{3, 3}, 1)
	if get([]int{3, 3}, 1) != a {
		t.Error("same key: got a second projection")
	}
	for _, other := range []struct {
		kernel []int
		sigma  float64
	}{
		{[]int{9}, 1},
		{[]int{3, 3, 1}, 1},
		{[]int{3, 3}, math.Nextafter(1, 2)},
	} {
		if get(other.kernel, other.sigma) == a {
			t.Errorf("%v, σ %v: got the projection of [3 3], σ 1", other.kernel, other.sigma)
		}
	}
}

func TestCacheWarm(t *testing.T) {
	t.Parallel()
	c := NewCache()
	keys := []Key{
		{Kernel: []int{3, 3}, Sigma: 0.5},
		{Kernel: []int{7, 7}, Sigma: 1.9},
		{Kernel: []int{3, 3}, Sigma: 0.5},
		{Kernel: []int{5}, Sigma: 2},
	}
	if err := c.Warm(keys, 8); err != nil {
		t.Fatal(err)
	}
	if len(c.entries) != 3 {
		t.Errorf("got %d entries, want 3 distinct keys", len(c.entries))
	}
	if err := c.Warm(nil, 0); err != nil {
		t.Errorf("no keys: %v", err)
	}

	// The error is the first failing key's in key order, whatever finishes first.
	bad := []Key{
		{Kernel: []int{3, 3}, Sigma: 1},
		{Kernel: []int{65, 65}, Sigma: 1},
		{Kernel: []int{3, 3}, Sigma: math.NaN()},
		{Kernel: []int{3, 0}, Sigma: 1},
	}
	for _, workers := range []int{1, 4} {
		err := NewCache().Warm(bad, workers)
		if !errors.Is(err, ErrTooManyTaps) {
			t.Errorf("workers %d: got %v, want the error of [65 65] (ErrTooManyTaps)", workers, err)
		}
	}
}

// TestDeterminism checks that Warm and Sample give the same bits with GOMAXPROCS 1
// and 2. It is not parallel, since it changes GOMAXPROCS for the whole process.
func TestDeterminism(t *testing.T) {
	keys := []Key{
		{Kernel: []int{31, 31}, Sigma: 0.9},
		{Kernel: []int{9, 9}, Sigma: 0.15},
		{Kernel: []int{9, 9}, Sigma: 1.9},
		{Kernel: []int{3, 5}, Sigma: 0.7},
		{Kernel: []int{4, 4, 4}, Sigma: 1.1},
		{Kernel: []int{21}, Sigma: 2},
	}
	run := func(procs int) []float64 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		c := NewCache()
		if err := c.Warm(keys, 0); err != nil {
			t.Fatal(err)
		}
		var out []float64
		for i, k := range keys {
			p, err := c.ClosedForm(k.Kernel, k.Sigma)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p.Eigenvalues...)
			out = append(out, p.Cov.RawSymmetric().Data...)
			n := len(p.Eigenvalues)
			const count = 300 // enough rows for the parallel matrix multiply
			dst := make([]float64, count*n)
			if err := p.Sample(dst, count, nil, rand.New(rand.NewPCG(uint64(i), 99))); err != nil {
				t.Fatal(err)
			}
			out = append(out, dst...)
		}
		return out
	}
	one, two := run(1), run(2)
	if len(one) != len(two) {
		t.Fatalf("got %d values with GOMAXPROCS 1 and %d with 2", len(one), len(two))
	}
	for i := range one {
		if math.Float64bits(one[i]) != math.Float64bits(two[i]) {
			t.Fatalf("value %d: got %v with GOMAXPROCS 1, %v with 2", i, one[i], two[i])
		}
	}
}
