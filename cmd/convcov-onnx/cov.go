package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"codeberg.org/sbinet/npyio"
	"gonum.org/v1/gonum/mat"

	"github.com/convcov/convcov-onnx/inject"
)

type covJSON struct {
	Version        int         `json:"version"`
	Command        string      `json:"command"`
	Kernel         []int       `json:"kernel"`
	Sigma          float64     `json:"sigma"`
	N              int         `json:"n"`
	Layout         string      `json:"layout"`
	Eigenvalues    []float64   `json:"eigenvalues_raw"`
	Clipped        int         `json:"clipped_eigenvalues"`
	Trace          float64     `json:"trace"`
	CentreVariance float64     `json:"centre_variance"`
	Output         string      `json:"output,omitempty"`
	Covariance     [][]float64 `json:"covariance"`
}

func runCov(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "cov", "--kernel K --sigma S [-o FILE.npy] [--json]", "convcov-onnx cov --kernel 9 --sigma 1.5708 -o cov.npy")
	kernelFlag := fs.String("kernel", "", "kernel shape: 9 (a 9x9 kernel), 7x5, 1x5 (same matrix as a 1-D kernel of 5) or 3x3x3")
	sigmaFlag := fs.Float64("sigma", math.NaN(), "σ of the closed form (a variance: Z = exp(-r²/(2σ)))")
	outFlag := fs.String("o", "", "write the projected covariance to this .npy `file` (float64, n×n, rearranged form)")
	jsonFlag := fs.Bool("json", false, "print one JSON document with the matrix")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("cov takes no positional arguments, got %q; see 'convcov-onnx cov -h'", pos)
	}
	kernel, err := parseKernel(*kernelFlag)
	if err != nil {
		return err
	}
	if !(*sigmaFlag > 0) || math.IsInf(*sigmaFlag, 0) {
		return usagef("--sigma is required and must be a positive finite number")
	}

	// The closed form and its nearest PSD matrix (the cache projects it by symmetry blocks,
	// which is much faster for large kernels).
	p, err := inject.NewCache().ClosedForm(kernel, *sigmaFlag)
	if err != nil {
		return err
	}
	n := p.Cov.SymmetricDim()
	dense := mat.DenseCopyOf(p.Cov)
	clipped := 0
	for _, l := range p.Eigenvalues {
		if l < 0 {
			clipped++
		}
	}
	centre := 0
	for _, k := range kernel {
		centre = centre*k + (k-1)/2
	}

	if *outFlag != "" {
		if err := writeNpy(*outFlag, dense); err != nil {
			return err
		}
	}
	if *jsonFlag {
		rows := make([][]float64, n)
		for i := range rows {
			rows[i] = mat.Row(nil, i, dense)
		}
		return printJSON(e.stdout, covJSON{
			Version:        reportVersion,
			Command:        "cov",
			Kernel:         kernel,
			Sigma:          *sigmaFlag,
			N:              n,
			Layout:         "rearranged: row-major flattening of the kernel taps; projected to the nearest PSD matrix",
			Eigenvalues:    p.Eigenvalues,
			Clipped:        clipped,
			Trace:          mat.Trace(p.Cov),
			CentreVariance: p.Cov.At(centre, centre),
			Output:         *outFlag,
			Covariance:     rows,
		})
	}
	fmt.Fprintf(e.stdout, "closed-form covariance, kernel %s, σ %g: %d×%d, rearranged form (row-major taps)\n",
		kernelString(int64s(kernel)), *sigmaFlag, n, n)
	fmt.Fprintf(e.stdout, "eigenvalues before projection: min %.6g, max %.6g; %d negative, clipped to 0\n",
		p.Eigenvalues[0], p.Eigenvalues[n-1], clipped)
	fmt.Fprintf(e.stdout, "trace %.6g, centre-tap variance %.6g\n", mat.Trace(p.Cov), p.Cov.At(centre, centre))
	if *outFlag != "" {
		fmt.Fprintf(e.stdout, "wrote %s (float64 %d×%d; numpy.load reads it)\n", *outFlag, n, n)
	} else if n <= 9 {
		fmt.Fprintf(e.stdout, "%.4f\n", mat.Formatted(dense, mat.Squeeze()))
	} else {
		fmt.Fprintln(e.stdout, "use -o FILE.npy or --json for the matrix")
	}
	return nil
}

// parseKernel reads a kernel shape: "9" means 9x9.
func parseKernel(s string) ([]int, error) {
	if s == "" {
		return nil, usagef("--kernel is required, for example --kernel 9 or --kernel 7x5")
	}
	parts := strings.Split(strings.ToLower(s), "x")
	if len(parts) > 3 {
		return nil, usagef("--kernel %q: at most 3 dims", s)
	}
	var k []int
	for _, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 1 || v > 4096 {
			return nil, usagef("--kernel %q: each dim must be a whole number from 1 to 4096", s)
		}
		k = append(k, v)
	}
	if len(k) == 1 {
		k = append(k, k[0])
	}
	return k, nil
}

func int64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// writeNpy writes m as a float64 .npy file, atomically.
func writeNpy(path string, m *mat.Dense) error {
	return writeAtomic(path, func(w io.Writer) error { return npyio.Write(w, m) })
}
