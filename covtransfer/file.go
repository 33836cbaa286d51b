package covtransfer

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/convcov/convcov-onnx/inject"
)

// The bank file's identification, in its metadata entry.
const (
	bankFormat  = "convcov-onnx bank"
	bankVersion = 1
	bankLayout  = "layer j of layers: count[j] finite filters f (the kernel flattened row-major); " +
		"sum_j = Σ f, shape (n,); outer_j = Σ f fᵀ, shape (n, n); filters_j = the filters, shape (count[j], n), " +
		"absent when count[j] is 0 or they were not kept; all float64. " +
		"mean = sum_j / count[j]; cov = (outer_j − outer(sum_j, sum_j)/count[j]) / (count[j] − 1)"
)

// metaJSON is the bank's "meta" entry, a UTF-8 JSON document stored as a uint8 array.
type metaJSON struct {
	Format  string      `json:"format"`
	Version int         `json:"version"`
	Layout  string      `json:"layout"`
	Models  []metaModel `json:"models"`
	Layers  []metaLayer `json:"layers"`
}

type metaModel struct {
	Source       string     `json:"source"`
	D            int        `json:"D"`
	NotHarvested []metaSkip `json:"not_harvested"`
}

type metaSkip struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

type metaLayer struct {
	Source     string  `json:"source"`
	Node       string  `json:"node"`
	NodeIndex  int     `json:"node_index"`
	Weight     string  `json:"weight"`
	Tensor     string  `json:"tensor"`
	DType      string  `json:"dtype"`
	Kernel     []int   `json:"kernel"`
	I          int     `json:"i"`
	D          int     `json:"D"`
	Depth      float64 `json:"d"`
	Stage      int     `json:"stage"`
	Channels   int64   `json:"channels"`
	Multiplier int64   `json:"multiplier"`
	Dropped    int     `json:"dropped"`
}

// Write writes the bank as an .npz archive that numpy.load opens:
//
//	meta       uint8 (bytes,)     JSON: format, version, models, and per layer j its source,
//	                              node, weight, tensor, dtype, kernel, i, D, d, stage, channels,
//	                              multiplier and dropped filters
//	count      int64 (L,)         count[j]: the finite filters of layer j
//	sum_j      float64 (n,)       Σ f over them, n = the kernel's taps
//	outer_j    float64 (n, n)     Σ f·fᵀ
//	filters_j  float64 (count, n) the filters, absent when count[j] is 0 or not kept
//
// The same bank always gives the same bytes.
func (b *Bank) Write(w io.Writer) error {
	meta := metaJSON{Format: bankFormat, Version: bankVersion, Layout: bankLayout,
		Models: []metaModel{}, Layers: []metaLayer{}}
	for _, m := range b.Models {
		mm := metaModel{Source: m.Source, D: m.Layers, NotHarvested: []metaSkip{}}
		for _, nh := range m.NotHarvested {
			mm.NotHarvested = append(mm.NotHarvested, metaSkip(nh))
		}
		meta.Models = append(meta.Models, mm)
	}
	counts := make([]int64, len(b.Entries))
	for j, e := range b.Entries {
		if err := e.check(); err != nil {
			return fmt.Errorf("covtransfer: layer %s of %s: %w", e.Node, e.Source, err)
		}
		meta.Layers = append(meta.Layers, metaLayer{
			Source: e.Source, Node: e.Node, NodeIndex: e.NodeIndex, Weight: e.Weight, Tensor: e.Tensor,
			DType: e.DType, Kernel: e.Kernel, I: e.Index, D: e.Layers, Depth: e.Depth, Stage: e.Stage,
			Channels: e.Channels, Multiplier: e.Multiplier, Dropped: e.Dropped,
		})
		counts[j] = int64(e.Count)
	}
	doc, err := json.MarshalIndent(meta, "", " ")
	if err != nil {
		return fmt.Errorf("covtransfer: encoding the bank's metadata: %w", err)
	}

	bw := bufio.NewWriterSize(w, 1<<20)
	z := &npzWriter{z: zip.NewWriter(bw)}
	err = z.write("meta", npyArray{descr: "|u1", shape: []int{len(doc)}, u8: doc})
	if err == nil {
		err = z.write("count", npyArray{descr: "<i8", shape: []int{len(counts)}, i64: counts})
	}
	for j, e := range b.Entries {
		if err != nil {
			break
		}
		n := e.Taps()
		err = z.write(fmt.Sprintf("sum_%d", j), npyArray{descr: "<f8", shape: []int{n}, f64: e.Sum})
		if err == nil {
			err = z.write(fmt.Sprintf("outer_%d", j), npyArray{descr: "<f8", shape: []int{n, n}, f64: e.Outer})
		}
		if err == nil && e.Count > 0 && e.hasFilters() {
			err = z.write(fmt.Sprintf("filters_%d",
				j), npyArray{descr: "<f8", shape: []int{e.Count, n}, f64: e.Filters})
		}
	}
	if err == nil {
		err = z.z.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("covtransfer: writing the bank: %w", err)
	}
	return nil
}

// check refuses an entry whose arrays do not fit its kernel and count.
func (e *Entry) check() error {
	n := e.Taps()
	switch {
	case n == 0:
		return fmt.Errorf("kernel %v: need dims >= 1 and at most %d taps", e.Kernel, inject.MaxTaps)
	case e.Count < 0 || e.Dropped < 0:
		return fmt.Errorf("count %d, dropped %d: need counts >= 0", e.Count, e.Dropped)
	case len(e.Sum) != n || len(e.Outer) != n*n:
		return fmt.Errorf("kernel %s has %d taps, but sum has %d values and outer %d",
			e.KernelString(), n, len(e.Sum), len(e.Outer))
	case e.Filters != nil && len(e.Filters) != e.Count*n:
		return fmt.Errorf("%d filter values for %d filters of %d taps", len(e.Filters), e.Count, n)
	}
	return nil
}

// Save writes the bank to the file at path, under a temporary name in the same folder that
// is renamed into place, so a failed save leaves no partial file.
func (b *Bank) Save(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("covtransfer: cannot write %s: %w", path, err)
	}
	err = b.Write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("covtransfer: %s: %w", path, err)
	}
	return nil
}

// Load reads a bank written by Save (or by numpy in the same layout) and derives each
// layer's mean and covariance. A file that is not a bank, or whose arrays do not agree with
// its metadata, is refused with an error wrapping ErrBank that names the file and entry.
func Load(path string) (*Bank, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("covtransfer: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("covtransfer: %w", err)
	}
	b, err := Read(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("covtransfer: bank %s: %w", path, err)
	}
	return b, nil
}

// Read reads a bank from the size bytes of r; see Load.
func Read(r io.ReaderAt, size int64) (*Bank, error) {
	z, err := newNpzReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBank, err)
	}
	b, err := readBank(z)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBank, err)
	}
	return b, nil
}

func readBank(z *npzReader) (*Bank, error) {
	// The metadata says what else to read.
	a, err := z.read("meta", "|u1")
	if err != nil {
		return nil, err
	}
	var meta metaJSON
	dec := json.NewDecoder(bytes.NewReader(a.u8))
	if err := dec.Decode(&meta); err != nil {
		return nil, fmt.Errorf("entry \"meta\": %w", err)
	}
	if meta.Format != bankFormat {
		return nil, fmt.Errorf("entry \"meta\": format %q, want %q", meta.Format, bankFormat)
	}
	if meta.Version != bankVersion {
		return nil, fmt.Errorf("entry \"meta\": version %d; this program reads version %d", meta.Version, bankVersion)
	}
	counts, err := z.read("count", "<i8")
	if err != nil {
		return nil, err
	}
	if len(counts.shape) != 1 || len(counts.i64) != len(meta.Layers) {
		return nil, fmt.Errorf("entry \"count\" has shape %v for %d layers", counts.shape, len(meta.Layers))
	}

	b := &Bank{}
	models := map[string]int{}
	for _, mm := range meta.Models {
		if _, dup := models[mm.Source]; dup || mm.D < 0 {
			return nil, fmt.Errorf("entry \"meta\": model %q is listed twice or has D %d", mm.Source, mm.D)
		}
		m := Model{Source: mm.Source, Layers: mm.D}
		for _, s := range mm.NotHarvested {
			m.NotHarvested = append(m.NotHarvested, NotHarvested(s))
		}
		models[mm.Source] = len(b.Models)
		b.Models = append(b.Models, m)
	}
	seen := map[[2]string]bool{}
	for j, ml := range meta.Layers {
		e, err := readEntry(z, j, ml, counts.i64[j])
		if err != nil {
			return nil, fmt.Errorf("layer %d (node %s of %s): %w", j, ml.Node, ml.Source, err)
		}
		key := [2]string{e.Source, e.Node}
		if seen[key] {
			return nil, fmt.Errorf("layer %d: node %s of %s is listed twice", j, ml.Node, ml.Source)
		}
		seen[key] = true
		k, ok := models[e.Source]
		if !ok {
			k = len(b.Models)
			models[e.Source] = k
			b.Models = append(b.Models, Model{Source: e.Source, Layers: e.Layers})
		}
		if b.Models[k].Layers != e.Layers {
			return nil, fmt.Errorf("layer %d: node %s of %s says D = %d, its model D = %d",
				j, ml.Node, ml.Source, e.Layers, b.Models[k].Layers)
		}
		b.Entries = append(b.Entries, e)
	}
	return b, nil
}

// readEntry reads layer j's arrays and checks them against its metadata.
func readEntry(z *npzReader, j int, ml metaLayer, count int64) (*Entry, error) {
	n := taps(ml.Kernel)
	switch {
	case n == 0:
		return nil, fmt.Errorf("kernel %v: need dims >= 1 and at most %d taps", ml.Kernel, inject.MaxTaps)
	case ml.D < 1 || ml.I < 1 || ml.I > ml.D:
		return nil, fmt.Errorf("i = %d of D = %d: need 1 <= i <= D", ml.I, ml.D)
	case count < 0 || count > math.MaxInt32 || ml.Dropped < 0:
		return nil, fmt.Errorf("count %d, dropped %d: need counts >= 0", count, ml.Dropped)
	}
	e := &Entry{
		Source: ml.Source, Node: ml.Node, NodeIndex: ml.NodeIndex, Weight: ml.Weight, Tensor: ml.Tensor,
		DType: ml.DType, Kernel: slices.Clone(ml.Kernel), Index: ml.I, Layers: ml.D,
		// d is recomputed from i and D, so that equal depths are equal floats.
		Depth: inject.Depth(ml.I, ml.D), Stage: ml.Stage, Channels: ml.Channels, Multiplier: ml.Multiplier,
		Count: int(count), Dropped: ml.Dropped,
	}
	var err error
	if e.Sum, err = readMatrix(z, fmt.Sprintf("sum_%d", j), n); err != nil {
		return nil, err
	}
	if e.Outer, err = readMatrix(z, fmt.Sprintf("outer_%d", j), n, n); err != nil {
		return nil, err
	}
	if name := fmt.Sprintf("filters_%d", j); count > 0 && z.has(name) {
		if e.Filters, err = readMatrix(z, name, int(count), n); err != nil {
			return nil, err
		}
	}
	e.derive()
	return e, nil
}

// readMatrix reads a float64 entry of the given shape whose values are all finite.
func readMatrix(z *npzReader, name string, shape ...int) ([]float64, error) {
	a, err := z.read(name, "<f8")
	if err != nil {
		return nil, err
	}
	if !slices.Equal(a.shape, shape) {
		return nil, fmt.Errorf("entry %q has shape %v, want %v", name, a.shape, shape)
	}
	if !allFinite(a.f64) {
		return nil, fmt.Errorf("entry %q holds NaN or Inf", name)
	}
	return a.f64, nil
}

// errNoCovariance is returned, wrapped, when a bank has no layer to take a covariance from.
var errNoCovariance = errors.New("no layer with 2 or more filters")
