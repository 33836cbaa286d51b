// Command bench is what `make bench` runs. It generates large models in a temporary folder
// (internal/benchmodels: a 1 GB ConvMixer with 9x9 kernels as one file and with external
// data, a RepLKNet-like model with 31x31 kernels, a ConvNeXt-like one with 51x51 kernels),
// times `convcov-onnx init` on each against `cp` of the same files in the same run (the
// median of several runs), and prints each ratio and peak memory next to its target. Where
// Debian's python3-onnx is installed and the project's shared folder has
// bench/peer_rewrite.py, it times that Python rewrite too. It also times the closed form's
// projection for 31x31 and 51x51 kernels against numpy's eigh and compares the results.
//
//	go run ./internal/bench [-runs 5] [-quick] [-keep DIR]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"codeberg.org/sbinet/npyio"
	"gonum.org/v1/gonum/mat"

	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/internal/benchmodels"
)

var (
	runsFlag  = flag.Int("runs", 5, "timed runs per measurement; the median is reported")
	quickFlag = flag.Bool("quick", false, "small models, to try the bench itself")
	keepFlag  = flag.String("keep", "", "generate into this folder and keep it (default: a temporary folder, removed)")
	binFlag   = flag.String("bin", "bin/convcov-onnx", "the convcov-onnx binary to time")
	onlyFlag  = flag.String("only", "", "run only the models whose name contains this text")
	genFlag   = flag.Int("generate", -1, "internal: generate model case N into -keep's folder and exit")
)

func main() {
	flag.Parse()
	if *genFlag >= 0 {
		// A child process makes the model, so that the gigabytes it holds meanwhile do
		// not count in the peak memory of the commands timed later: Linux gives a child
		// started from a large process that process's peak as its own.
		c := cases(*quickFlag)[*genFlag]
		stats, err := benchmodels.Write(filepath.Join(*keepFlag, "model.onnx"), c.spec, c.external)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(stats.Bytes, stats.Depthwise, stats.DepthwiseBytes)
		return
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// measurement is the median time and the largest peak memory of several runs.
type measurement struct {
	wall time.Duration
	rss  int64 // bytes; 0 when not measured
}

// timeCommand runs argv *runsFlag times and returns the median wall time and peak RSS.
// before, when set, runs untimed ahead of each run (to restore a file, say).
func timeCommand(before func() error, argv ...string) (measurement, error) {
	var walls []time.Duration
	var rss int64
	for range *runsFlag {
		if before != nil {
			if err := before(); err != nil {
				return measurement{}, err
			}
		}
		// Start each run with no dirty pages left by the one before, so that a run does
		// not pay for writing back its predecessor's output.
		syscall.Sync()
		cmd := exec.Command(argv[0], argv[1:]...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		walls = append(walls, time.Since(start))
		if err != nil {
			return measurement{}, fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = max(rss, ru.Maxrss*1024)
		}
	}
	slices.Sort(walls)
	return measurement{wall: walls[len(walls)/2], rss: rss}, nil
}

type modelCase struct {
	name     string
	spec     benchmodels.Spec
	external bool
}

func cases(quick bool) []modelCase {
	if quick {
		return []modelCase{
			{"convmixer-256/8 9x9", benchmodels.Spec{Arch: "convmixer", Width: 256, Depth: 8, Patch: 7, Kernel: 9}, false},
			{"convmixer-256/8 9x9, external data", benchmodels.Spec{Arch: "convmixer", Width: 256, Depth: 8, Patch: 7, Kernel: 9}, true},
			{"replknet 31x31 (small)", benchmodels.Spec{Arch: "replknet", Widths: []int{32, 64}, Depths: []int{1, 2}, Kernel: 31}, false},
			{"convnext 51x51 (small)", benchmodels.Spec{Arch: "convnext", Widths: []int{16, 32}, Depths: []int{1, 1}, Kernel: 51}, false},
		}
	}
	cm := benchmodels.Spec{Arch: "convmixer", Width: 3072, Depth: 26, Patch: 14, Kernel: 9}
	return []modelCase{
		{"convmixer-3072/26 9x9", cm, false},
		{"convmixer-3072/26 9x9, external data", cm, true},
		{"replknet-31B-like 31x31", benchmodels.Spec{Arch: "replknet", Widths: []int{128, 256, 512, 1024}, Depths: []int{2, 2, 18, 2}, Kernel: 31}, false},
		{"convnext-T-like 51x51", benchmodels.Spec{Arch: "convnext", Widths: []int{96, 192, 384, 768}, Depths: []int{3, 3, 9, 3}, Kernel: 51}, false},
	}
}

// generate makes model case k in dir in a child process (see main).
func generate(k int, dir string) (benchmodels.Stats, error) {
	self, err := os.Executable()
	if err != nil {
		return benchmodels.Stats{}, err
	}
	args := []string{"-generate", fmt.Sprint(k), "-keep", dir}
	if *quickFlag {
		args = append(args, "-quick")
	}
	out, err := exec.Command(self, args...).Output()
	if err != nil {
		return benchmodels.Stats{}, fmt.Errorf("generating model %d: %v", k, err)
	}
	var st benchmodels.Stats
	_, err = fmt.Sscan(string(out), &st.Bytes, &st.Depthwise, &st.DepthwiseBytes)
	return st, err
}

// row is one line of the results table.
type row struct {
	what, got, target, verdict string
}

func run() error {
	if _, err := os.Stat(*binFlag); err != nil {
		return fmt.Errorf("%s not found; run make build first", *binFlag)
	}
	dir := *keepFlag
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "convcov-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	peer := peerScript()
	fmt.Printf("bench: %s, %d runs per measurement (median), models in %s\n", time.Now().Format("2006-01-02"), *runsFlag, dir)
	if peer == "" {
		fmt.Println("bench: no Python peer (needs /usr/bin/python3 with onnx and the shared bench/peer_rewrite.py)")
	}

	var rows []row
	for k, c := range cases(*quickFlag) {
		if !strings.Contains(c.name, *onlyFlag) {
			continue
		}
		sub := filepath.Join(dir, fmt.Sprint(k))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		in := filepath.Join(sub, "model.onnx")
		start := time.Now()
		stats, err := generate(k, sub)
		if err != nil {
			return err
		}
		fmt.Printf("generated %s: %.2f GB, %d depthwise convolutions (%.1f MB of weights) in %.1f s\n",
			c.name, float64(stats.Bytes)/1e9, stats.Depthwise, float64(stats.DepthwiseBytes)/1e6, time.Since(start).Seconds())
		r, err := benchModel(c, sub, in, stats, peer)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
		os.RemoveAll(sub)
	}
	r, err := benchProjection()
	if err != nil {
		return err
	}
	rows = append(rows, r...)

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nmeasurement\tresult\ttarget\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.what, r.got, r.target, r.verdict)
	}
	return tw.Flush()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// benchModel times cp and init on one generated model.
func benchModel(c modelCase, dir, in string, stats benchmodels.Stats, peer string) ([]row, error) {
	out := filepath.Join(dir, "out.onnx")
	files := []string{in}
	if c.external {
		files = append(files, in+".data")
	}
	copies := filepath.Join(dir, "copies")
	if err := os.MkdirAll(copies, 0o755); err != nil {
		return nil, err
	}
	cp, err := timeCommand(nil, append(append([]string{"cp"}, files...), copies)...)
	if err != nil {
		return nil, err
	}
	init, err := timeCommand(nil, *binFlag, "init", in, "-o", out, "--quiet")
	if err != nil {
		return nil, err
	}
	ratio := init.wall.Seconds() / cp.wall.Seconds()
	mem := float64(init.rss) / float64(stats.Bytes)
	var rows []row
	name := c.name
	if !c.external {
		rows = append(rows,
			row{name + ": init -o vs cp", fmt.Sprintf("%.2f s vs %.2f s = %.2fx", init.wall.Seconds(), cp.wall.Seconds(), ratio), "<= 1.5x", verdict(ratio <= 1.5)},
			row{name + ": peak memory", fmt.Sprintf("%.2f GB = %.2fx the file", float64(init.rss)/1e9, mem), "<= 1.2x", verdict(mem <= 1.2)},
		)
	} else {
		rows = append(rows, row{name + ": init -o (new data file) vs cp of both files",
			fmt.Sprintf("%.2f s vs %.2f s = %.2fx", init.wall.Seconds(), cp.wall.Seconds(), ratio), "(no target)", ""})
		// In place: patch a copy's data file; compare with copying the data file.
		work := filepath.Join(dir, "inplace")
		if err := os.MkdirAll(work, 0o755); err != nil {
			return nil, err
		}
		restore := func() error {
			for _, f := range files {
				if err := copyFile(f, filepath.Join(work, filepath.Base(f))); err != nil {
					return err
				}
			}
			return nil
		}
		inPlace, err := timeCommand(restore, *binFlag, "init", filepath.Join(work, "model.onnx"), "--in-place", "--quiet")
		if err != nil {
			return nil, err
		}
		cpData, err := timeCommand(nil, "cp", in+".data", filepath.Join(dir, "data.copy"))
		if err != nil {
			return nil, err
		}
		r := inPlace.wall.Seconds() / cpData.wall.Seconds()
		rows = append(rows, row{name + ": init --in-place vs cp of the data file",
			fmt.Sprintf("%.3f s vs %.2f s = %.3fx", inPlace.wall.Seconds(), cpData.wall.Seconds(), r), "<= 0.1x", verdict(r <= 0.1)})
	}
	if peer != "" {
		args := []string{"/usr/bin/python3", peer, in, filepath.Join(dir, "peer.onnx")}
		if c.external {
			args = append(args, "--external")
		}
		saved := *runsFlag
		*runsFlag = min(saved, 3)
		p, err := timeCommand(nil, args...)
		*runsFlag = saved
		if err == nil {
			rows = append(rows, row{name + ": Python onnx+numpy peer vs init", fmt.Sprintf("%.2f s vs %.2f s = init takes %.2fx the peer's time",
				p.wall.Seconds(), init.wall.Seconds(), init.wall.Seconds()/p.wall.Seconds()), "(comparison)", ""})
		} else {
			fmt.Fprintf(os.Stderr, "bench: the peer failed: %v\n", err)
		}
	}
	return rows, nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// peerScript returns the Python peer's path when it can run here.
func peerScript() string {
	for _, dir := range []string{os.Getenv("CONVCOV_SHARED"), "../shared"} {
		script := filepath.Join(dir, "bench", "peer_rewrite.py")
		if _, err := os.Stat(script); dir == "" || err != nil {
			continue
		}
		if exec.Command("/usr/bin/python3", "-c", "import onnx, numpy").Run() == nil {
			return script
		}
	}
	return ""
}

// benchProjection times the closed form's projection for large kernels, and numpy's eigh of
// the same matrix where numpy is installed, and compares the projected matrices.
func benchProjection() ([]row, error) {
	var rows []row
	for _, tc := range []struct {
		k      int
		target time.Duration
	}{{31, 100 * time.Millisecond}, {51, 2 * time.Second}} {
		kernel := []int{tc.k, tc.k}
		var times []time.Duration
		var p *inject.Projection
		for range *runsFlag {
			start := time.Now()
			var err error
			p, err = inject.NewCache().ClosedForm(kernel, 1.5)
			if err != nil {
				return nil, err
			}
			times = append(times, time.Since(start))
		}
		slices.Sort(times)
		got := times[len(times)/2]
		what := fmt.Sprintf("projection of the %dx%d closed form (n = %d)", tc.k, tc.k, tc.k*tc.k)
		target := fmt.Sprintf("<= %v", tc.target)
		np, diff, err := numpyProjection(tc.k, p)
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "bench: numpy comparison skipped: %v\n", err)
		default:
			if tc.k == 51 {
				target = fmt.Sprintf("<= numpy's eigh (%.2f s)", np.Seconds())
				tc.target = max(tc.target, np)
			}
			what += fmt.Sprintf("; max |R₊ − numpy's R₊| = %.1e (want <= 1e-10)", diff)
		}
		rows = append(rows, row{what, fmt.Sprintf("%.3f s", got.Seconds()), target, verdict(got <= tc.target)})
	}
	return rows, nil
}

// numpyProjection projects the same closed form with numpy's eigh (OpenBLAS), timing only
// the eigh, and returns the time and the largest difference from p.Cov.
func numpyProjection(k int, p *inject.Projection) (time.Duration, float64, error) {
	if exec.Command("/usr/bin/python3", "-c", "import numpy").Run() != nil {
		return 0, 0, fmt.Errorf("no numpy")
	}
	dir, err := os.MkdirTemp("", "convcov-eigh-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	ours := filepath.Join(dir, "ours.npy")
	f, err := os.Create(ours)
	if err != nil {
		return 0, 0, err
	}
	if err := npyio.Write(f, mat.DenseCopyOf(p.Cov)); err != nil {
		f.Close()
		return 0, 0, err
	}
	f.Close()
	script := fmt.Sprintf(`
import time, numpy as np
k, s = %d, 1.5
c = k // 2
idx = np.arange(k * k)
a, b = idx // k, idx %% k
z = np.exp(-((a - c) ** 2 + (b - c) ** 2) / (2 * s))
def w(t): return ((t + c) %% k) - c
C = np.exp(-(w(a[None, :] - a[:, None]) ** 2 + w(b[None, :] - b[:, None]) ** 2) / (2 * s))
R = 0.5 * ((z[:, None] + z[None, :]) * C - np.outer(z, z))
R = 0.5 * (R + R.T)
best = 1e9
for _ in range(3):
    t = time.perf_counter(); lam, Q = np.linalg.eigh(R); best = min(best, time.perf_counter() - t)
P = (Q * np.maximum(lam, 0)) @ Q.T
print(best, np.abs(P - np.load(%q)).max())
`, k, ours)
	cmd := exec.Command("/usr/bin/python3", "-c", script)
	// Some machines here set OpenBLAS variables that slow a current numpy; time it without them.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool {
		return strings.HasPrefix(e, "OPENBLAS_CORETYPE=") || strings.HasPrefix(e, "OPENBLAS_L2_SIZE=")
	})
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, err
	}
	var secs, diff float64
	if _, err := fmt.Sscan(string(out), &secs, &diff); err != nil {
		return 0, 0, fmt.Errorf("reading numpy's answer %q: %v", out, err)
	}
	return time.Duration(secs * float64(time.Second)), diff, nil
}
