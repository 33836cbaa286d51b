package inject

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Key names one closed-form projection: a kernel shape and a σ, the arguments of
// [ClosedForm]. Kernel is a slice so that weight shapes can be passed as they are;
// a [Cache] compares keys by value, the dims and the bits of Sigma, so two slices
// with the same dims name the same projection.
type Key struct {
	Kernel []int
	Sigma  float64
}

// Cache holds the projections of closed-form covariances, [Project]([ClosedForm](k, σ)),
// by kernel shape and σ. It computes them by blocks: the closed form does not change
// when the kernel is flipped along any axis or when two axes of the same size are
// swapped (a square kernel transposed), so in a basis adapted to these symmetries it
// splits into blocks, each projected on its own, and blocks that a swap maps onto each
// other are projected once. The result equals Project's up to rounding (about 1e-15)
// and costs far less: for a 51×51 kernel half a second instead of minutes.
//
// A Cache is safe for concurrent use, and each key is computed once even when many
// goroutines ask for it at once: the others wait for the first.
// Failures are cached too, since the same key always fails the same way. A Cache
// never forgets, so it holds two n×n matrices per key for as long as it lives.
// The zero Cache is ready to use.
type Cache struct {
	mu      sync.Mutex
	entries map[cacheKey]*cacheEntry
}

type cacheKey struct {
	shape string // dims joined with "x"
	sigma uint64 // math.Float64bits(σ)
}

type cacheEntry struct {
	once sync.Once
	p    *Projection
	err  error
}

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{entries: make(map[cacheKey]*cacheEntry)}
}

// ClosedForm returns the projection of the closed-form covariance for kernel and
// sigma, computing it on first use. The result is shared: do not modify it.
func (c *Cache) ClosedForm(kernel []int, sigma float64) (*Projection, error) {
	k := makeCacheKey(kernel, sigma)
	c.mu.Lock()
	if c.entries == nil {
		c.entries = make(map[cacheKey]*cacheEntry)
	}
	e := c.entries[k]
	if e == nil {
		e = new(cacheEntry)
		c.entries[k] = e
	}
	c.mu.Unlock()

	e.once.Do(func() { e.p, e.err = closedFormProjection(kernel, sigma) })
	return e.p, e.err
}

// Warm computes the projections of keys on workers goroutines (GOMAXPROCS when
// workers <= 0), so that later calls of [Cache.ClosedForm] find them ready. It
// returns the error of the first failing key in the order of keys, after all keys
// have been tried. The projections do not depend on the number of workers.
func (c *Cache) Warm(keys []Key, workers int) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(keys))

	errs := make([]error, len(keys))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				_, errs[i] = c.ClosedForm(keys[i].Kernel, keys[i].Sigma)
			}
		})
	}
	wg.Wait()

	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// closedFormProjection computes what the cache stores for one key: the projection
// of the closed form, by blocks since it is invariant under the kernel's symmetries.
func closedFormProjection(kernel []int, sigma float64) (*Projection, error) {
	g, err := newGrid(kernel)
	if err != nil {
		return nil, err
	}
	if err := checkSigma(sigma); err != nil {
		return nil, fmt.Errorf("inject: kernel %v: %w", kernel, err)
	}
	p, err := projectBlocks(g, sigma)
	if err != nil {
		return nil, fmt.Errorf("inject: kernel %v: sigma %v: %w", kernel, sigma, err)
	}
	return p, nil
}

func makeCacheKey(kernel []int, sigma float64) cacheKey {
	var b strings.Builder
	for i, k := range kernel {
		if i > 0 {
			b.WriteByte('x')
		}
		b.WriteString(strconv.Itoa(k))
	}
	return cacheKey{shape: b.String(), sigma: math.Float64bits(sigma)}
}
