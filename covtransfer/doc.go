// Package covtransfer harvests the filter covariances of trained models into a bank and
// initializes other models from it: the covariance transfer of section 2 of Trockman,
// Willmott and Kolter, "Understanding the Covariance Structure of Convolutional Filters"
// (ICLR 2023). Section numbers below refer to the project's ALGORITHM.md.
//
// # Harvest
//
// [Harvest] reads every depthwise layer of a model's main graph whose weight tensor is known,
// including layers a rewrite skips because their weight is shared or read elsewhere, and
// keeps per layer the count, the sum and the sum of outer products of its filters in float64
// (a filter is the kernel flattened row-major, the rearranged form of 1), the filters
// themselves, and where the layer came from: source file, node, weight, kernel, i, D, d,
// stage, channels and multiplier. Filters holding NaN or Inf are left out with a warning.
// Layers without a known tensor, and those inside subgraphs or functions, are reported as not
// harvested. A model without depthwise convolutions gives an empty bank.
//
// [Merge] adds banks: entries of the same layer (source file and node) add their moments,
// others are appended, so the bank of a zoo is the merge of the banks of its parts. The mean
// and the covariance, with normaliser count − 1 (4.1), are derived when a bank is made or
// loaded ([Entry.Mean], [Entry.Cov]).
//
// # The bank file
//
// [Bank.Save] writes an .npz that numpy.load opens: a "meta" entry (the JSON metadata as a
// uint8 array), "count" (int64, one per layer) and, for layer j, "sum_j" (n,), "outer_j"
// (n, n) and "filters_j" (count, n), all float64. In numpy:
//
//	b = np.load("bank.npz"); layers = json.loads(b["meta"].tobytes())["layers"]
//	n, s, S = b["count"][0], b["sum_0"], b["outer_0"]
//	cov = (S - np.outer(s, s) / n) / (n - 1)
//
// [Load] refuses, with [ErrBank], a file whose arrays disagree with its metadata.
//
// # Transfer
//
// A [Source] built by [NewSource] is an [inject.Source]: inject.Apply draws each layer's
// filters from the distribution it gives.
//
//   - Same kernel shape: linear interpolation over depth (4.3), endpoint-aligned by default,
//     cell-centred with [AlignCentres].
//   - Several models in one bank: per kernel shape, every layer has a relative depth in its
//     own model; layers at equal depth are averaged with equal weights (covariances and
//     means), then the target depth is interpolated linearly between the nearest depths. For
//     one model this is 4.3 exactly (see [Source]).
//   - Another kernel size: the bank's square 2-D kernel of the nearest size is interpolated
//     over depth, then resized by 4.4 ([ResizeKernel]: mean-pad or centre-clip each block,
//     bilinear over blocks), symmetrized and projected to PSD. Only square 2-D kernels are
//     transferred across sizes; other shapes need layers of the same shape in the bank, and
//     are refused with [ErrKernel] otherwise.
//   - [Options].WithMean samples N(µ, Σ) as section 2 does; the default mean is zero.
//   - [Options].Kronecker uses the nearest A⊗A in closed form (4.5, [Kronecker]), A
//     projected to PSD first.
//
// Interpolated covariances are convex combinations of PSD matrices and so PSD; every
// distribution still goes through [inject.Project], which gives the factor to sample with.
// A Source computes each (kernel, depth) once and is safe for concurrent use. Randomness
// comes from inject.Apply's per-layer streams, so a seed fixes the output.
//
// [Direct] copies a bank model's filters layer for layer into a model of the same
// architecture (4.6), and refuses with [ErrArchitecture] when none matches.
//
//	m, _ := onnxio.Load("trained.onnx")
//	scan, _ := graphscan.Scan(m)
//	bank, report, err := covtransfer.Harvest("trained.onnx", m, scan)
//	...
//	src, err := covtransfer.NewSource(bank, covtransfer.Options{})
//	target, _ := onnxio.Load("new.onnx")
//	tscan, _ := graphscan.Scan(target)
//	rep, err := inject.Apply(target, tscan, src, inject.Options{Seed: 1})
//	err = target.Save("new_init.onnx")
//
// The package never prints; problems come back as errors and report warnings.
package covtransfer
