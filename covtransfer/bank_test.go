package covtransfer

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/internal/testutil"
	"github.com/convcov/convcov-onnx/onnxio"
)

// modelPath returns a model of the repository's testdata by its path below testdata.
func modelPath(t testing.TB, rel string) string {
	return filepath.Join(testutil.RepoRoot(t), "testdata", filepath.FromSlash(rel))
}

// harvestFile loads, scans and harvests one model, named in the bank by name.
func harvestFile(t testing.TB, path, name string) (*Bank, *HarvestReport) {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	scan, err := graphscan.Scan(m)
	if err != nil {
		t.Fatal(err)
	}
	b, rep, err := Harvest(name, m, scan)
	if err != nil {
		t.Fatal(err)
	}
	return b, rep
}

// harvestAll harvests several models into one bank, as the harvest command does.
func harvestAll(t testing.TB, rels ...string) *Bank {
	t.Helper()
	var banks []*Bank
	for _, rel := range rels {
		b, _ := harvestFile(t, modelPath(t, rel), rel)
		banks = append(banks, b)
	}
	b, err := Merge(banks...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHarvestStorage decodes weights stored every way ONNX allows (external data, float16
// in raw_data and in int32_data, float32 in float_data and raw_data) to the sums the
// fixtures' generator recorded. Those are the exactly rounded sums of the decoded elements
// (expect.json keeps them at full precision); a sequential float64 sum of 72 values of size
// below 1 differs by less than 72·2⁻⁵³·Σ|x| ≈ 1e-13, so 1e-12 is a safe bound.
func TestHarvestStorage(t *testing.T) {
	t.Parallel()
	const tol = 1e-12
	files := []string{"10_external_data/model.onnx", "11_fp16_storage.onnx", "12_float_data_vs_raw.onnx"}
	var checked int
	for _, m := range testutil.Expectations(t) {
		if m.Set != "cases" || !slices.Contains(files, m.File) {
			continue
		}
		t.Run(m.Name(), func(t *testing.T) {
			t.Parallel()
			b, rep := harvestFile(t, m.Path, m.File)
			if len(rep.Warnings) != 0 {
				t.Errorf("warnings %q, want none", rep.Warnings)
			}
			byTensor := map[string]*Entry{}
			for _, e := range b.Entries {
				byTensor[e.Tensor] = e
			}
			for _, ts := range m.Tensors {
				e := byTensor[ts.Name]
				if e == nil {
					continue // a pointwise weight: not harvested
				}
				var sum, sumSq float64
				n := e.Taps()
				for i := range n {
					sum += e.Sum[i]
					sumSq += e.Outer[i*n+i]
				}
				if math.Abs(sum-ts.Sum) > tol || math.Abs(sumSq-ts.SumSq) > tol {
					t.Errorf("%s: sum %.12g, sum of squares %.12g; want %.12g, %.12g", ts.Name, sum, sumSq, ts.Sum, ts.SumSq)
				}
				if len(ts.First3) == 3 && !slices.Equal(e.Filters[:3], ts.First3) {
					t.Errorf("%s: first values %v, want %v", ts.Name, e.Filters[:3], ts.First3)
				}
				if e.Count != 8 || e.Dropped != 0 {
					t.Errorf("%s: %d filters, %d dropped; want 8, 0", ts.Name, e.Count, e.Dropped)
				}
			}
			if len(b.Entries) != 2 {
				t.Errorf("%d layers harvested, want 2", len(b.Entries))
			}
		})
		checked++
	}
	if checked != len(files) {
		t.Fatalf("found %d of the %d cases in expect.json", checked, len(files))
	}
}

// TestHarvestNoDepthwise: a model without depthwise convolutions harvests to an empty bank,
// which saves, loads, and has no covariance to transfer (and no NaN anywhere).
func TestHarvestNoDepthwise(t *testing.T) {
	t.Parallel()
	b, rep := harvestFile(t, modelPath(t, "cases/21b_no_depthwise.onnx"), "21b")
	if len(b.Entries) != 0 || b.Filters() != 0 || len(rep.Layers) != 0 {
		t.Fatalf("%d entries, %d filters, %d layers; want none", len(b.Entries), b.Filters(), len(rep.Layers))
	}
	path := filepath.Join(t.TempDir(), "empty.npz")
	if err := b.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 0 || len(got.Models) != 1 || got.Models[0].Layers != 0 {
		t.Errorf("loaded %d entries and models %+v; want no entry and one model with D = 0", len(got.Entries), got.Models)
	}
	if _, err := NewSource(got, Options{}); err == nil || !strings.Contains(err.Error(), "no layer with 2 or more filters") {
		t.Errorf("NewSource on an empty bank: %v, want an error saying there is no covariance", err)
	}
}

// TestHarvestSkipped: layers whose tensor is known are harvested even when a rewrite skips
// them (shared weights, a weight also read by a Mul); the others are reported with a reason.
func TestHarvestSkipped(t *testing.T) {
	t.Parallel()
	b, rep := harvestFile(t, modelPath(t, "models/fixtures/05_weight_paths.onnx"), "05")
	var got []string
	for _, e := range b.Entries {
		got = append(got, e.Node)
	}
	want := []string{"dw_identity2", "dw_cast_f16", "dw_shared_1", "dw_shared_2", "dw_also_mul", "dw_constant"}
	if !slices.Equal(got, want) {
		t.Errorf("harvested %v, want %v", got, want)
	}
	var not []string
	for _, hl := range rep.Layers {
		if !hl.Harvested {
			if hl.Reason == "" {
				t.Errorf("node %s: not harvested without a reason", hl.Layer.Label())
			}
			not = append(not, hl.Layer.Label())
		}
	}
	if want := []string{"dw_cast_int8", "dw_dequant", "dw_reshape"}; !slices.Equal(not, want) {
		t.Errorf("not harvested %v, want %v", not, want)
	}
	if n := len(b.Models[0].NotHarvested); n != 3 {
		t.Errorf("the bank lists %d layers not harvested, want 3", n)
	}

	// Layers inside subgraphs and functions are reported, not harvested.
	b, rep = harvestFile(t, modelPath(t, "models/fixtures/06_subgraphs_functions.onnx"), "06")
	for _, hl := range rep.Layers {
		if hl.Layer.Scope != "" && (hl.Harvested || hl.Reason == "") {
			t.Errorf("node %s in %s: harvested %v, reason %q; want not harvested, with a reason", hl.Layer.Label(), hl.Layer.Scope, hl.Harvested, hl.Reason)
		}
	}
	for _, e := range b.Entries {
		if e.Index < 1 {
			t.Errorf("entry %s has i = %d", e.Node, e.Index)
		}
	}
}

// TestHarvestDropsNonFinite: filters holding NaN or Inf are left out with a warning that
// names the layer and how many.
func TestHarvestDropsNonFinite(t *testing.T) {
	t.Parallel()
	m, err := onnxio.Load(modelPath(t, "cases/12_float_data_vs_raw.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	scan, err := graphscan.Scan(m)
	if err != nil {
		t.Fatal(err)
	}
	l := &scan.Layers[0]
	v, err := m.Values(l.Tensor)
	if err != nil {
		t.Fatal(err)
	}
	v[0], v[9*5+4] = math.NaN(), math.Inf(-1) // filters 0 and 5
	if err := m.SetValues(l.Tensor, v); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "nan.onnx")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	b, rep := harvestFile(t, path, "nan.onnx")
	e := b.Entries[0]
	if e.Count != 6 || e.Dropped != 2 || len(e.Filters) != 6*9 {
		t.Errorf("count %d, dropped %d, %d filter values; want 6, 2, 54", e.Count, e.Dropped, len(e.Filters))
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], l.Label()) || !strings.Contains(rep.Warnings[0], "dropped 2 of 8") {
		t.Errorf("warnings %q, want one naming node %s and saying dropped 2 of 8", rep.Warnings, l.Label())
	}
	if !allFinite(e.Cov().RawSymmetric().Data) {
		t.Error("the covariance holds NaN or Inf")
	}
}

// TestBankRoundTrip: a saved bank loads back to the same moments, bit for bit, and the
// same metadata; saving it again gives the same bytes.
func TestBankRoundTrip(t *testing.T) {
	t.Parallel()
	b := harvestAll(t, "models/convmixer_digits_d64_l4_k9.onnx", "cases/22_unsorted_parallel_branches.onnx", "models/fixtures/05_weight_paths.onnx")
	var first bytes.Buffer
	if err := b.Write(&first); err != nil {
		t.Fatal(err)
	}
	got, err := Read(bytes.NewReader(first.Bytes()), int64(first.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != len(b.Entries) {
		t.Fatalf("%d entries, want %d", len(got.Entries), len(b.Entries))
	}
	for j, e := range b.Entries {
		g := got.Entries[j]
		if g.Source != e.Source || g.Node != e.Node || g.Tensor != e.Tensor || !slices.Equal(g.Kernel, e.Kernel) ||
			g.Index != e.Index || g.Layers != e.Layers || g.Depth != e.Depth || g.Stage != e.Stage || g.DType != e.DType ||
			g.Channels != e.Channels || g.Multiplier != e.Multiplier || g.Count != e.Count {
			t.Errorf("entry %d: metadata %+v, want %+v", j, g, e)
		}
		if !slices.Equal(g.Sum, e.Sum) || !slices.Equal(g.Outer, e.Outer) || !slices.Equal(g.Filters, e.Filters) {
			t.Errorf("entry %d (%s): moments or filters differ after a round trip", j, e.Node)
		}
	}
	if !slices.EqualFunc(got.Models, b.Models, func(a, b Model) bool {
		return a.Source == b.Source && a.Layers == b.Layers && slices.Equal(a.NotHarvested, b.NotHarvested)
	}) {
		t.Errorf("models %+v, want %+v", got.Models, b.Models)
	}
	var second bytes.Buffer
	if err := got.Write(&second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Error("writing a loaded bank again gives other bytes")
	}
}

// TestMergeHalves: the bank of a zoo harvested in two halves and merged is the bank of the
// whole zoo harvested at once, byte for byte: entries of different layers are appended in
// order and no moment is added to another.
func TestMergeHalves(t *testing.T) {
	t.Parallel()
	zoo := []string{"models/convmixer_digits_d64_l4_k9.onnx", "cases/01_mobilenet_baseline.onnx",
		"cases/22_unsorted_parallel_branches.onnx", "cases/11_fp16_storage.onnx"}
	dir := t.TempDir()
	save := func(b *Bank, name string) string {
		path := filepath.Join(dir, name)
		if err := b.Save(path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	load := func(path string) *Bank {
		b, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	whole := save(harvestAll(t, zoo...), "whole.npz")
	a := save(harvestAll(t, zoo[:2]...), "a.npz")
	b := save(harvestAll(t, zoo[2:]...), "b.npz")
	merged, err := Merge(load(a), load(b))
	if err != nil {
		t.Fatal(err)
	}
	got := save(merged, "merged.npz")
	wb, _ := os.ReadFile(whole)
	gb, _ := os.ReadFile(got)
	if !bytes.Equal(wb, gb) {
		t.Errorf("merge of two halves (%d bytes) differs from the harvest of the whole (%d bytes)", len(gb), len(wb))
	}
}

// TestMergeSameLayer: entries of one layer add. Moments of the two halves of a layer's
// filters, added, equal the moments of all of them to rounding: each sum of 32 terms of size
// below 1 is off by at most 32·2⁻⁵³ relative, so 1e-12 bounds the difference.
func TestMergeSameLayer(t *testing.T) {
	t.Parallel()
	b, _ := harvestFile(t, modelPath(t, "models/convmixer_digits_d64_l4_k9.onnx"), "convmixer")
	whole := b.Entries[0]
	n := whole.Taps()
	half := func(from, to int) *Bank {
		e := &Entry{Source: whole.Source, Node: whole.Node, Kernel: whole.Kernel, Index: whole.Index, Layers: whole.Layers,
			Sum: make([]float64, n), Outer: make([]float64, n*n)}
		for j := from; j < to; j++ {
			f := whole.Filters[j*n : (j+1)*n]
			addMoments(e.Sum, e.Outer, f)
			e.Filters = append(e.Filters, f...)
			e.Count++
		}
		e.derive()
		return &Bank{Models: []Model{{Source: whole.Source, Layers: whole.Layers}}, Entries: []*Entry{e}}
	}
	merged, err := Merge(half(0, 32), half(32, 64))
	if err != nil {
		t.Fatal(err)
	}
	got := merged.Entries[0]
	if len(merged.Entries) != 1 || got.Count != 64 || !slices.Equal(got.Filters, whole.Filters) {
		t.Fatalf("%d entries, count %d; want one of 64 filters in order", len(merged.Entries), got.Count)
	}
	for i := range got.Outer {
		if d := math.Abs(got.Outer[i] - whole.Outer[i]); d > 1e-12 {
			t.Fatalf("outer[%d] = %g, want %g", i, got.Outer[i], whole.Outer[i])
		}
	}
	for i := range got.Sum {
		if d := math.Abs(got.Sum[i] - whole.Sum[i]); d > 1e-12 {
			t.Fatalf("sum[%d] = %g, want %g", i, got.Sum[i], whole.Sum[i])
		}
	}

	// A layer of another shape under the same name cannot be added.
	other := half(0, 8)
	other.Entries[0].Kernel = []int{1, 81}
	if _, err := Merge(b, other); !errors.Is(err, ErrBank) {
		t.Errorf("merging a layer with another kernel: %v, want ErrBank", err)
	}
}

// TestLoadRefuses: damaged banks are refused with ErrBank, naming the entry, never a panic.
func TestLoadRefuses(t *testing.T) {
	t.Parallel()
	b := harvestAll(t, "cases/12_float_data_vs_raw.onnx")
	var good bytes.Buffer
	if err := b.Write(&good); err != nil {
		t.Fatal(err)
	}
	// rewrite builds a bank whose entries are changed by edit.
	rewrite := func(edit func(name string, a *npyArray) bool) []byte {
		z, err := newNpzReader(bytes.NewReader(good.Bytes()), int64(good.Len()))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		w := newTestWriter(&out)
		for _, name := range []string{"meta", "count", "sum_0", "outer_0", "filters_0", "sum_1", "outer_1", "filters_1"} {
			descr := "<f8"
			switch name {
			case "meta":
				descr = "|u1"
			case "count":
				descr = "<i8"
			}
			a, err := z.read(name, descr)
			if err != nil {
				t.Fatal(err)
			}
			if edit(name, &a) {
				if err := w.write(name, a); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.z.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	truncated := good.Bytes()[:good.Len()/2]
	tests := []struct {
		name string
		data []byte
		want string // a keyword of the error
	}{
		{"not a zip", []byte("hello"), "zip"},
		{"truncated", truncated, "zip"},
		{"no meta", rewrite(func(n string, a *npyArray) bool { return n != "meta" }), `"meta" is missing`},
		{"meta not JSON", rewrite(func(n string, a *npyArray) bool {
			if n == "meta" {
				a.u8 = []byte("{")
				a.shape = []int{1}
			}
			return true
		}), "meta"},
		{"wrong version", rewrite(func(n string, a *npyArray) bool {
			if n == "meta" {
				a.u8 = bytes.Replace(a.u8, []byte(`"version": 1`), []byte(`"version": 7`), 1)
				a.shape = []int{len(a.u8)}
			}
			return true
		}), "version 7"},
		{"count of another length", rewrite(func(n string, a *npyArray) bool {
			if n == "count" {
				a.i64 = append(a.i64, 3)
				a.shape = []int{len(a.i64)}
			}
			return true
		}), `"count"`},
		{"negative count", rewrite(func(n string, a *npyArray) bool {
			if n == "count" {
				a.i64[1] = -4
			}
			return true
		}), "count -4"},
		{"sum of the wrong shape", rewrite(func(n string, a *npyArray) bool {
			if n == "sum_1" {
				a.f64 = a.f64[:4]
				a.shape = []int{4}
			}
			return true
		}), `"sum_1" has shape [4]`},
		{"outer missing", rewrite(func(n string, a *npyArray) bool { return n != "outer_0" }), `"outer_0" is missing`},
		{"NaN in outer", rewrite(func(n string, a *npyArray) bool {
			if n == "outer_1" {
				a.f64[3] = math.NaN()
			}
			return true
		}), "NaN"},
		{"int where float", rewrite(func(n string, a *npyArray) bool {
			if n == "sum_0" {
				a.descr, a.i64, a.f64 = "<i8", make([]int64, 9), nil
			}
			return true
		}), "dtype <i8"},
		{"shape larger than the data", rewrite(func(n string, a *npyArray) bool {
			if n == "filters_0" {
				a.shape = []int{1 << 40, 9}
			}
			return true
		}), "larger than the entry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Read(bytes.NewReader(tc.data), int64(len(tc.data)))
			if !errors.Is(err, ErrBank) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrBank mentioning %q", err, tc.want)
			}
		})
	}
}

// FuzzRead: no bytes make Read panic. The seed corpus runs with the tests.
func FuzzRead(f *testing.F) {
	b := harvestAll(f, "cases/12_float_data_vs_raw.onnx")
	var good bytes.Buffer
	if err := b.Write(&good); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add([]byte("\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'"))
	f.Fuzz(func(t *testing.T, data []byte) {
		Read(bytes.NewReader(data), int64(len(data)))
		readNpy(bytes.NewReader(data), uint64(len(data)), "<f8")
	})
}

// TestNumpyReadsTheBank runs the README's numpy example on a bank when a python3 with numpy
// is installed (Debian's, which also makes the fixtures): numpy.load opens the file and the
// three lines give the covariance Load derives, to 1e-12 (both are float64 formulas of the
// same moments, evaluated in other orders).
func TestNumpyReadsTheBank(t *testing.T) {
	t.Parallel()
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import numpy").Run(); err != nil {
		t.Skipf("no python3 with numpy at %s: %v", python, err)
	}
	b := harvestAll(t, "models/convmixer_digits_d64_l4_k9.onnx", "cases/21b_no_depthwise.onnx")
	path := filepath.Join(t.TempDir(), "bank.npz")
	if err := b.Save(path); err != nil {
		t.Fatal(err)
	}
	script := `
import json, sys, numpy as np
b = np.load(sys.argv[1]); layers = json.loads(b["meta"].tobytes())["layers"]
n, s, S = b["count"][2], b["sum_2"], b["outer_2"]
cov = (S - np.outer(s, s) / n) / (n - 1)
assert b["filters_2"].shape == (n, s.shape[0])
print(layers[2]["node"], n, " ".join(repr(x) for x in cov.ravel()))
`
	out, err := exec.Command(python, "-c", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	fields := strings.Fields(string(out))
	e := b.Entries[2]
	if fields[0] != e.Node || fields[1] != fmt.Sprint(e.Count) || len(fields) != 2+e.Taps()*e.Taps() {
		t.Fatalf("numpy printed %q..., want node %s, count %d and %d entries", fields[:2], e.Node, e.Count, e.Taps()*e.Taps())
	}
	n := e.Taps()
	for i, f := range fields[2:] {
		var v float64
		fmt.Sscan(f, &v)
		if d := math.Abs(v - e.Cov().At(i/n, i%n)); d > 1e-12 {
			t.Fatalf("cov[%d]: numpy %g, Go %g", i, v, e.Cov().At(i/n, i%n))
		}
	}
}

// newTestWriter writes bank entries into an archive, for tests that build damaged banks.
func newTestWriter(w *bytes.Buffer) *npzWriter { return &npzWriter{z: zip.NewWriter(w)} }
