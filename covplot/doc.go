// Package covplot draws covariance matrices and filters as grids of heatmaps, the pictures
// of Trockman, Willmott and Kolter, "Understanding the Covariance Structure of Convolutional
// Filters" (ICLR 2023): Fig. 1 (the covariance of each layer's filters), Fig. 5 (the
// closed-form construction) and Fig. 13 (filters side by side). Section numbers refer to the
// project's ALGORITHM.md.
//
// # Figures
//
// A [Figure] is a title and a grid of [Panel]s. Each panel is a matrix drawn cell by cell
// with a diverging colour map centred on zero ([Colour]): blue below zero, white at zero,
// red above, with symmetric limits ±Limit (by default the largest |value| of the panel, or
// of all panels with [Figure].SharedScale). Every panel has a colour bar beside it, or the
// figure one for all. Thin grey lines separate the blocks of a block form or the filters of a
// mosaic. [Figure.Draw] returns the image and [Figure.Encode] writes it as PNG;
// [Figure.Layout] says where each panel and each cell lies, so that a program (or a test) can
// find a matrix entry in the picture.
//
// # Matrices
//
// [BlockForm] turns a k²×k² covariance of k×k filters from the rearranged form (taps
// flattened row-major) into the block form of 1, B[k·i+l][k·j+m] = R[k·i+j][k·l+m], in which
// block (i, j) is the k×k map of Cov(F[i][j], ·) and the paper's structure shows. [Mosaic]
// tiles filters into one matrix, a filter per block.
//
//	r, _ := inject.ClosedForm([]int{9, 9}, math.Pi/2)
//	b, _ := covplot.BlockForm(r, 9)
//	panel := covplot.Panel{Title: "σ = π/2", Data: b, BlockRows: 9, BlockCols: 9}
//	fig := &covplot.Figure{Title: "the closed form", Panels: []covplot.Panel{panel}}
//	err := fig.Encode(w)
//
// Text is set in the Go fonts (golang.org/x/image/font/gofont), so pictures look the same on
// every machine. The package never prints and writes only to the io.Writer it is given.
package covplot
