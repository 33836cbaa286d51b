// Package inject re-initializes depthwise convolution filters by sampling them from
// the closed-form covariance of Trockman, Willmott and Kolter, "Understanding the
// Covariance Structure of Convolutional Filters" (ICLR 2023). The numerical
// specification is ALGORITHM.md of the project; section numbers below refer to it.
//
// # Layout
//
// A filter with kernel shape (k_1, ..., k_n) has n = k_1·...·k_n taps. Everything in
// this package uses the rearranged form: tap p is the row-major flattening of the
// kernel index, so for a k×k filter F, tap (i, j) is p = k·i + j with i the kernel row.
// A covariance is an n×n matrix over taps and a sample is n consecutive values that
// reshape to the kernel directly.
//
// # Closed form
//
// [ClosedForm] builds R = ½[M ⊙ (C − S) + S ⊙ C] (2.4) in its rearranged form,
//
//	R[p][q] = ½·((z_p + z_q)·C[p][q] − z_p·z_q)
//
// where z is the centred Gaussian exp(−|p − c|²/(2σ)) (σ acts as a variance) and C is
// the Gaussian of the circularly wrapped difference between taps p and q. The same
// formula serves every kernel shape (2.9): 1-D, 3-D, even and rectangular kernels
// alike; a 1×1 kernel gets [0.5]. The centre tap of an odd kernel has variance 0.5.
//
// # Projection and sampling
//
// R is not positive semi-definite for kernels of 5×5 and up. [Project] symmetrizes
// and clips the eigenvalues at 0, giving the nearest PSD matrix R₊ and a factor L
// with R₊ = L·Lᵀ (2.5). [Projection.Sample] draws f = mean + L·g with g ~ N(0, I),
// in float64, the mean being zero for the closed form (2.6). No scale is applied.
//
// # Depth schedule
//
// A network's D depthwise layers get σ from a [Schedule], σ(d) = σ₀ + v·d + ½·a·d²,
// at the relative depth d = [Depth](i, D) (3). [Preset] returns the paper's settings
// by name, [DefaultPreset] being the one for ImageNet models that train afterwards.
//
// # Caching and determinism
//
// A model holds few distinct (kernel shape, σ) pairs; a [Cache] computes each
// projection once, by symmetry blocks (flips, and transposes of square and cubic
// kernels) that make large kernels cheap, and [Cache.Warm] computes many in parallel.
// Prefer it to [Project] of [ClosedForm], which for a 51×51 kernel takes minutes
// instead of half a second. Results depend only on the inputs and the random source,
// never on GOMAXPROCS or scheduling: no computation here sums in an order that
// depends on how work is split between goroutines. (This relies on gonum's own BLAS,
// the default; a BLAS registered with blas64.Use may differ in the last bits.)
//
// # Rewriting a model
//
// [Apply] takes a model, its [graphscan.Result] and a [Source] of distributions, draws
// every rewritable layer's filters and writes them with onnxio's SetValues; the model
// is saved by the caller. [ClosedFormSource] is the closed form at σ(d) of a schedule;
// a bank of harvested covariances is another Source. Layer i draws from its own
// stream, seeded by ([Options].Seed, i), so a model's output bytes depend only on the
// seed and the flags. [Options].Scale multiplies the filters and [Options].Only
// restricts the rewrite to layers a regular expression selects.
//
//	m, _ := onnxio.Load("model.onnx")
//	scan, _ := graphscan.Scan(m)
//	src := &inject.ClosedFormSource{Schedule: inject.Schedule{Sigma0: 0.15, V: 0.25, A: 1}}
//	report, err := inject.Apply(m, scan, src, inject.Options{Seed: 1})
//	...
//	err = m.Save("model_init.onnx")
//
// # Errors
//
// Bad input is an error, never a panic: an empty kernel, a dim below 1, σ that is not
// finite and positive, a kernel beyond [MaxTaps] taps (wrapping [ErrTooManyTaps]), a
// non-square or non-finite matrix, a failed eigendecomposition (wrapping
// [ErrFactorize]), and mismatched lengths given to [Projection.Sample].
package inject
