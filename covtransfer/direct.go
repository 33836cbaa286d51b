package covtransfer

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/convcov/convcov-onnx/graphscan"
	"github.com/convcov/convcov-onnx/inject"
	"github.com/convcov/convcov-onnx/onnxio"
)

// ErrArchitecture means a direct transfer was refused: no model of the bank matches the
// target layer for layer.
var ErrArchitecture = errors.New("architectures do not match layer for layer")

// Direct copies the filters of a bank's model into the depthwise layers of m, layer i to
// layer i (ALGORITHM.md 4.6, the paper's baseline). The bank must hold exactly one model
// that matches scan layer for layer: the same number of depthwise layers, and for every
// target layer with a known kernel the same kernel shape and the same number of filters
// (C·m), with the filters kept in the bank for every layer that will be rewritten.
// Otherwise Direct changes nothing and returns an error wrapping [ErrArchitecture] that
// says, for each model of the bank, the first difference. only, when set, restricts the
// copy as [inject.Options].Only does. It returns the report, in inject's form, and the
// entries copied, by target layer index (entries[i-1]; nil where nothing was copied).
func Direct(m *onnxio.Model, scan *graphscan.Result, b *Bank, only *regexp.Regexp) (*inject.Report, []*Entry, error) {
	// Find the one model that matches.
	var matches []string
	var why []string
	var match map[int]*Entry
	for _, bm := range b.Models {
		byIndex, reason := matchModel(scan, b, bm)
		if reason != "" {
			why = append(why, fmt.Sprintf("%s: %s", bm.Source, reason))
			continue
		}
		matches = append(matches, bm.Source)
		match = byIndex
	}
	switch {
	case len(b.Models) == 0:
		return nil, nil, fmt.Errorf("covtransfer: direct transfer: the bank holds no model: %w", ErrArchitecture)
	case len(matches) == 0:
		return nil, nil, fmt.Errorf("covtransfer: direct transfer needs a model of the bank with the target's %d depthwise layers, kernels and filter counts; %s: %w",
			len(scan.Layers), strings.Join(why, "; "), ErrArchitecture)
	case len(matches) > 1:
		return nil, nil, fmt.Errorf("covtransfer: direct transfer: %d models of the bank match layer for layer (%s); harvest the one to copy into a bank of its own: %w",
			len(matches), strings.Join(matches, ", "), ErrArchitecture)
	}

	// Copy, in layer order; undo everything if one layer fails.
	rep := &inject.Report{}
	entries := make([]*Entry, len(scan.Layers))
	var written []*graphscan.Layer
	for k := range scan.Layers {
		l := &scan.Layers[k]
		lr := inject.LayerReport{Layer: l, Action: inject.ActionSkip, Reason: l.Skip, Sigma: math.NaN()}
		switch {
		case !l.Rewritable():
		case !inject.Selects(only, l):
			lr.Reason = fmt.Sprintf("not selected by --only %q", only.String())
		default:
			e := match[l.Index]
			if err := m.SetValues(l.Tensor, e.Filters); err != nil {
				for _, w := range written {
					m.Discard(w.Tensor)
				}
				return nil, nil, fmt.Errorf("covtransfer: node %s: weight %q: %w", l.Label(), l.TensorName, err)
			}
			written = append(written, l)
			entries[k] = e
			lr.Action, lr.Reason, lr.Filters = inject.ActionRewrite, "", e.Count
			lr.Note = fmt.Sprintf("bank: copy of node %s of %s", e.Node, e.Source)
			rep.Rewritten++
		}
		rep.Layers = append(rep.Layers, lr)
	}
	for k := range scan.Outside {
		l := &scan.Outside[k]
		lr := inject.LayerReport{Layer: l, Action: inject.ActionSkip, Reason: l.Skip, Sigma: math.NaN()}
		rep.Layers = append(rep.Layers, lr)
	}
	return rep, entries, nil
}

// matchModel returns the entries of bank model bm by layer index when it matches scan layer
// for layer, or the first difference.
func matchModel(scan *graphscan.Result, b *Bank, bm Model) (map[int]*Entry, string) {
	if bm.Layers != len(scan.Layers) {
		return nil, fmt.Sprintf("%d depthwise layers, the target has %d", bm.Layers, len(scan.Layers))
	}
	byIndex := map[int]*Entry{}
	for _, e := range b.Entries {
		if e.Source == bm.Source {
			byIndex[e.Index] = e
		}
	}
	for k := range scan.Layers {
		l := &scan.Layers[k]
		e := byIndex[l.Index]
		if l.Kernel == nil || l.Multiplier == 0 {
			continue // the target's shape is unknown; it is not rewritten either
		}
		if e == nil {
			if l.Rewritable() {
				return nil, fmt.Sprintf("layer %d (target node %s) was not harvested", l.Index, l.Label())
			}
			continue
		}
		kernel := make([]int, len(l.Kernel))
		for i, v := range l.Kernel {
			kernel[i] = int(v)
		}
		switch filters := l.Channels * l.Multiplier; {
		case !slices.Equal(kernel, e.Kernel):
			return nil, fmt.Sprintf("layer %d (node %s) has kernel %s, target node %s has %s",
				l.Index, e.Node, e.KernelString(), l.Label(), kernelString(kernel))
		case int64(e.Count) != filters:
			return nil, fmt.Sprintf("layer %d (node %s) has %d filters in the bank, target node %s has %d",
				l.Index, e.Node, e.Count, l.Label(), filters)
		case l.Rewritable() && !e.hasFilters():
			return nil, fmt.Sprintf("layer %d (node %s): the bank keeps its moments but not its filters",
				l.Index, e.Node)
		}
	}
	return byIndex, ""
}
